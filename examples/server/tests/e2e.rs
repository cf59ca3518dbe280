//! The demo, end to end: two users in two headless Chromium windows, one on the Leptos front
//! end and one on the Yew front end, against the real `todo-server` over SQLite, through an
//! outage. Screenshots go to `target/e2e/`.
//!
//! The front ends must be built first: `cargo xtask test` does it.

mod webdriver;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::Duration,
};

use webdriver::{Driver, Session, free_port};

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

async fn sign_in(session: &Session, base: &str, name: &str, admin: bool) {
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

async fn add(session: &Session, title: &str) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_see_each_other_live_and_offline_todos_are_stored_once() {
    let dist = workspace().join("target/demo");
    assert!(
        dist.join("leptos/app_bg.wasm").exists() && dist.join("yew/app_bg.wasm").exists(),
        "the front ends are not built: run `cargo xtask test`, which builds them first"
    );
    let out = workspace().join("target/e2e");
    std::fs::create_dir_all(&out).unwrap();
    let db = out.join("todo.db");
    for stale in ["todo.db", "todo.db-wal", "todo.db-shm"] {
        let _ = std::fs::remove_file(out.join(stale));
    }
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let server = start_server(port, &db, &dist).await;

    let driver = Driver::start().await;
    let (ann, bob) = (driver.session().await, driver.session().await);
    sign_in(&ann, &base, "ann", true).await;
    sign_in(&bob, &base, "bob", false).await;
    ann.goto(&format!("{base}/leptos/")).await;
    bob.goto(&format!("{base}/yew/")).await;
    for page in [&ann, &bob] {
        page.wait_for_text("#status", "online", |t| t.starts_with("online"))
            .await;
    }

    // Live: a todo created in one page appears in the other.
    add(&ann, "milk from ann").await;
    bob.wait_for_text("#todos", "ann's todo at bob's", |t| {
        t.contains("milk from ann")
    })
    .await;
    add(&bob, "bread from bob").await;
    ann.wait_for_text("#todos", "bob's todo at ann's", |t| {
        t.contains("bread from bob")
    })
    .await;

    // Offline: with the server stopped, new todos are queued and shown as pending.
    drop(server);
    ann.wait_for_text("#status", "offline", |t| t.starts_with("offline"))
        .await;
    add(&ann, "offline one").await;
    add(&ann, "offline two").await;
    let pending = ann
        .wait_for_text("#todos", "the pending todos", |t| {
            t.contains("offline one (pending)") && t.contains("offline two (pending)")
        })
        .await;
    assert!(
        !pending.contains("offline one\n"),
        "not stored yet: {pending}"
    );
    ann.wait_for_text("#status", "two queued", |t| t.contains("2 queued"))
        .await;
    ann.screenshot(&out.join("leptos-offline.png")).await;
    bob.screenshot(&out.join("yew-while-server-down.png")).await;
    assert_eq!(stored(&db, "offline one"), 0);

    // Back: the queue is sent, each todo is stored once and reaches the other page.
    let _server = start_server(port, &db, &dist).await;
    for title in ["offline one", "offline two"] {
        bob.wait_for_text("#todos", title, |t| t.contains(title))
            .await;
    }
    ann.wait_for_text("#todos", "no more pending", |t| !t.contains("(pending)"))
        .await;
    ann.wait_for_text("#status", "online, nothing queued", |t| {
        t.starts_with("online, 0 queued, 0 in flight")
    })
    .await;
    assert_eq!(stored(&db, "offline one"), 1);
    assert_eq!(stored(&db, "offline two"), 1);
    assert_eq!(stored(&db, "milk from ann"), 1);
    ann.screenshot(&out.join("leptos-after.png")).await;
    bob.screenshot(&out.join("yew-after.png")).await;
    ann.quit().await;
    bob.quit().await;
}
