//! Project commands.
//!
//! - `cargo xtask demo`: builds and starts the example server on http://127.0.0.1:3000, then
//!   runs the example's native client against it; the server keeps serving until Ctrl-C.
//!   `--instances N` runs N servers that act as one, on a Redis server of their own, behind a
//!   round-robin proxy on the same address.
//! - `cargo xtask bench`: the benchmarks, in release mode; writes `BENCHMARKS.md`.
//! - `cargo xtask test`: every test: rustfmt, the workspace's tests (trybuild cases
//!   included), the wasm32 builds, clippy with warnings denied, and the browser tests in
//!   headless Chromium against a real server. It installs what a fresh machine lacks: the
//!   wasm32 target, the matching `wasm-bindgen` test runner, and (as root) Chromium and
//!   `redis-server`. Then each fuzz target runs for 10 seconds (with a nightly toolchain).
//! - `cargo xtask fuzz [SECONDS]`: each fuzz target for SECONDS (default 300).

mod bench;
mod fuzz;
mod instances;
mod setup;

use std::{
    env, fs,
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Command, ExitCode, Stdio},
    thread,
    time::{Duration, Instant},
};

const WASM_TARGET: &str = "wasm32-unknown-unknown";
const DEMO_ADDRESS: &str = "127.0.0.1:3000";

fn main() -> ExitCode {
    let task = env::args().nth(1);
    let result = match task.as_deref() {
        Some("demo") => demo(),
        Some("test") => test(),
        Some("bench") => bench::all(),
        // The example API against its lock file (the test command runs it too).
        Some("api-check") => cargo(&[
            "test",
            "--locked",
            "-p",
            "example-server",
            "--test",
            "api_lock",
        ]),
        Some("fuzz") => env::args()
            .nth(2)
            .map_or(Ok(300), |s| s.parse().map_err(|e| format!("SECONDS: {e}")))
            .and_then(fuzz::run)
            .and_then(|ran| {
                ran.then_some(())
                    .ok_or_else(|| "no nightly toolchain: `rustup toolchain list`".into())
            }),
        _ => {
            eprintln!(
                "usage: cargo xtask <demo [--instances N]|test|bench|fuzz [SECONDS]|api-check>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Wasm-only crates, left out of the native builds.
const FRONT_ENDS: [&str; 6] = [
    "--exclude",
    "example-leptos",
    "--exclude",
    "example-yew",
    "--exclude",
    "wasm-size",
];

fn test() -> Result<(), String> {
    setup::wasm_target()?;
    setup::wasm_bindgen_runner()?;
    setup::chromium()?;
    setup::redis()?;
    cargo(&["fmt", "--all", "--check"])?;
    // The end-to-end test of the demo drives the built front ends.
    front_ends()?;
    cargo(&[&["test", "--workspace", "--locked"][..], &FRONT_ENDS].concat())?;
    cargo(&[
        "build",
        "--locked",
        "-p",
        "example-api",
        "--target",
        WASM_TARGET,
    ])?;
    let deny = ["--", "-D", "warnings"];
    cargo(
        &[
            &["clippy", "--workspace", "--all-targets", "--locked"][..],
            &FRONT_ENDS,
            &deny,
        ]
        .concat(),
    )?;
    let wasm = [
        "crudp-client",
        "crudp-leptos",
        "crudp-yew",
        "crudp-tests",
        "example-leptos",
        "example-yew",
        "wasm-size",
    ]
    .map(|p| ["-p", p]);
    cargo(
        &[
            &[
                "clippy",
                "--locked",
                "--all-targets",
                "--target",
                WASM_TARGET,
            ][..],
            &wasm.concat(),
            // The size probe with the client, as `cargo xtask bench` builds it.
            &["--features", "wasm-size/client"],
            &deny,
        ]
        .concat(),
    )?;
    // The API documentation builds without a warning (broken links, bad examples' markup).
    run(
        Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(
                [
                    &["doc", "--no-deps", "--workspace", "--locked"][..],
                    &FRONT_ENDS,
                ]
                .concat(),
            )
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    browser_tests(1)?;
    // Again with every server as two instances on Redis, behind a round-robin proxy.
    browser_tests(2)?;
    // Briefly: long runs are `cargo xtask fuzz`.
    if !fuzz::run(10)? {
        eprintln!("xtask: no nightly toolchain, so the fuzz targets did not run");
    }
    eprintln!("xtask: every test passed");
    Ok(())
}

/// Starts the test server (built by `cargo test --workspace`, with the workspace's features)
/// with each of its servers as `instances` instances, then runs the wasm tests in headless
/// Chromium against it.
fn browser_tests(instances: usize) -> Result<(), String> {
    eprintln!("xtask: the browser tests against {instances} instance(s)");
    let mut server = Command::new(target_dir().join("debug").join("test-server"))
        .args(["--instances", &instances.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the test server: {e}"))?;
    let mut lines = BufReader::new(server.stdout.take().expect("piped")).lines();
    let mut vars = Vec::new();
    for _ in 0..3 {
        let line = lines
            .next()
            .and_then(Result::ok)
            .ok_or("the test server stopped before giving its address")?;
        let (key, value) = line
            .split_once('=')
            .ok_or(format!("unexpected line: {line}"))?;
        vars.push((key.to_owned(), value.to_owned()));
    }
    let mut command = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .args([
            "test",
            "--locked",
            "-p",
            "crudp-tests",
            "--target",
            WASM_TARGET,
            "--test",
            "browser",
        ])
        .envs(vars)
        .env("CHROMEDRIVER", setup::CHROMEDRIVER)
        .env("WASM_BINDGEN_TEST_TIMEOUT", "180");
    let result = run(&mut command);
    // Closing its standard input stops the server.
    drop(server.stdin.take());
    let _ = server.wait();
    result
}

/// Runs wasm-bindgen on a release build's `wasm` into `out` (`app.js`, `app_bg.wasm`), then
/// `wasm-opt -Oz` on the wasm.
pub(crate) fn bindgen(wasm: &str, out: &std::path::Path) -> Result<(), String> {
    let wasm = target_dir()
        .join(WASM_TARGET)
        .join("wasm-release")
        .join(wasm);
    run(Command::new("wasm-bindgen")
        .args([
            "--target",
            "web",
            "--no-typescript",
            "--out-name",
            "app",
            "--out-dir",
        ])
        .arg(out)
        .arg(&wasm))?;
    let bundle = out.join("app_bg.wasm");
    run(Command::new(setup::wasm_opt()?)
        .arg("-Oz")
        // What rustc's wasm32 target enables, and no more.
        .args(WASM_FEATURES)
        .arg(&bundle)
        .arg("-o")
        .arg(&bundle))
}

/// The wasm features rustc's `wasm32-unknown-unknown` target uses by default, for wasm-opt.
const WASM_FEATURES: [&str; 6] = [
    "--enable-bulk-memory",
    "--enable-nontrapping-float-to-int",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-multivalue",
    "--enable-reference-types",
];

/// Builds the Leptos and Yew front ends into `target/demo/{leptos,yew}`: the wasm32 build
/// (profile `wasm-release`), the wasm-bindgen step, and the page.
pub(crate) fn front_ends() -> Result<PathBuf, String> {
    setup::wasm_target()?;
    setup::wasm_bindgen_runner()?;
    let apps = [("leptos", "example-leptos"), ("yew", "example-yew")];
    let mut args = vec![
        "build",
        "--locked",
        "--profile",
        "wasm-release",
        "--target",
        WASM_TARGET,
    ];
    for (_, package) in apps {
        args.extend(["-p", package]);
    }
    cargo(&args)?;
    let dist = target_dir().join("demo");
    for (name, package) in apps {
        let out = dist.join(name);
        bindgen(&format!("{package}.wasm"), &out)?;
        let page = workspace_root()
            .join("examples")
            .join(name)
            .join("index.html");
        fs::copy(&page, out.join("index.html"))
            .map_err(|e| format!("cannot copy {}: {e}", page.display()))?;
    }
    let css = workspace_root().join("examples").join("board.css");
    fs::copy(&css, dist.join("board.css"))
        .map_err(|e| format!("cannot copy {}: {e}", css.display()))?;
    Ok(dist)
}

fn demo() -> Result<(), String> {
    let instances = match env::args().skip(2).collect::<Vec<_>>().as_slice() {
        [] => 1,
        [flag, n] if flag == "--instances" => n
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or("--instances needs a number of servers, 1 or more")?,
        _ => return Err("usage: cargo xtask demo [--instances N]".into()),
    };
    let dist = front_ends()?;
    cargo(&["build", "--locked", "-p", "example-server"])?;
    if instances > 1 {
        return instances::run(instances, &dist);
    }
    let mut server = Command::new(target_dir().join("debug").join("todo-server"))
        .arg(DEMO_ADDRESS)
        .arg("--db")
        .arg(dist.join("todo.db"))
        .arg("--dist")
        .arg(&dist)
        .spawn()
        .map_err(|e| format!("cannot start the server: {e}"))?;
    let address: SocketAddr = DEMO_ADDRESS.parse().map_err(|e| format!("{e}"))?;
    wait_for(address, "the server", &mut server)?;
    println!(
        "\nThe todo board is at http://{DEMO_ADDRESS}/: sign in, then open Leptos or Yew; a second \
         window signed in as someone else shows changes live. Ctrl-C stops the server."
    );
    server.wait().map_err(|e| format!("{e}"))?;
    Ok(())
}

/// Waits until `what` (the process `child`) listens on `address`, for 30 s at most.
pub(crate) fn wait_for(
    address: SocketAddr,
    what: &str,
    child: &mut std::process::Child,
) -> Result<(), String> {
    let started = Instant::now();
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{what} stopped ({status}); is {address} already in use?"
            ));
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            return Err(format!("{what} did not listen on {address} within 30 s"));
        }
        thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

pub(crate) fn cargo(args: &[&str]) -> Result<(), String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo).args(args))
}

pub(crate) fn run(command: &mut Command) -> Result<(), String> {
    if command.get_current_dir().is_none() {
        command.current_dir(workspace_root());
    }
    eprintln!("xtask: running {command:?}");
    let status = command
        .status()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed ({status})"))
    }
}

pub(crate) fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub(crate) fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from)
}
