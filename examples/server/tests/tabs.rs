//! Several tabs of the demo in one headless Chromium: they share one event stream (counted at
//! the server's `/online`), every tab's calls and broadcasts arrive, when the tab holding the
//! stream closes another takes it over without losing or repeating an event, and the queue of
//! a tab closed offline is sent once by one of the tabs opened after it.
//!
//! The front ends must be built first: `cargo xtask test` does it.

mod demo;
mod webdriver;

use std::time::{Duration, Instant};

use crudp::{Client, transport::ReqwestTransport};
use demo::{Demo, add, sign_in};
use example_api::TodosClient;
use webdriver::{Driver, Session};

/// The demo, and ann signed in on its home page in a new browser.
async fn ann_at_home(name: &str) -> (Demo, Driver, Session) {
    let demo = Demo::start(name).await;
    let driver = Driver::start().await;
    let ann = driver.session().await;
    sign_in(&ann, &demo.base, "ann", false).await;
    (demo, driver, ann)
}

/// Waits until `user` has `streams` event streams open carrying `clients` clients in all.
async fn wait_online(base: &str, user: &str, streams: u64, clients: u64) {
    let mut last = serde_json::Value::Null;
    for _ in 0..300 {
        last = reqwest::get(format!("{base}/online"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let online = &last[user];
        if online["streams"] == streams && online["clients"] == clients {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{user} never had {streams} stream(s) for {clients} clients: /online says {last}");
}

/// Opens the Leptos board in a new tab of `session`, waits until it is online, and returns
/// the tab's handle.
async fn open_board(session: &Session, base: &str) -> String {
    let tab = session.new_tab().await;
    session.switch_to(&tab).await;
    board_here(session, base).await
}

/// Opens the Leptos board in the current tab of `session`, waits until it is online, and
/// returns the tab's handle.
async fn board_here(session: &Session, base: &str) -> String {
    session.goto(&format!("{base}/leptos/")).await;
    session
        .wait_for_text("#status", "the board online", |t| t.starts_with("online"))
        .await;
    session.current_tab().await
}

/// Each tab adds a todo; then every tab shows all of them, stored, and has heard `heard`
/// changes in all.
async fn each_tab_adds_one(session: &Session, tabs: &[String], round: &str, heard: &[usize]) {
    let titles: Vec<String> = (0..tabs.len())
        .map(|i| format!("{round} from tab {i}"))
        .collect();
    for (tab, title) in tabs.iter().zip(&titles) {
        session.switch_to(tab).await;
        add(session, title).await;
    }
    for (i, tab) in tabs.iter().enumerate() {
        session.switch_to(tab).await;
        session
            .wait_for_text("#todos", "every tab's todo", |t| {
                titles.iter().all(|title| t.contains(title.as_str())) && !t.contains("(pending)")
            })
            .await;
        let expected = format!("{} changes heard", heard[i]);
        session
            .wait_for_text("#heard", &expected, |t| t == expected)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_and_then_eight_tabs_share_one_event_stream() {
    let (demo, _driver, ann) = ann_at_home("tabs").await;
    let base = demo.base.clone();
    let first = ann.current_tab().await;
    ann.goto(&format!("{base}/leptos/")).await;
    let mut tabs = vec![first];
    while tabs.len() < 6 {
        tabs.push(open_board(&ann, &base).await);
    }
    wait_online(&base, "ann", 1, 6).await;
    each_tab_adds_one(&ann, &tabs, "six", &[6; 6]).await;

    while tabs.len() < 8 {
        tabs.push(open_board(&ann, &base).await);
    }
    wait_online(&base, "ann", 1, 8).await;
    // The first six heard the first round too.
    each_tab_adds_one(&ann, &tabs, "eight", &[14, 14, 14, 14, 14, 14, 8, 8]).await;
    for i in 0..6 {
        assert_eq!(demo.stored(&format!("six from tab {i}")), 1);
    }
    for i in 0..8 {
        assert_eq!(demo.stored(&format!("eight from tab {i}")), 1);
    }
    ann.screenshot(&demo.out.join("eight-tabs.png")).await;
    ann.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_tab_holding_the_stream_closes_another_takes_over_and_nothing_is_lost_or_repeated()
{
    let (demo, _driver, ann) = ann_at_home("takeover").await;
    let base = demo.base.clone();
    // The first tab to open leads.
    let leader = board_here(&ann, &base).await;
    let followers = [open_board(&ann, &base).await, open_board(&ann, &base).await];
    wait_online(&base, "ann", 1, 3).await;

    // Bob creates todos one after another from a native client, while ann's leading tab closes.
    let http = reqwest::Client::builder()
        .default_headers(
            [(
                reqwest::header::COOKIE,
                "crudp_user=bob:guest".parse().unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    let bob = Client::builder(format!("{base}/crudp"))
        .transport(ReqwestTransport::with_client(http))
        .build();
    let todos = TodosClient::new(&bob);
    let total = 30;
    let creating = tokio::spawn(async move {
        for i in 0..total {
            todos.create(format!("bob-{i:02}")).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    ann.switch_to(&leader).await;
    ann.close_tab().await;
    let closed = Instant::now();
    ann.switch_to(&followers[0]).await;
    wait_online(&base, "ann", 1, 2).await;
    eprintln!("the stream was taken over in {:?}", closed.elapsed());
    creating.await.unwrap();

    let expected = format!("{total} changes heard");
    for tab in &followers {
        ann.switch_to(tab).await;
        ann.wait_for_text("#todos", "all of bob's todos", |t| {
            (0..total).all(|i| t.contains(&format!("bob-{i:02}")))
        })
        .await;
        ann.wait_for_text("#heard", &expected, |t| t == expected)
            .await;
    }
    // A repeated event would still be on its way: give it time, then count again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for tab in &followers {
        ann.switch_to(tab).await;
        assert_eq!(ann.text("#heard").await, expected, "an event was repeated");
    }
    for i in 0..total {
        assert_eq!(demo.stored(&format!("bob-{i:02}")), 1);
    }
    ann.screenshot(&demo.out.join("takeover.png")).await;
    ann.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_opening_at_once_send_the_queue_of_a_tab_closed_offline_once() {
    let (mut demo, _driver, ann) = ann_at_home("orphan").await;
    let base = demo.base.clone();
    let home = ann.current_tab().await;
    let closed = open_board(&ann, &base).await;

    // Offline, two todos wait in the tab's queue; then the tab is closed.
    demo.stop();
    ann.wait_for_text("#status", "offline", |t| t.starts_with("offline"))
        .await;
    for title in ["left behind 0", "left behind 1"] {
        add(&ann, title).await;
    }
    ann.wait_for_text("#status", "two queued", |t| t.contains("2 queued"))
        .await;
    ann.close_tab().await;
    ann.switch_to(&home).await;

    // Two tabs open at the same moment; each may find the queue left behind.
    demo.restart().await;
    ann.execute(
        "window.open('/leptos/', '_blank', 'noopener'); window.open('/leptos/', '_blank', 'noopener');",
    )
    .await;
    let mut opened = Vec::new();
    for _ in 0..100 {
        opened = ann.tabs().await;
        opened.retain(|tab| *tab != home && *tab != closed);
        if opened.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(opened.len(), 2, "two new tabs");
    for tab in &opened {
        ann.switch_to(tab).await;
        ann.wait_for_text("#status", "online", |t| t.starts_with("online"))
            .await;
    }
    for _ in 0..100 {
        if demo.stored("left behind 0") + demo.stored("left behind 1") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each tab still works under its own ID, and sees the todos left behind.
    for (i, tab) in opened.iter().enumerate() {
        ann.switch_to(tab).await;
        add(&ann, &format!("after {i}")).await;
    }
    for (i, tab) in opened.iter().enumerate() {
        ann.switch_to(tab).await;
        ann.wait_for_text("#todos", "every todo", |t| {
            ["left behind 0", "left behind 1", &format!("after {i}")]
                .iter()
                .all(|title| t.contains(title))
                && !t.contains("(pending)")
        })
        .await;
    }
    for title in ["left behind 0", "left behind 1", "after 0", "after 1"] {
        assert_eq!(demo.stored(title), 1, "{title}");
    }
    ann.screenshot(&demo.out.join("orphan.png")).await;
    ann.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_left_from_before_a_sign_in_as_someone_else_does_not_stop_the_others() {
    let (demo, _driver, browser) = ann_at_home("switch").await;
    let base = demo.base.clone();
    let home = browser.current_tab().await;
    // Ann's board leads the stream; then the browser signs in as bob.
    let _stale = open_board(&browser, &base).await;
    browser.switch_to(&home).await;
    sign_in(&browser, &base, "bob", false).await;
    // Bob's board joins the stream that ann's tab leads: the server refuses ann's client to
    // bob, and the stream goes on with bob's.
    let _fresh = open_board(&browser, &base).await;
    add(&browser, "bob after the switch").await;
    browser
        .wait_for_text("#todos", "bob's todo", |t| {
            t.contains("bob after the switch") && !t.contains("(pending)")
        })
        .await;
    assert_eq!(demo.stored("bob after the switch"), 1);
    wait_online(&base, "bob", 1, 1).await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_hands_the_stream_over_and_rejoins_when_it_resumes() {
    let (demo, _driver, ann) = ann_at_home("frozen").await;
    let base = demo.base.clone();
    let leader = board_here(&ann, &base).await;
    let follower = open_board(&ann, &base).await;
    wait_online(&base, "ann", 1, 2).await;

    // The browser freezes the leading tab (as it does with background tabs): the other tab
    // takes the stream over, for itself.
    ann.switch_to(&leader).await;
    ann.execute("document.dispatchEvent(new Event('freeze'))")
        .await;
    wait_online(&base, "ann", 1, 1).await;
    ann.switch_to(&follower).await;
    add(&ann, "while frozen").await;
    ann.wait_for_text("#todos", "the todo", |t| {
        t.contains("while frozen") && !t.contains("(pending)")
    })
    .await;

    // Resumed, it is carried again, and hears what it missed.
    ann.switch_to(&leader).await;
    ann.execute("document.dispatchEvent(new Event('resume'))")
        .await;
    wait_online(&base, "ann", 1, 2).await;
    ann.wait_for_text("#todos", "the todo in the resumed tab", |t| {
        t.contains("while frozen")
    })
    .await;
    ann.quit().await;
}

/// The keys of the demo's origin's `localStorage` that CRUDP wrote.
async fn saved_keys(session: &Session) -> Vec<String> {
    let keys = session
        .evaluate("return Object.keys(localStorage).filter(k => k.startsWith('crudp:')).sort()")
        .await;
    serde_json::from_value(keys).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_leaves_nothing_of_the_user_to_send_or_keep_for_the_next_one() {
    let (mut demo, _driver, browser) = ann_at_home("signout").await;
    let base = demo.base.clone();
    board_here(&browser, &base).await;

    // Offline, a todo of ann's waits in the saved queue.
    demo.stop();
    browser
        .wait_for_text("#status", "offline", |t| t.starts_with("offline"))
        .await;
    add(&browser, "ann's unsent").await;
    browser
        .wait_for_text("#status", "one queued", |t| t.contains("1 queued"))
        .await;
    let before = saved_keys(&browser).await;
    assert!(
        before.iter().any(|k| k.contains(":queue:")),
        "the queue is saved: {before:?}"
    );

    // Ann signs out (the server is still down, so the page cannot load what comes next).
    browser.click("#signout").await;
    demo.restart().await;
    browser.goto(&format!("{base}/")).await;
    assert_eq!(
        saved_keys(&browser).await,
        Vec::<String>::new(),
        "nothing of ann's is kept"
    );

    // Bob signs in: his todo is stored, ann's is neither sent nor kept.
    sign_in(&browser, &base, "bob", false).await;
    board_here(&browser, &base).await;
    add(&browser, "bob's todo").await;
    browser
        .wait_for_text("#todos", "bob's todo", |t| {
            t.contains("bob's todo") && !t.contains("(pending)")
        })
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(demo.stored("bob's todo"), 1);
    assert_eq!(demo.stored("ann's unsent"), 0, "ann's call was not sent");
    assert!(!browser.text("#todos").await.contains("ann's unsent"));
    let after = saved_keys(&browser).await;
    assert!(
        after.iter().all(|k| !k.contains(":queue:")),
        "no queue is kept: {after:?}"
    );
    browser.quit().await;
}
