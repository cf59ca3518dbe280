//! Project commands.
//!
//! - `cargo xtask demo`: builds and starts the example server on http://127.0.0.1:3000, then
//!   runs the example's native client against it; the server keeps serving until Ctrl-C.
//! - `cargo xtask test`: every test: rustfmt, the workspace's tests (trybuild cases
//!   included), the wasm32 builds, clippy with warnings denied, and the browser tests in
//!   headless Chromium against a real server. It installs what a fresh machine lacks: the
//!   wasm32 target, the matching `wasm-bindgen` test runner, and (as root) Chromium.

mod setup;

use std::{
    env,
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
        _ => {
            eprintln!("usage: cargo xtask <demo|test>");
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

fn test() -> Result<(), String> {
    setup::wasm_target()?;
    setup::wasm_bindgen_runner()?;
    setup::chromium()?;
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&["test", "--workspace", "--locked"])?;
    cargo(&[
        "build",
        "--locked",
        "-p",
        "example-api",
        "--target",
        WASM_TARGET,
    ])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ])?;
    cargo(&[
        "clippy",
        "--locked",
        "--target",
        WASM_TARGET,
        "-p",
        "crudp-client",
        "-p",
        "crudp-tests",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    browser_tests()?;
    eprintln!("xtask: every test passed");
    Ok(())
}

/// Starts the test server (built by `cargo test --workspace`, with the workspace's features),
/// then runs the wasm tests in headless Chromium against it.
fn browser_tests() -> Result<(), String> {
    let mut server = Command::new(target_dir().join("debug").join("test-server"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the test server: {e}"))?;
    let mut lines = BufReader::new(server.stdout.take().expect("piped")).lines();
    let mut vars = Vec::new();
    for _ in 0..2 {
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

fn demo() -> Result<(), String> {
    cargo(&[
        "build",
        "--locked",
        "-p",
        "example-server",
        "-p",
        "example-client",
    ])?;
    let bin = target_dir().join("debug");
    let mut server = Command::new(bin.join("todo-server"))
        .arg(DEMO_ADDRESS)
        .spawn()
        .map_err(|e| format!("cannot start the server: {e}"))?;
    let address: SocketAddr = DEMO_ADDRESS.parse().map_err(|e| format!("{e}"))?;
    let started = Instant::now();
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = server.try_wait() {
            return Err(format!(
                "the server stopped ({status}); is {DEMO_ADDRESS} already in use?"
            ));
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = server.kill();
            return Err(format!(
                "the server did not listen on {DEMO_ADDRESS} within 30 s"
            ));
        }
        thread::sleep(Duration::from_millis(100));
    }
    let client = Command::new(bin.join("todo-client"))
        .arg(format!("http://{DEMO_ADDRESS}/crudp"))
        .status()
        .map_err(|e| format!("cannot start the client: {e}"));
    match client {
        Ok(status) if status.success() => {}
        Ok(status) => eprintln!("xtask: the client failed ({status})"),
        Err(e) => eprintln!("xtask: {e}"),
    }
    println!("\nThe server keeps serving at http://{DEMO_ADDRESS}/crudp; press Ctrl-C to stop it.");
    server.wait().map_err(|e| format!("{e}"))?;
    Ok(())
}

fn cargo(args: &[&str]) -> Result<(), String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo).args(args))
}

fn run(command: &mut Command) -> Result<(), String> {
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

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from)
}
