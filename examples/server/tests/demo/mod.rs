//! The demo for the browser tests: its server on a free port over a fresh SQLite file, and what
//! a user does on its pages.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::Duration,
};

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

async fn start_server(port: u16, db: &Path, dist: &Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_todo-server"))
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "--db".as_ref(),
            db.as_os_str(),
            "--dist".as_ref(),
            dist.as_os_str(),
        ])
        .spawn()
        .unwrap();
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

/// The built front ends and a fresh `target/e2e/<name>.db`: `(dist, out, db)`.
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
    let db = out.join(format!("{name}.db"));
    (dist, out, db)
}

/// The demo server on a free port over a fresh `target/e2e/<name>.db`.
pub(crate) struct Demo {
    pub(crate) dist: PathBuf,
    /// Where screenshots go.
    pub(crate) out: PathBuf,
    pub(crate) db: PathBuf,
    pub(crate) port: u16,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
    server: Option<Running>,
}

impl Demo {
    pub(crate) async fn start(name: &str) -> Self {
        let (dist, out, db) = prepare(name);
        let port = free_port();
        let server = start_server(port, &db, &dist).await;
        Self {
            dist,
            out,
            db,
            port,
            base: format!("http://127.0.0.1:{port}"),
            server: Some(server),
        }
    }

    /// Stops the server.
    pub(crate) fn stop(&mut self) {
        self.server = None;
    }

    /// Starts the server again, on the same port and database.
    pub(crate) async fn restart(&mut self) {
        self.server = Some(start_server(self.port, &self.db, &self.dist).await);
    }

    /// How many todos titled `title` the database holds.
    pub(crate) fn stored(&self, title: &str) -> usize {
        stored(&self.db, title)
    }
}
