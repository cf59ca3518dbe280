//! The demo, end to end: two users in two headless Chromium windows, one on the Leptos front
//! end and one on the Yew front end, against the real `todo-server` over SQLite, through an
//! outage; then the same against two servers on Redis behind a round-robin proxy.
//! Screenshots go to `target/e2e/`.
//!
//! The front ends must be built first: `cargo xtask test` does it.

mod demo;
mod webdriver;

use demo::{Demo, add, sign_in};
use webdriver::Driver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_see_each_other_live_and_offline_todos_are_stored_once() {
    walkthrough(Demo::start("todo").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_works_across_two_servers_on_redis() {
    walkthrough(Demo::start_instances("todo-2", 2).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_attached_in_either_front_end_appears_for_the_other_user_and_downloads_intact() {
    let demo = Demo::start("attach").await;
    let base = demo.base.clone();
    let driver = Driver::start().await;
    let (ann, bob) = (driver.session().await, driver.session().await);
    sign_in(&ann, &base, "ann", true).await;
    sign_in(&bob, &base, "bob", false).await;
    ann.goto(&format!("{base}/leptos/")).await;
    bob.goto(&format!("{base}/yew/")).await;
    add(&ann, "needs a file").await;
    bob.wait_for_text("#todos", "the todo at bob's", |t| {
        t.contains("needs a file")
    })
    .await;

    // Each front end attaches a file of its own (a few upload pieces each); the other page
    // shows it as it is attached.
    let http = reqwest::Client::new();
    for (who, from, to, name) in [
        ("ann", &ann, &bob, "from-leptos.bin"),
        ("bob", &bob, &ann, "from-yew.bin"),
    ] {
        let data: Vec<u8> = (0..(3usize << 20) + 11)
            .map(|i| (i * 13 % 251) as u8 ^ name.len() as u8)
            .collect();
        let path = demo.out.join(name);
        std::fs::write(&path, &data).unwrap();
        // Chromium takes canonical paths only.
        let path = path.canonicalize().unwrap();
        from.type_into(".attach-file", &path.display().to_string())
            .await;
        for page in [from, to] {
            page.wait_for_text("#todos", name, |t| t.contains(name))
                .await;
        }
        // Anyone signed in downloads it, byte for byte.
        let href = to
            .evaluate(&format!(
                "return [...document.querySelectorAll('a.attachment')]
                    .find(a => a.textContent == '{name}').getAttribute('href')"
            ))
            .await;
        let href = href.as_str().unwrap().to_owned();
        let downloaded = http
            .get(format!("{base}{href}"))
            .header("cookie", "crudp_user=carol:user")
            .send()
            .await
            .unwrap();
        assert_eq!(downloaded.status(), 200, "{who}'s {name}");
        assert_eq!(downloaded.bytes().await.unwrap().as_ref(), &data[..]);
        let anonymous = http.get(format!("{base}{href}")).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
    }
    ann.screenshot(&demo.out.join("attach-leptos.png")).await;
    bob.screenshot(&demo.out.join("attach-yew.png")).await;
    ann.quit().await;
    bob.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optimistic_todo_turns_final_and_an_admins_delete_leaves_a_guests_page_live() {
    let mut demo = Demo::start("live").await;
    let base = demo.base.clone();
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

    // Optimistic: a todo added while the server is away shows at once, marked pending, on
    // the Yew page; once the server has run it, it is an ordinary row, there and at Ann's.
    demo.stop();
    bob.wait_for_text("#status", "offline", |t| t.starts_with("offline"))
        .await;
    add(&bob, "optimistic bread").await;
    bob.wait_for_text("#todos li.pending", "the pending row", |t| {
        t == "optimistic bread (pending)"
    })
    .await;
    bob.screenshot(&demo.out.join("live-yew-pending.png")).await;
    demo.restart().await;
    for page in [&bob, &ann] {
        page.wait_for_text("#todos", "the final row", |t| {
            t.contains("optimistic bread") && !t.contains("(pending)")
        })
        .await;
    }
    let pending = bob
        .evaluate("return document.querySelectorAll('#todos li.pending').length")
        .await;
    assert_eq!(pending, 0, "no row is left pending");
    assert_eq!(demo.stored("optimistic bread"), 1);

    // Live delete: Ann (an admin) deletes a todo; it leaves Bob's page (a guest's) as the
    // broadcast arrives, without the page reading the board again.
    add(&ann, "to be deleted").await;
    bob.wait_for_text("#todos", "the todo at bob's", |t| {
        t.contains("to be deleted")
    })
    .await;
    // Who changed what, as it happens.
    bob.wait_for_text("#activity", "ann's add in bob's feed", |t| {
        t.contains("ann added “to be deleted”")
    })
    .await;
    let reads = demo.board_reads();
    ann.execute(
        "[...document.querySelectorAll('#todos li')]
            .find(li => li.textContent.includes('to be deleted'))
            .querySelector('button').click()",
    )
    .await;
    bob.wait_for_text("#todos", "the delete at bob's", |t| {
        !t.contains("to be deleted") && t.contains("optimistic bread")
    })
    .await;
    bob.wait_for_text("#activity", "the delete in bob's feed", |t| {
        t.contains("was deleted")
    })
    .await;
    assert_eq!(demo.stored("to be deleted"), 0);
    assert_eq!(
        demo.board_reads(),
        reads,
        "a page read the whole board again after the delete"
    );
    assert!(reads >= 2, "each page read the board when it opened");
    // The server counted the calls, for `/metrics`.
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"crudp_calls_total{module="Todos",action="delete",outcome="ok"} 1"#),
        "{metrics}"
    );
    // And describes its modules to signed-in users.
    let http = reqwest::Client::new();
    let modules = http
        .get(format!("{base}/crudp/modules"))
        .header("cookie", "crudp_user=carol:user")
        .send()
        .await
        .unwrap();
    assert_eq!(modules.status(), 200);
    let modules = modules.text().await.unwrap();
    for name in ["\"Todos\"", "\"Board\"", "\"Attachments\"", "\"Todo\""] {
        assert!(modules.contains(name), "{name} missing from {modules}");
    }
    let anonymous = http
        .get(format!("{base}/crudp/modules"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    bob.screenshot(&demo.out.join("live-yew-after-delete.png"))
        .await;
    ann.quit().await;
    bob.quit().await;
}

/// Screenshots are named after the database: `<db>-leptos-offline.png` and so on.
async fn walkthrough(mut demo: Demo) {
    let name = demo.db.file_stem().unwrap().to_string_lossy().into_owned();
    let out = demo.out.clone();
    let shot = |page: &str| out.join(format!("{name}-{page}.png"));
    let base = demo.base.clone();

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
    demo.stop();
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
    ann.screenshot(&shot("leptos-offline")).await;
    bob.screenshot(&shot("yew-while-server-down")).await;
    assert_eq!(demo.stored("offline one"), 0);

    // Back: the queue is sent, each todo is stored once and reaches the other page.
    demo.restart().await;
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
    assert_eq!(demo.stored("offline one"), 1);
    assert_eq!(demo.stored("offline two"), 1);
    assert_eq!(demo.stored("milk from ann"), 1);
    ann.screenshot(&shot("leptos-after")).await;
    bob.screenshot(&shot("yew-after")).await;
    ann.quit().await;
    bob.quit().await;
}
