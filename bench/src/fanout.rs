//! SSE fan-out: K idle connections spread over client processes and 127.0.0.x source
//! addresses, the server's memory per connection, and the delay from publish until every
//! connection has the event.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpSocket,
    process::Command,
};

use crate::server::micros;

/// How long a connection may take to open (its answer's head and first event in).
const OPEN_WITHIN: Duration = Duration::from_secs(30);

/// Connections per client process: well inside the 20,000 open files a process may hold.
const PER_PROCESS: usize = 4000;

/// One client process: `count` connections from `source` to `path` on `server`. It prints
/// `READY <opened>` once every connection is open or has given up (`opened` of them are
/// open), then for each event a line `EVENT <µs>...` with the
/// time each connection received it, and ends when its standard input closes.
pub(crate) async fn clients(
    server: SocketAddr,
    path: String,
    source: Ipv4Addr,
    count: usize,
    token: String,
) {
    let received: Arc<Mutex<Vec<Vec<u64>>>> = Arc::default();
    // Each connection says once whether it opened, or why not.
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<Result<(), String>>();
    let mut tasks = Vec::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    for _ in 0..count {
        let (received, ready, gate) = (Arc::clone(&received), ready_tx.clone(), Arc::clone(&gate));
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {server}\r\nAccept: text/event-stream\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        tasks.push(tokio::spawn(async move {
            // At most 256 connections are being opened at once; an open one lets the next go.
            let mut permit = Some(gate.acquire_owned().await.expect("the gate stays open"));
            // The ports of the runs before linger in TIME_WAIT: without `SO_REUSEADDR` the
            // source address runs out of them. A connection that cannot be made or opened
            // says why and is left out of the delays, so that the run goes on.
            let socket = TcpSocket::new_v4().and_then(|socket| {
                socket.set_reuseaddr(true)?;
                socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
                Ok(socket)
            });
            let socket = match socket {
                Ok(socket) => socket,
                Err(e) => {
                    let _ = ready.send(Err(format!("no socket from {source}: {e}")));
                    return;
                }
            };
            // A connection not open within `OPEN_WITHIN` gives up, so that one stuck
            // connection cannot stall the run.
            let deadline = tokio::time::Instant::now() + OPEN_WITHIN;
            let mut stream = match tokio::time::timeout_at(deadline, socket.connect(server)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    let _ = ready.send(Err(format!("not connected: {e}")));
                    return;
                }
                Err(_) => {
                    let _ = ready.send(Err(format!("not connected within {OPEN_WITHIN:?}")));
                    return;
                }
            };
            if let Err(e) = stream.write_all(request.as_bytes()).await {
                let _ = ready.send(Err(format!("request not written: {e}")));
                return;
            }
            let mut buffer = vec![0u8; 2048];
            let mut opened = false;
            let mut seen = 0usize;
            let mut carry = Vec::new();
            loop {
                let read = if opened {
                    Ok(stream.read(&mut buffer).await)
                } else {
                    tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await
                };
                let Ok(read) = read else {
                    let _ = ready.send(Err(format!("not open within {OPEN_WITHIN:?}")));
                    return;
                };
                let n = read.unwrap_or(0);
                if n == 0 {
                    if !opened {
                        let _ = ready.send(Err("closed before it opened".into()));
                    }
                    return;
                }
                let at = micros();
                if !opened && carry.is_empty() && !buffer[..n].starts_with(b"HTTP/1.1 200") {
                    // Refused (a limit).
                    let head = String::from_utf8_lossy(&buffer[..n]);
                    let status = head.lines().next().unwrap_or_default().to_owned();
                    let _ = ready.send(Err(format!("answered {status}")));
                    return;
                }
                carry.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&carry).into_owned();
                if !opened && (text.contains("event: ready") || text.contains(": ok")) {
                    opened = true;
                    permit.take();
                    let _ = ready.send(Ok(()));
                    let events = text
                        .matches("data:")
                        .count()
                        .saturating_sub(usize::from(text.contains("event: ready")));
                    seen = events;
                    carry.clear();
                    continue;
                }
                if opened {
                    let events = text.matches("data:").count();
                    for _ in 0..events {
                        let mut received = received.lock().expect("not poisoned");
                        if received.len() <= seen {
                            received.resize(seen + 1, Vec::new());
                        }
                        received[seen].push(at);
                        seen += 1;
                    }
                    // The start of a `data:` cut by the read, and never a whole one counted
                    // already.
                    let keep = carry.len().saturating_sub(4);
                    carry.drain(..keep);
                }
            }
        }));
    }
    drop(ready_tx);
    let mut opened = 0;
    let mut failures = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..count {
        match ready_rx.recv().await {
            Some(Ok(())) => opened += 1,
            Some(Err(why)) => *failures.entry(why).or_default() += 1,
            None => break,
        }
    }
    for (why, times) in failures {
        eprintln!("{times} of {count} connections from {source} did not open: {why}");
    }
    println!("READY {opened}");
    let mut rest = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut rest).await;
    for (index, times) in received.lock().expect("not poisoned").iter().enumerate() {
        let times: Vec<String> = times.iter().map(u64::to_string).collect();
        println!("EVENT {index} {}", times.join(" "));
    }
    for task in tasks {
        task.abort();
    }
}

/// What one fan-out run measured.
pub(crate) struct FanOut {
    pub(crate) connections: usize,
    /// Of those, how many opened: the others (refused, or not open within [`OPEN_WITHIN`])
    /// are left out of the delays, so that events lost are told apart from connections never
    /// made.
    pub(crate) opened: usize,
    pub(crate) bytes_per_connection: f64,
    /// Per event: the delay until half and until 99% of the connections had it, in ms.
    pub(crate) p50_ms: Vec<f64>,
    pub(crate) p99_ms: Vec<f64>,
}

impl FanOut {
    /// The connections for a table: `19000`, or `18950 of 19000 open` when some did not open.
    pub(crate) fn streams(&self) -> String {
        if self.opened == self.connections {
            self.connections.to_string()
        } else {
            format!("{} of {} open", self.opened, self.connections)
        }
    }
}

/// Where the connections of `kind` go: CRUDP's mount, or the naive broadcaster's path. On
/// Redis, to the instance that does not publish.
pub(crate) fn mount(kind: &str) -> &'static str {
    match kind {
        "naive" => "/naive",
        "floor" | "hyper" => "/floor",
        "sockets" => "",
        "writes" => "/writes",
        "redis" => "/redis-b",
        _ => "/crudp",
    }
}

/// The CRUDP mount whose token the connections of `kind` carry: the naive broadcaster and the
/// floors take none, and get one all the same.
pub(crate) fn token_mount(kind: &str) -> &'static str {
    match kind {
        "crudp" | "redis" => mount(kind),
        _ => "/crudp",
    }
}

/// Whether `kind` is a floor: connections held with nothing to publish to them.
pub(crate) fn is_floor(kind: &str) -> bool {
    matches!(kind, "floor" | "hyper" | "sockets")
}

/// Opens `k` connections to `kind` (`crudp`, `redis`, `naive`, the floor under publishing
/// `writes`, or the floors `floor`, `hyper` and `sockets`), publishes `events` events (none to a floor), measures.
pub(crate) async fn run(
    at: &crate::load::Addresses,
    kind: &str,
    k: usize,
    events: usize,
    token: &str,
) -> FanOut {
    let base = &at.base();
    let server = match kind {
        "sockets" | "writes" => at.socket_floor,
        "hyper" => at.axum_serve,
        _ => at.http,
    };
    let http = reqwest::Client::new();
    let rss = || async {
        http.get(format!("{base}/control/rss"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?
            .parse::<u64>()
            .ok()
    };
    let before = rss().await.unwrap_or(0);
    let path = &format!("{}/events", mount(kind));
    let exe = std::env::current_exe().expect("the benchmark's own path");
    let mut children = Vec::new();
    let mut opened = 0;
    for (i, start) in (0..k).step_by(PER_PROCESS).enumerate() {
        let count = PER_PROCESS.min(k - start);
        let source = Ipv4Addr::new(127, 0, 0, 2 + i as u8);
        let mut child = Command::new(&exe)
            .args([
                "clients",
                &server.to_string(),
                path,
                &source.to_string(),
                &count.to_string(),
                token,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("a client process");
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(open) = line.strip_prefix("READY ") {
                opened += open.parse::<usize>().unwrap_or(0);
                break;
            }
        }
        children.push((child, lines));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss().await.unwrap_or(before);
    let mut published = Vec::new();
    // A floor publishes nothing: it measures memory alone.
    let events = if is_floor(kind) { 0 } else { events };
    for _ in 0..events {
        let at = http
            .post(format!("{base}/control/publish?kind={kind}"))
            .send()
            .await
            .expect("published");
        published.push(at.text().await.expect("a time").parse::<u64>().expect("µs"));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut received: Vec<Vec<u64>> = vec![Vec::new(); events];
    for (mut child, mut lines) in children {
        drop(child.stdin.take());
        while let Ok(Some(line)) = lines.next_line().await {
            let mut words = line.split_whitespace();
            if words.next() != Some("EVENT") {
                continue;
            }
            let index: usize = words
                .next()
                .and_then(|w| w.parse().ok())
                .unwrap_or(usize::MAX);
            if let Some(times) = received.get_mut(index) {
                times.extend(words.filter_map(|w| w.parse::<u64>().ok()));
            }
        }
        let _ = child.wait().await;
    }
    let mut p50_ms = Vec::new();
    let mut p99_ms = Vec::new();
    for (times, at) in received.iter_mut().zip(&published) {
        let mut delays: Vec<f64> = times
            .iter()
            .map(|t| t.saturating_sub(*at) as f64 / 1000.0)
            .collect();
        delays.sort_by(f64::total_cmp);
        // Open connections that never got the event count as the slowest.
        let missing = opened.saturating_sub(delays.len());
        delays.extend(std::iter::repeat_n(f64::INFINITY, missing));
        if delays.is_empty() {
            continue;
        }
        p50_ms.push(delays[delays.len() / 2]);
        p99_ms.push(delays[(delays.len() * 99 / 100).min(delays.len() - 1)]);
    }
    FanOut {
        connections: k,
        opened,
        bytes_per_connection: after.saturating_sub(before) as f64 / opened.max(1) as f64,
        p50_ms,
        p99_ms,
    }
}
