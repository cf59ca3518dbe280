//! Two, then three todo servers as one: on a real `redis-server` and one SQLite file, behind a
//! round-robin proxy, so that a client's batches and its event stream land on different
//! servers. Four native clients make 1,000 creates while one server is killed with `SIGKILL`
//! and started again: every call succeeds, and each todo is stored exactly once.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use crudp::{Client, transport::ReqwestTransport};
use crudp_tests::{RedisServer, RoundRobinProxy};
use example_api::TodosClient;

/// Shared by the servers: at least 32 bytes.
const SECRET: &str = "two servers, one secret, 32 bytes or more";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `todo-server` sharing `redis` and `db`, killed when dropped.
struct Instance(Child);

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start(port: u16, db: &Path, redis: &str) -> Instance {
    let child = Command::new(env!("CARGO_BIN_EXE_todo-server"))
        .arg(format!("127.0.0.1:{port}"))
        .arg("--db")
        .arg(db)
        .args(["--redis", redis])
        .env("CRUDP_TOKEN_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let instance = Instance(child);
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return instance;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the todo server did not start");
}

fn client(proxy: &RoundRobinProxy, user: &str) -> Client {
    let cookie = format!("crudp_user={user}:guest");
    let http = reqwest::Client::builder()
        .default_headers(
            [(reqwest::header::COOKIE, cookie.parse().unwrap())]
                .into_iter()
                .collect(),
        )
        .build()
        .unwrap();
    Client::builder(proxy.url())
        .transport(ReqwestTransport::with_client(http))
        .build()
}

fn count(db: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(sql, [], |row| row.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_act_as_one_and_a_killed_one_loses_or_repeats_nothing() {
    killed_mid_run(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_act_as_one_and_a_killed_one_loses_or_repeats_nothing() {
    killed_mid_run(3).await;
}

async fn killed_mid_run(instances: usize) {
    let redis = RedisServer::start().await;
    let dir: PathBuf =
        std::env::temp_dir().join(format!("crudp-scale-{}-{instances}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("todo.db");
    let ports: Vec<u16> = (0..instances).map(|_| free_port()).collect();
    let mut first = start(ports[0], &db, &redis.url()).await;
    let mut others = Vec::new();
    for port in &ports[1..] {
        others.push(start(*port, &db, &redis.url()).await);
    }
    let proxy = RoundRobinProxy::start(
        ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}").parse().unwrap())
            .collect(),
    )
    .await;

    let made = Arc::new(AtomicUsize::new(0));
    let makers: Vec<_> = (0..4)
        .map(|i| {
            let client = client(&proxy, &format!("user{i}"));
            let made = Arc::clone(&made);
            tokio::spawn(async move {
                let todos = TodosClient::new(&client);
                for round in 0..10 {
                    let calls = (0..25).map(|j| todos.create(format!("todo {i}.{round}.{j}")));
                    for result in futures_util::future::join_all(calls).await {
                        result.expect("every call succeeds");
                        made.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();

    // A third of the way, the first server dies without a word, and comes back.
    while made.load(Ordering::SeqCst) < 300 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = first.0.kill();
    let _ = first.0.wait();
    tokio::time::sleep(Duration::from_millis(500)).await;
    first = start(ports[0], &db, &redis.url()).await;

    for maker in makers {
        maker.await.unwrap();
    }
    assert_eq!(made.load(Ordering::SeqCst), 1000);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM todos"),
        1000,
        "none lost, none twice"
    );
    assert_eq!(count(&db, "SELECT COUNT(DISTINCT title) FROM todos"), 1000);
    drop(first);
    let _ = std::fs::remove_dir_all(&dir);
}
