//! The server the browser tests talk to: the test API behind a proxy that can take it off the
//! network, a second one (with tokens of the default lifetime, so its streams stay open)
//! behind a proxy that buffers whole answers, so that no event stream gets through, and a
//! control endpoint for the tests. It prints `CRUDP_TEST_SERVER=<url>`,
//! `CRUDP_TEST_BUFFERED=<url>` and `CRUDP_TEST_CONTROL=<url>`, then serves until its standard
//! input closes.
//!
//! Control (CORS-enabled for 127.0.0.1 pages): `POST /down`, `POST /up`, `POST /gate` (lets one
//! create titled `gated…` through), `GET /executions`,
//! `GET /batches`.
//!
//! With `--instances N` (N ≥ 2), each of the two servers is N instances acting as one: on a
//! `redis-server` of their own, sharing one store, behind a round-robin proxy.

#[cfg(not(target_arch = "wasm32"))]
#[tokio::main]
async fn main() {
    use std::{sync::Arc, time::Duration};

    use axum::routing::{get, post};
    use crudp::server::CrudpBuilder;
    use crudp_tests::{BufferingProxy, Cluster, Proxy, Server, loopback_cors};
    use tokio::io::AsyncReadExt;

    /// One server, or a cluster of them.
    enum Serving {
        One(Server),
        Many(Cluster),
    }

    impl Serving {
        async fn start(instances: usize, configure: impl Fn(CrudpBuilder) -> CrudpBuilder) -> Self {
            if instances > 1 {
                Self::Many(Cluster::start(instances, configure).await)
            } else {
                Self::One(Server::start_with(configure).await)
            }
        }

        fn addr(&self) -> std::net::SocketAddr {
            match self {
                Self::One(server) => server.addr,
                Self::Many(cluster) => cluster.proxy.addr,
            }
        }

        fn executions(&self) -> usize {
            match self {
                Self::One(server) => server.executions(),
                Self::Many(cluster) => cluster.executions(),
            }
        }

        fn requests(&self) -> usize {
            match self {
                Self::One(server) => server.requests(),
                Self::Many(cluster) => cluster.requests(),
            }
        }

        /// Lets one create titled `gated…` through (the instances share their store).
        fn open_gate(&self) {
            let store = match self {
                Self::One(server) => &server.store,
                Self::Many(cluster) => &cluster.servers[0].store,
            };
            store.gate.add_permits(1);
        }
    }

    let args: Vec<String> = std::env::args().collect();
    let instances = match args.iter().position(|a| a == "--instances") {
        Some(i) => args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .expect("--instances takes a number"),
        None => 1,
    };
    // Uploads go to a directory of this process's, which the instances of a cluster share.
    let files = std::env::temp_dir().join(format!("crudp-test-server-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&files);
    // Tokens live 2 s, so every browser test sees its stream's token rotate.
    let server = Arc::new(
        Serving::start(instances, |b| {
            b.token_ttl(Duration::from_secs(2)).files_dir(&files)
        })
        .await,
    );
    let proxy = Arc::new(Proxy::start(server.addr()).await);
    let buffered = Serving::start(instances, |b| b).await;
    let buffering = BufferingProxy::start(buffered.addr()).await;
    let (down, up) = (Arc::clone(&proxy), Arc::clone(&proxy));
    let (executions, batches, gate) = (
        Arc::clone(&server),
        Arc::clone(&server),
        Arc::clone(&server),
    );
    let control = axum::Router::new()
        .route("/down", post(move || async move { down.down().await }))
        .route("/up", post(move || async move { up.up().await }))
        .route("/gate", post(move || async move { gate.open_gate() }))
        .route(
            "/executions",
            get(move || async move { executions.executions().to_string() }),
        )
        .route(
            "/batches",
            get(move || async move { batches.requests().to_string() }),
        )
        .layer(loopback_cors());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    println!("CRUDP_TEST_SERVER={}", proxy.url());
    println!("CRUDP_TEST_BUFFERED={}", buffering.url());
    println!(
        "CRUDP_TEST_CONTROL=http://{}",
        listener.local_addr().expect("an address")
    );
    tokio::spawn(async move { axum::serve(listener, control).await });
    // Serve until whoever started us closes our standard input.
    let mut rest = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut rest).await;
    let _ = std::fs::remove_dir_all(&files);
}

#[cfg(target_arch = "wasm32")]
fn main() {}
