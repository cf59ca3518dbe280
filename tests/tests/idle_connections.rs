//! Connections that send nothing, or a body a byte at a time, against `crudp::server::serve`
//! in a process of its own with few file descriptors (`ulimit -n 64`): they are closed after
//! the time limits, the accept loop waits out the shortage of descriptors and says so once,
//! and other users are served.

#![cfg(not(target_arch = "wasm32"))]

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::Stdio,
    time::Duration,
};

use crudp::Client;
use crudp_tests::*;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpSocket, TcpStream},
    process::{Child, Command},
};

/// The limits server under `ulimit -n 64`, its URL, and its standard error.
async fn start() -> (Child, String, tokio::process::ChildStderr) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 64 && exec {}",
            env!("CARGO_BIN_EXE_limits-server")
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap();
    let url = line.strip_prefix("LISTENING ").unwrap().to_owned();
    let stderr = child.stderr.take().unwrap();
    (child, url, stderr)
}

fn address_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches("/crudp")
        .parse()
        .unwrap()
}

/// A connection to `server` from `source` (a 127.0.0.x of its own).
async fn connect_from(server: SocketAddr, source: Ipv4Addr) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
    socket.connect(server).await.ok()
}

/// Whether the server closed `stream` (reading gives its end, or an answer and then its end),
/// waiting at most a minute: a liveness guard, not a speed check.
async fn closed(mut stream: TcpStream) -> bool {
    let mut buffer = [0u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .is_ok()
}

/// A create through a fresh client, as `user`, which must succeed within a minute.
async fn served(url: &str, user: &str) {
    let client = Client::builder(url)
        .mode(crudp::Mode::Call)
        .transport(transport_as(user, "member"))
        .build();
    let call = TodosClient::new(&client).create(format!("{user} was served"));
    let todo = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("served within a minute")
        .expect("the call succeeds");
    assert_eq!(todo.title, format!("{user} was served"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_slow_bodies_and_a_shortage_of_descriptors_lock_nobody_out() {
    let (server_process, url, stderr) = start().await;
    let server = address_of(&url);
    served(&url, "ann").await;

    // 120 connections that send nothing, 12 from each of 10 addresses: more than the
    // process has descriptors.
    let mut idle = Vec::new();
    for i in 0..120u8 {
        let source = Ipv4Addr::new(127, 0, 0, 10 + i % 10);
        idle.push(
            connect_from(server, source)
                .await
                .expect("the backlog takes it"),
        );
    }
    // Someone else is served once the idle ones are closed (after the 1 s header timeout).
    served(&url, "bob").await;
    for stream in idle {
        assert!(closed(stream).await, "an idle connection was closed");
    }

    // One address may hold 40 connections; the rest are closed at once.
    let mut crowd = Vec::new();
    for _ in 0..45 {
        crowd.push(
            connect_from(server, Ipv4Addr::new(127, 0, 0, 30))
                .await
                .unwrap(),
        );
    }
    // Bodies trickling in a byte every 200 ms: answered `408` after the 2 s body timeout.
    let mut slow = Vec::new();
    for i in 0..10u8 {
        let mut stream = connect_from(server, Ipv4Addr::new(127, 0, 0, 40 + i))
            .await
            .unwrap();
        stream
            .write_all(
                format!(
                    "POST /crudp/sync HTTP/1.1\r\nHost: {server}\r\nContent-Type: \
                     application/octet-stream\r\nX-User: mallory:member\r\nContent-Length: \
                     1000\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        slow.push(stream);
    }
    let trickle = tokio::spawn(async move {
        let mut answers = Vec::new();
        for _ in 0..30 {
            for stream in &mut slow {
                let _ = stream.write_all(b"x").await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for mut stream in slow {
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
                .await;
            answers.push(String::from_utf8_lossy(&answer).into_owned());
        }
        answers
    });
    served(&url, "carol").await;
    for answer in trickle.await.unwrap() {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    let mut refused = 0;
    for stream in crowd {
        if closed(stream).await {
            refused += 1;
        }
    }
    assert_eq!(
        refused, 45,
        "held ones closed by the header timeout, the rest at once"
    );

    // Each time descriptors ran short is logged once, with its end: a few lines, not one per
    // failed `accept` (one every 100 ms while short).
    drop(server_process);
    let mut logs = String::new();
    let mut stderr = stderr;
    let _ = tokio::time::timeout(Duration::from_secs(10), stderr.read_to_string(&mut logs)).await;
    let short = logs.matches("cannot accept connections").count();
    let again = logs.matches("accepting connections again").count();
    assert!((1..=5).contains(&short), "{short} times: {logs}");
    assert_eq!(short, again, "{logs}");
}
