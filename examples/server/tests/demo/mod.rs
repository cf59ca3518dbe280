//! The demo for the browser tests: its server on a free port over a fresh SQLite file, and what
//! a user does on its pages.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::Duration,
};

use crudp_tests::{RedisServer, RoundRobinProxy};

use crate::webdriver::{Session, free_port};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The server, stopped when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The servers' shared token secret, when they run on Redis.
const SECRET: &str = "the demo's instances share this secret of 32+ bytes";

async fn start_server(
    port: u16,
    db: &Path,
    dist: &Path,
    redis: Option<&RedisServer>,
    log: &Path,
) -> Running {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_todo-server"));
    command
        .env("NO_COLOR", "1")
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    command.arg(format!("127.0.0.1:{port}")).args([
        "--db".as_ref(),
        db.as_os_str(),
        "--dist".as_ref(),
        dist.as_os_str(),
    ]);
    if let Some(redis) = redis {
        command
            .args(["--redis", &redis.url()])
            .env("CRUDP_TOKEN_SECRET", SECRET);
    }
    let mut child = command.spawn().unwrap();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Running(child);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the todo server did not start");
}

pub(crate) async fn sign_in(session: &Session, base: &str, name: &str, admin: bool) {
    session.goto(&format!("{base}/")).await;
    session.type_into("#name", name).await;
    let role = if admin {
        "#role option:nth-child(2)"
    } else {
        "#role option:nth-child(1)"
    };
    session.click(role).await;
    session.click("#signin").await;
    session
        .wait_for_text("body", "the sign-in", |t| {
            t.contains(&format!("Signed in as {name}"))
        })
        .await;
}

pub(crate) async fn add(session: &Session, title: &str) {
    session.type_into("#new-title", title).await;
    session.click("#add").await;
}

fn stored(db: &Path, title: &str) -> usize {
    let db = rusqlite::Connection::open(db).unwrap();
    db.query_row(
        "SELECT COUNT(*) FROM todos WHERE title = ?1",
        [title],
        |row| row.get::<_, i64>(0),
    )
    .unwrap() as usize
}

/// The built front ends and a fresh `target/e2e/<name>.db` (and no `<name>.files`):
/// `(dist, out, db)`.
fn prepare(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dist = workspace().join("target/demo");
    assert!(
        dist.join("leptos/app_bg.wasm").exists() && dist.join("yew/app_bg.wasm").exists(),
        "the front ends are not built: run `cargo xtask test`, which builds them first"
    );
    let out = workspace().join("target/e2e");
    std::fs::create_dir_all(&out).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(out.join(format!("{name}.db{suffix}")));
    }
    let _ = std::fs::remove_dir_all(out.join(format!("{name}.files")));
    let _ = std::fs::remove_file(out.join(format!("{name}.log")));
    let db = out.join(format!("{name}.db"));
    (dist, out, db)
}

/// The demo on a fresh `target/e2e/<name>.db`: one server on a free port, or several on a
/// `redis-server` of their own behind a round-robin proxy.
pub(crate) struct Demo {
    pub(crate) dist: PathBuf,
    /// Where screenshots go.
    pub(crate) out: PathBuf,
    pub(crate) db: PathBuf,
    /// What the servers print: `target/e2e/<name>.log`.
    log: PathBuf,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
    ports: Vec<u16>,
    servers: Vec<Running>,
    redis: Option<RedisServer>,
    _proxy: Option<RoundRobinProxy>,
}

impl Demo {
    /// One server.
    pub(crate) async fn start(name: &str) -> Self {
        Self::start_instances(name, 1).await
    }

    /// `instances` servers acting as one (on Redis when there are several).
    pub(crate) async fn start_instances(name: &str, instances: usize) -> Self {
        let (dist, out, db) = prepare(name);
        let redis = if instances > 1 {
            Some(RedisServer::start().await)
        } else {
            None
        };
        let ports: Vec<u16> = (0..instances).map(|_| free_port()).collect();
        let proxy = if instances > 1 {
            let targets = ports
                .iter()
                .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
                .collect();
            Some(RoundRobinProxy::start(targets).await)
        } else {
            None
        };
        let base = match &proxy {
            Some(proxy) => format!("http://{}", proxy.addr),
            None => format!("http://127.0.0.1:{}", ports[0]),
        };
        let mut demo = Self {
            log: out.join(format!("{name}.log")),
            dist,
            out,
            db,
            base,
            ports,
            servers: Vec::new(),
            redis,
            _proxy: proxy,
        };
        demo.restart().await;
        demo
    }

    /// Stops the servers.
    pub(crate) fn stop(&mut self) {
        self.servers.clear();
    }

    /// Starts the servers again, on the same ports and database.
    pub(crate) async fn restart(&mut self) {
        for port in &self.ports {
            let server =
                start_server(*port, &self.db, &self.dist, self.redis.as_ref(), &self.log).await;
            self.servers.push(server);
        }
    }

    /// How many times a page read the whole board (`Board::read`), as the servers logged.
    #[allow(dead_code)] // not every test counts them
    pub(crate) fn board_reads(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches("board read")
            .count()
    }

    /// How many todos titled `title` the database holds.
    pub(crate) fn stored(&self, title: &str) -> usize {
        stored(&self.db, title)
    }
}
