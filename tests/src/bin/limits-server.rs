//! A server with short time limits, for the tests that attack it from outside its process
//! (which runs under a low file-descriptor limit): `crudp::server::serve` with a 1 s header
//! timeout and at most 40 connections per address, a 2 s body timeout. It prints
//! `LISTENING <url>`, then serves until its standard input closes; its logs go to standard
//! error.

#[cfg(not(target_arch = "wasm32"))]
#[tokio::main]
async fn main() {
    use std::{sync::Arc, time::Duration};

    use crudp::server::{Crudp, serve};
    use crudp_tests::{Store, TodosServer, header_user};
    use tokio::io::AsyncReadExt;

    tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    let api = Crudp::builder()
        .authenticator(header_user)
        .handler(TodosServer::new(Arc::new(Store::default())))
        .body_timeout(Duration::from_secs(2))
        .build();
    let app = axum::Router::new().nest("/crudp", api.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    println!(
        "LISTENING http://{}/crudp",
        listener.local_addr().expect("an address")
    );
    let server = serve(listener, app)
        .header_timeout(Duration::from_secs(1))
        .connections_per_address(40);
    tokio::spawn(async move { server.await });
    // Serve until whoever started us closes our standard input.
    let mut rest = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut rest).await;
}

#[cfg(target_arch = "wasm32")]
fn main() {}
