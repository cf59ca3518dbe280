//! Exactly-once across crashes: the real `todo-server` on its SQLite file is killed with
//! `SIGKILL` at random moments while three native clients create todos, and restarted on the
//! same file each time. Every create must resolve `Ok` and be stored exactly once.

use std::{
    collections::HashMap,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crudp::{CallError, Client, transport::ReqwestTransport};
use example_api::{TodoError, TodosClient};
use futures_util::future::join_all;

const CLIENTS: usize = 3;
const CREATES: usize = 1000;
const ROUNDS: usize = 10;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start(port: u16, db: &Path) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_todo-server"))
        .arg(format!("127.0.0.1:{port}"))
        .arg("--db")
        .arg(db)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the todo server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running
}

/// A native client signed in with the demo's cookie.
fn client_as(url: &str, user: &str) -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::COOKIE,
        format!("crudp_user={user}:member").parse().unwrap(),
    );
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    Client::builder(url)
        .transport(ReqwestTransport::with_client(http))
        .build()
}

/// xorshift64, seeded from the clock: the moments differ from run to run.
struct Random(u64);

impl Random {
    fn new() -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, high: usize) -> usize {
        (self.next() % high as u64) as usize
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.next() % (high - low))
    }
}

fn stored(db: &Path) -> Vec<(u64, String)> {
    let db = rusqlite::Connection::open(db).unwrap();
    let mut query = db
        .prepare("SELECT id, title FROM todos ORDER BY id")
        .unwrap();
    query
        .query_map([], |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_moments_every_create_is_stored_once() {
    let dir: PathBuf = std::env::temp_dir().join(format!("crudp-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("todo.db");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/crudp");
    let mut server = Some(start(port, &db).await);

    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<Client> = (0..CLIENTS)
        .map(|i| client_as(&url, &format!("user{i}")))
        .collect();
    let work = join_all(clients.iter().enumerate().map(|(i, client)| {
        let done = Arc::clone(&done);
        async move {
            let todos = TodosClient::new(client);
            let mine: Vec<usize> = (0..CREATES).filter(|n| n % CLIENTS == i).collect();
            let mut created = Vec::new();
            for chunk in mine.chunks(20) {
                let calls = chunk.iter().map(|n| todos.create(format!("todo {n}")));
                for (n, result) in chunk.iter().zip(join_all(calls).await) {
                    let todo =
                        result.map_err(|e: CallError<TodoError>| format!("todo {n}: {e}"))?;
                    assert_eq!(todo.title, format!("todo {n}"));
                    created.push((todo.id, todo.title));
                    done.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok::<_, String>(created)
        }
    }));

    // The kills follow the creates' progress, not the clock: each lands a random moment after
    // a random share of the creates has resolved, so a fast machine cannot outrun them.
    let kills = async {
        let mut random = Random::new();
        let mut thresholds: Vec<usize> = (0..ROUNDS)
            .map(|_| random.below(CREATES * 9 / 10))
            .collect();
        thresholds.sort_unstable();
        let mut at = Vec::new();
        for threshold in thresholds {
            while done.load(Ordering::SeqCst) < threshold {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            tokio::time::sleep(random.millis(0, 40)).await;
            at.push(done.load(Ordering::SeqCst));
            drop(server.take());
            tokio::time::sleep(random.millis(1, 300)).await;
            server = Some(start(port, &db).await);
        }
        at
    };

    let (created, kills_at) = tokio::time::timeout(Duration::from_secs(240), async {
        tokio::join!(work, kills)
    })
    .await
    .expect("every create resolves within 4 minutes");
    let created: Vec<(u64, String)> = created
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .expect("every create resolves Ok")
        .into_iter()
        .flatten()
        .collect();
    eprintln!("killed after {kills_at:?} of {CREATES} creates had resolved");
    assert!(
        kills_at.iter().filter(|n| **n < CREATES).count() >= ROUNDS / 2,
        "most kills must land while creates are under way: {kills_at:?}"
    );
    drop(clients);
    drop(server);

    assert_eq!(created.len(), CREATES);
    let rows = stored(&db);
    assert_eq!(rows.len(), CREATES, "the table holds one row per create");
    let by_title: HashMap<&str, u64> = rows.iter().map(|(id, t)| (t.as_str(), *id)).collect();
    assert_eq!(by_title.len(), CREATES, "no title is stored twice");
    for (id, title) in &created {
        assert_eq!(
            by_title.get(title.as_str()),
            Some(id),
            "{title} was answered with todo {id}, the one stored"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
