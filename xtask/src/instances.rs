//! `cargo xtask demo --instances N`: the demo as N servers that act as one, on a Redis server
//! of its own, behind a round-robin proxy on the demo's address.

use std::{
    fs,
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    process::{Child, Command},
    thread,
};

use crate::{DEMO_ADDRESS, setup, target_dir, wait_for};

/// Kills the processes it holds when dropped (the servers and Redis, when the demo ends).
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// 32 random bytes, hex-encoded: the servers' shared token secret.
fn secret() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("no random bytes: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Runs `n` servers on one Redis server and one database, behind a round-robin proxy on
/// [`DEMO_ADDRESS`], until Ctrl-C.
pub(crate) fn run(n: usize, dist: &std::path::Path) -> Result<(), String> {
    setup::redis()?;
    let redis_dir = dist.join("redis");
    fs::create_dir_all(&redis_dir).map_err(|e| format!("{e}"))?;
    let redis_port = free_port()?;
    let mut processes = Processes(Vec::new());
    processes.0.push(
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &redis_port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&redis_dir)
            .spawn()
            .map_err(|e| format!("cannot start redis-server: {e}"))?,
    );
    let redis: SocketAddr = format!("127.0.0.1:{redis_port}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    wait_for(redis, "redis-server", &mut processes.0[0])?;
    let secret = secret()?;
    let mut servers = Vec::new();
    for _ in 0..n {
        let address: SocketAddr = format!("127.0.0.1:{}", free_port()?)
            .parse()
            .map_err(|e| format!("{e}"))?;
        let mut server = Command::new(target_dir().join("debug").join("todo-server"))
            .arg(address.to_string())
            .arg("--db")
            .arg(dist.join("todo.db"))
            .arg("--dist")
            .arg(dist)
            .args(["--redis", &format!("redis://{redis}/")])
            .env("CRUDP_TOKEN_SECRET", &secret)
            .spawn()
            .map_err(|e| format!("cannot start a server: {e}"))?;
        wait_for(address, "a server", &mut server)?;
        processes.0.push(server);
        servers.push(address);
    }
    let proxy = TcpListener::bind(DEMO_ADDRESS)
        .map_err(|e| format!("cannot listen on {DEMO_ADDRESS}: {e}"))?;
    println!(
        "\nThe todo board is at http://{DEMO_ADDRESS}/, served by {n} servers ({}) that share \
         Redis at {redis}: each connection goes to the next one. Sign in, open Leptos or Yew; a \
         second window signed in as someone else shows changes live. Ctrl-C stops them all.",
        servers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (i, inbound) in proxy.incoming().enumerate() {
        let Ok(inbound) = inbound else { continue };
        let target = servers[i % servers.len()];
        thread::spawn(move || {
            if let Ok(outbound) = TcpStream::connect(target) {
                relay(inbound, outbound);
            }
        });
    }
    Ok(())
}

/// Copies both ways until each side is done.
fn relay(inbound: TcpStream, outbound: TcpStream) {
    let pipe = |mut from: TcpStream, mut to: TcpStream| {
        thread::spawn(move || {
            let mut buffer = [0u8; 16 * 1024];
            while let Ok(n) = from.read(&mut buffer) {
                if n == 0 || to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        })
    };
    let (Ok(inbound2), Ok(outbound2)) = (inbound.try_clone(), outbound.try_clone()) else {
        return;
    };
    let up = pipe(inbound, outbound);
    let down = pipe(outbound2, inbound2);
    let _ = (up.join(), down.join());
}
