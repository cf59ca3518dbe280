//! CRUDP against what a user would write instead, measured side by side in one run.
//!
//! - `crudp-bench run [--quick]`: every scenario; prints the report (Markdown) on stdout.
//! - `crudp-bench server`, `crudp-bench clients …`: the processes `run` starts.
//! - `crudp-bench load VARIANT N REPS`, `crudp-bench upload MIB REPS`: one scenario alone,
//!   for profiling.
//!
//! `cargo xtask bench` builds it in release mode, adds the dispatch micro-benchmark and the
//! wasm sizes, and writes `BENCHMARKS.md`.

mod dispatch;
mod fanout;
mod load;
#[cfg(feature = "peers")]
mod peers;
mod server;
mod targets;
mod upload;

use std::{fmt::Write, process::Stdio};

use load::Addresses;
use targets::Figures;

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

/// The scenarios' sizes.
struct Plan {
    creates: Vec<usize>,
    reps: usize,
    fan_out: Vec<usize>,
    events: usize,
    /// The size of the uploaded file, and how many times each way.
    upload: (u64, usize),
    /// Rounds of the interleaved dispatch measurement.
    dispatch_rounds: usize,
}

impl Plan {
    fn full() -> Self {
        Self {
            creates: vec![1, 10, 100, 1000],
            reps: 7,
            fan_out: vec![100, 1000, 5000, 19_000],
            events: 5,
            upload: (1 << 30, 3),
            dispatch_rounds: 301,
        }
    }

    fn quick() -> Self {
        Self {
            creates: vec![1, 10],
            reps: 2,
            fan_out: vec![10],
            events: 2,
            upload: (8 << 20, 1),
            dispatch_rounds: 11,
        }
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

fn min_max(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

#[tokio::main]
async fn main() {
    // tarpc turns on `tracing`'s `log` feature for the whole binary: without a subscriber,
    // every span (CRUDP's one per call, tarpc's own) would then be formatted for `log`,
    // which no application built without tarpc pays. A subscriber that wants nothing keeps
    // the spans as cheap as in such an application, for every variant alike.
    let _ = tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default());
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("server") => server::serve().await,
        Some("clients") => {
            let [server, path, source, count, token] = &args[1..] else {
                panic!("clients SERVER PATH SOURCE COUNT TOKEN")
            };
            fanout::clients(
                server.parse().expect("a server address"),
                path.clone(),
                source.parse().expect("a source address"),
                count.parse().expect("a count"),
                token.clone(),
            )
            .await;
        }
        Some("load") => {
            // One variant alone, for profiling: `load VARIANT N REPS`.
            let [variant, n, reps] = &args[1..] else {
                panic!("load VARIANT N REPS")
            };
            let redis = crudp_tests::RedisServer::start().await;
            let (_server, at) = start_server(&redis).await;
            let n = n.parse().expect("N");
            let reps = reps.parse().expect("REPS");
            // Timed as the full run times it: each run at least 100 creates.
            let rates = load::interleaved(&[variant.as_str()], &at, n, reps)
                .await
                .remove(0);
            println!("{variant}: median {:.0} creates/s", median(&rates));
        }
        Some("client") => {
            // The client alone, answered in process: `client N REPS`.
            let [n, reps] = &args[1..] else {
                panic!("client N REPS")
            };
            let rates =
                load::client_alone(n.parse().expect("N"), reps.parse().expect("REPS")).await;
            println!("the client alone: median {:.0} creates/s", median(&rates));
        }
        Some("stages") => {
            // The stage-by-stage timing of one call alone: `stages CALLS`.
            let [calls] = &args[1..] else {
                panic!("stages CALLS")
            };
            let redis = crudp_tests::RedisServer::start().await;
            let (_server, at) = start_server(&redis).await;
            for (stage, micros) in load::stages(&at, calls.parse().expect("CALLS")).await {
                println!("{micros:>8.1} µs  {stage}");
            }
        }
        Some("fanout") => {
            // One fan-out alone: `fanout KIND K` (crudp, redis, naive, writes, floor, hyper or sockets).
            let [kind, k] = &args[1..] else {
                panic!("fanout KIND K")
            };
            let redis = crudp_tests::RedisServer::start().await;
            let (_server, at) = start_server(&redis).await;
            let base = at.base();
            let token = stream_token(&base, fanout::token_mount(kind)).await;
            let k = k.parse().expect("K");
            let result = fanout::run(&at, kind, k, 5, &token).await;
            println!(
                "{kind} at {}: {:.1} KiB per connection, p50 {:?} ms, p99 {:?} ms",
                result.streams(),
                result.bytes_per_connection / 1024.0,
                result.p50_ms,
                result.p99_ms
            );
        }
        Some("bytes") => {
            // Bytes on the wire for 1,000 creates, each way: `bytes`.
            let redis = crudp_tests::RedisServer::start().await;
            let (_server, at) = start_server(&redis).await;
            for variant in ["crudp /sync", "crudp /call", "postcard (L)"] {
                let (up, down) = load::wire_bytes(variant, at.http, 1000).await;
                println!("{variant}: {up} bytes up, {down} down");
            }
        }
        Some("upload") => {
            // The upload scenario alone: `upload MIB REPS`.
            let [mib, reps] = &args[1..] else {
                panic!("upload MIB REPS")
            };
            let redis = crudp_tests::RedisServer::start().await;
            let (_server, at) = start_server(&redis).await;
            let size = mib.parse::<u64>().expect("MIB") << 20;
            let runs = upload::run(&at.base(), size, reps.parse().expect("REPS")).await;
            for (variant, runs) in upload::VARIANTS.iter().zip(&runs) {
                println!(
                    "{variant}: {:?} MB/s, peak RSS {:?} MiB (before {} MiB)",
                    runs.mb_per_s.iter().map(|r| r.round()).collect::<Vec<_>>(),
                    runs.peak_rss.iter().map(|b| b >> 20).collect::<Vec<_>>(),
                    runs.rss_before >> 20
                );
            }
        }
        Some("dispatch") => {
            // Generated dispatch against a hand-written `match`: `dispatch ROUNDS`.
            let [rounds] = &args[1..] else {
                panic!("dispatch ROUNDS")
            };
            let rounds = rounds.parse().expect("ROUNDS");
            let (generated, hand_written) =
                std::thread::spawn(move || dispatch::measure(rounds, 2000))
                    .join()
                    .expect("the dispatch measurement");
            println!(
                "generated {generated:.1} ns, hand-written {hand_written:.1} ns: {:.3}×",
                generated / hand_written
            );
        }
        Some("run") => {
            let plan = if args.iter().any(|a| a == "--quick") {
                Plan::quick()
            } else {
                Plan::full()
            };
            print!("{}", run(&plan).await);
        }
        _ => eprintln!(
            "usage: crudp-bench run [--quick] | load VARIANT N REPS | client N REPS | stages CALLS | bytes | \
             fanout KIND K | upload MIB REPS | dispatch ROUNDS"
        ),
    }
}

/// Starts the server process, with its instances on `redis`, and returns it with its
/// addresses.
async fn start_server(redis: &crudp_tests::RedisServer) -> (tokio::process::Child, Addresses) {
    let mut child = Command::new(std::env::current_exe().expect("the benchmark's own path"))
        .arg("server")
        .env("CRUDP_BENCH_REDIS", redis.url())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the server process");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    // One line per listener, in this order.
    let http = announced(&mut lines, "LISTENING http://").await;
    let socket_floor = announced(&mut lines, "SOCKET FLOOR ").await;
    let axum_serve = announced(&mut lines, "AXUM SERVE ").await;
    let peers = announced(&mut lines, "PEERS ").await;
    let peers = peers
        .split_once(' ')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
    let address = |text: String| text.parse().expect("an address");
    let at = Addresses {
        http: address(http),
        socket_floor: address(socket_floor),
        axum_serve: address(axum_serve),
        peers,
    };
    (child, at)
}

/// What the server's next line says after `prefix`, which it must start with.
async fn announced(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    prefix: &str,
) -> String {
    let line = lines
        .next_line()
        .await
        .expect("the server's output")
        .unwrap_or_else(|| panic!("the server ended before `{prefix}`"));
    line.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("`{prefix}…` expected, not `{line}`"))
        .to_owned()
}

/// Every scenario of `plan`: the report, then the targets read from its own figures.
async fn run(plan: &Plan) -> String {
    // As the tests run it: append-only file on, `appendfsync always`.
    let redis = crudp_tests::RedisServer::start().await;
    let (_server, at) = start_server(&redis).await;
    let base = at.base();
    let mut report = String::new();
    let mut figures = Figures::default();

    // Creates per second.
    let _ = writeln!(
        report,
        "### Creates per second over loopback (median of {} runs, the variants taking turns; \
         a run is at least 100 creates, in rounds of N awaited one after the other; min–max)\n",
        plan.reps
    );
    let _ = writeln!(report, "| N | {} |", load::VARIANTS.join(" | "));
    let _ = writeln!(report, "|---:|{}", "---:|".repeat(load::VARIANTS.len()));
    for &n in &plan.creates {
        let mut row = format!("| {n} |");
        let rates = load::interleaved(load::VARIANTS, &at, n, plan.reps).await;
        for (variant, rates) in load::VARIANTS.iter().zip(&rates) {
            let (min, max) = min_max(rates);
            let _ = write!(row, " {:.0} ({:.0}–{:.0}) |", median(rates), min, max);
            figures.set(&format!("creates {variant} {n}"), median(rates));
        }
        let _ = writeln!(report, "{row}");
    }
    let references = [
        ("json (a)", "(a)"),
        ("json x16 (b)", "(b)"),
        ("postcard (L)", "(L)"),
        #[cfg(feature = "peers")]
        (load::JSONRPSEE, "jsonrpsee"),
        #[cfg(feature = "peers")]
        (load::TARPC, "tarpc"),
    ];
    let _ = writeln!(report, "\nRatios of the medians (CRUDP ÷ reference):\n");
    let mut head = String::from("| N |");
    for path in ["/call", "/sync"] {
        for (_, short) in references {
            let _ = write!(head, " {path} ÷ {short} |");
        }
    }
    let _ = writeln!(report, "{head}");
    let _ = writeln!(report, "|---:|{}", "---:|".repeat(2 * references.len()));
    for &n in &plan.creates {
        let mut row = format!("| {n} |");
        for variant in ["crudp /call", "crudp /sync"] {
            for (reference, _) in references {
                let ratio = figures.ratio(
                    &format!("creates {variant} {n}"),
                    &format!("creates {reference} {n}"),
                );
                let _ = write!(row, " {} |", targets::times(ratio));
            }
        }
        let _ = writeln!(report, "{row}");
    }

    // One call, stage by stage.
    let calls = plan.reps * 100;
    let _ = writeln!(
        report,
        "\n### One call alone through `/call`, stage by stage (median µs of {calls} calls, \
         each awaited before the next)\n\n| stage | µs |\n|---|---:|"
    );
    for (stage, micros) in load::stages(&at, calls).await {
        let _ = writeln!(report, "| {stage} | {micros:.0} |");
    }

    // The durable stores.
    let _ = writeln!(
        report,
        "\n### `/call` with the durable stores (SQLite in WAL mode; Redis with `appendfsync \
         always`) beside the in-memory one (median of {} runs, taking turns; min–max)\n",
        plan.reps
    );
    let _ = writeln!(
        report,
        "| N | {} | SQLite ÷ in-memory | Redis ÷ in-memory |",
        load::STORES.join(" | ")
    );
    let _ = writeln!(report, "|---:|---:|---:|---:|---:|---:|");
    for &n in &plan.creates {
        let rates = load::interleaved(&load::STORES, &at, n, plan.reps).await;
        let mut row = format!("| {n} |");
        for (store, rates) in load::STORES.iter().zip(&rates) {
            let (min, max) = min_max(rates);
            let _ = write!(row, " {:.0} ({min:.0}–{max:.0}) |", median(rates));
            figures.set(&format!("stores {store} {n}"), median(rates));
        }
        let _ = writeln!(
            row,
            " {:.2}× | {:.2}× |",
            median(&rates[1]) / median(&rates[0]),
            median(&rates[2]) / median(&rates[0])
        );
        report.push_str(&row);
    }

    // The batch window.
    let n = *plan.creates.last().expect("some sizes");
    let _ = writeln!(
        report,
        "\n### Batch window: {n} creates made in a loop, their futures dropped unawaited \
         (`/call`, median of {} runs)\n",
        plan.reps
    );
    let _ = writeln!(
        report,
        "| `batch_window` | requests | ms until all are answered |"
    );
    let _ = writeln!(report, "|---:|---:|---:|");
    for (window, requests, millis) in load::unawaited(&base, n, plan.reps).await {
        let _ = writeln!(report, "| {window} ms | {requests:.0} | {millis:.1} |");
    }

    // Bytes on the wire.
    let _ = writeln!(
        report,
        "\n### Bytes on the wire for {n} creates, both ways, HTTP headers included\n"
    );
    let _ = writeln!(report, "| variant | bytes | ÷ json (a) | ÷ postcard (L) |");
    let _ = writeln!(report, "|---|---:|---:|---:|");
    let over_http = &load::VARIANTS[..5];
    for variant in over_http {
        let (up, down) = load::wire_bytes(variant, at.http, n).await;
        let bytes = up + down;
        figures.set(&format!("bytes {variant} {n}"), bytes as f64);
    }
    for variant in over_http {
        let _ = writeln!(
            report,
            "| {variant} | {:.0} | {:.3} | {:.2} |",
            figures
                .get(&format!("bytes {variant} {n}"))
                .unwrap_or(f64::NAN),
            figures.ratio(
                &format!("bytes {variant} {n}"),
                &format!("bytes json (a) {n}")
            ),
            figures.ratio(
                &format!("bytes {variant} {n}"),
                &format!("bytes postcard (L) {n}")
            ),
        );
    }

    // Uploads.
    let (size, reps) = plan.upload;
    let _ = writeln!(
        report,
        "\n### Upload of a {} MiB file in one `PUT`, streamed from memory (median of {reps} \
         runs, taking turns; min–max)\n",
        size >> 20
    );
    let runs = upload::run(&base, size, reps).await;
    let _ = writeln!(
        report,
        "| variant | MB/s | ÷ plain axum | server peak RSS (before: {:.1} MiB) |",
        runs[0].rss_before as f64 / f64::from(1 << 20)
    );
    let _ = writeln!(report, "|---|---:|---:|---:|");
    let baseline = median(&runs[0].mb_per_s);
    for (variant, runs) in upload::VARIANTS.iter().zip(&runs) {
        let (min, max) = min_max(&runs.mb_per_s);
        let peak = runs.peak_rss.iter().copied().max().unwrap_or(0);
        figures.set(&format!("upload {variant}"), median(&runs.mb_per_s));
        figures.set(&format!("upload peak {variant}"), peak as f64);
        let _ = writeln!(
            report,
            "| {variant} | {:.0} ({min:.0}–{max:.0}) | {:.2}× | {:.1} MiB |",
            median(&runs.mb_per_s),
            median(&runs.mb_per_s) / baseline,
            peak as f64 / f64::from(1 << 20),
        );
    }

    // SSE fan-out.
    let _ = writeln!(
        report,
        "\n### SSE fan-out: idle connections, one publish to all ({} publishes each)\n\n\
         `crudp on Redis`: published on one instance, the connections on another.\n",
        plan.events
    );
    let _ = writeln!(
        report,
        "| K | hub | server memory per connection | p50 ms (min–max) | p99 ms (min–max) |"
    );
    let _ = writeln!(report, "|---:|---|---:|---:|---:|");
    for &k in &plan.fan_out {
        for (kind, hub) in [
            ("crudp", "crudp"),
            ("redis", "crudp on Redis"),
            ("naive", "naive"),
            (
                "writes",
                "floor under publishing: one loop writing the event to each socket, no task per connection",
            ),
            ("floor", "floor: an idle response, nothing else"),
            (
                "hyper",
                "the same floor under `axum::serve` (hyper's connection)",
            ),
            (
                "sockets",
                "floor under any HTTP server: a tokio task holding the socket after a fixed answer",
            ),
        ] {
            let (_server, at) = start_server(&redis).await;
            let base = at.base();
            let token = stream_token(&base, fanout::token_mount(kind)).await;
            let result = fanout::run(&at, kind, k, plan.events, &token).await;
            let streams = result.streams();
            // The targets speak of K streams: a run in which some did not open measures
            // none of them (its table row says how many did).
            let whole = result.opened == result.connections;
            if result.p50_ms.is_empty() {
                if whole {
                    figures.set(
                        &format!("fanout memory {kind} {k}"),
                        result.bytes_per_connection,
                    );
                }
                let _ = writeln!(
                    report,
                    "| {streams} | {hub} | {:.1} KiB | – | – |",
                    result.bytes_per_connection / 1024.0,
                );
                continue;
            }
            let (p50min, p50max) = min_max(&result.p50_ms);
            let (p99min, p99max) = min_max(&result.p99_ms);
            if whole {
                figures.set(
                    &format!("fanout memory {kind} {k}"),
                    result.bytes_per_connection,
                );
                figures.set(&format!("fanout p99 {kind} {k}"), median(&result.p99_ms));
            }
            let _ = writeln!(
                report,
                "| {streams} | {hub} | {:.1} KiB | {:.1} ({p50min:.1}–{p50max:.1}) | {:.1} ({p99min:.1}–{p99max:.1}) |",
                result.bytes_per_connection / 1024.0,
                median(&result.p50_ms),
                median(&result.p99_ms),
            );
        }
    }

    // Dispatch.
    // On a thread of its own: it runs its own single-threaded runtime.
    let rounds = plan.dispatch_rounds;
    let (generated, hand_written) = std::thread::spawn(move || dispatch::measure(rounds, 2000))
        .join()
        .expect("the dispatch measurement");
    figures.set("dispatch generated", generated);
    figures.set("dispatch hand-written", hand_written);
    let _ = writeln!(
        report,
        "\n### In-process dispatch of one `create` (medians of {} rounds, the two interleaved)\n\n\
         | dispatch | ns per call |\n|---|---:|\n| generated | {generated:.0} |\n\
         | hand-written `match` | {hand_written:.0} |\n\n\
         Generated ÷ hand-written: **{:.3}×**",
        plan.dispatch_rounds,
        generated / hand_written
    );

    let mut out = String::new();
    let _ = writeln!(out, "{}", targets::START);
    out.push_str(&targets::rows(&figures, plan));
    let _ = writeln!(out, "{}", targets::END);
    out.push_str(&report);
    out
}

/// A token for one client's event streams on the CRUDP `mount` of the server at `base`.
async fn stream_token(base: &str, mount: &str) -> String {
    let client = crudp::ClientId(7);
    let response = reqwest::Client::new()
        .post(format!("{base}{mount}/token"))
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        // The bench's anonymous visitor: any 16 bytes, base64url.
        .header(crudp::protocol::CLIENT_KEY_HEADER, "YmVuY2gtdmlzaXRvci0wMA")
        .body(
            postcard::to_stdvec(&crudp::protocol::TokenRequest {
                clients: vec![client],
            })
            .expect("a request encodes"),
        )
        .send()
        .await
        .expect("a token");
    let grant: crudp::protocol::TokenGrant =
        postcard::from_bytes(&response.bytes().await.expect("a body")).expect("a grant");
    grant.token
}
