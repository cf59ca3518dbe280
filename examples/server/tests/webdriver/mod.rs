//! Just enough of the W3C WebDriver protocol to drive headless Chromium through Debian's
//! `chromedriver`: sessions, tabs, navigation, elements, text and screenshots.

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running `chromedriver`, stopped when dropped.
pub(crate) struct Driver {
    process: Child,
    url: String,
    http: reqwest::Client,
}

/// A free port on 127.0.0.1.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Driver {
    pub(crate) async fn start() -> Self {
        let port = free_port();
        let process = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (`cargo xtask test` installs it)");
        let driver = Self {
            process,
            url: format!("http://127.0.0.1:{port}"),
            // A connection per command: chromedriver may close an idle connection just as
            // the next command goes out on it, which fails that command.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("a client"),
        };
        for _ in 0..100 {
            if driver
                .http
                .get(format!("{}/status", driver.url))
                .send()
                .await
                .is_ok()
            {
                return driver;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start");
    }

    /// A new browser with its own profile (its own cookies and storage).
    pub(crate) async fn session(&self) -> Session {
        let profile = std::env::temp_dir().join(format!("crudp-e2e-profile-{}", free_port()));
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--window-size=900,700", "--disable-popup-blocking",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let answer = call(
            &self.http,
            reqwest::Method::POST,
            &format!("{}/session", self.url),
            Some(capabilities),
        )
        .await;
        let id = answer["sessionId"]
            .as_str()
            .expect("a session ID")
            .to_owned();
        Session {
            http: self.http.clone(),
            url: format!("{}/session/{id}", self.url),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Value {
    let response = http
        .request(method, url)
        .json(&body.unwrap_or(json!({})))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let value: Value = response.json().await.unwrap();
    assert!(status.is_success(), "WebDriver {url}: {status} {value}");
    value["value"].clone()
}

/// One browser.
pub(crate) struct Session {
    http: reqwest::Client,
    url: String,
}

impl Session {
    async fn post(&self, path: &str, body: Value) -> Value {
        call(
            &self.http,
            reqwest::Method::POST,
            &format!("{}/{path}", self.url),
            Some(body),
        )
        .await
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}/{path}", self.url))
            .send()
            .await
            .unwrap();
        let value: Value = response.json().await.unwrap();
        value["value"].clone()
    }

    /// Opens a new tab (not switched to); its handle.
    #[allow(dead_code)]
    pub(crate) async fn new_tab(&self) -> String {
        let tab = self.post("window/new", json!({ "type": "tab" })).await;
        tab["handle"].as_str().expect("a window handle").to_owned()
    }

    /// The handle of the current tab.
    #[allow(dead_code)]
    pub(crate) async fn current_tab(&self) -> String {
        self.get("window")
            .await
            .as_str()
            .expect("a window handle")
            .to_owned()
    }

    /// The handles of every open tab.
    #[allow(dead_code)]
    pub(crate) async fn tabs(&self) -> Vec<String> {
        let handles = self.get("window/handles").await;
        handles
            .as_array()
            .expect("window handles")
            .iter()
            .map(|h| h.as_str().expect("a window handle").to_owned())
            .collect()
    }

    /// Runs `script` in the current tab.
    #[allow(dead_code)]
    pub(crate) async fn execute(&self, script: &str) {
        self.post("execute/sync", json!({ "script": script, "args": [] }))
            .await;
    }

    /// Runs `script` (a function body) in the current tab; what it returns.
    #[allow(dead_code)]
    pub(crate) async fn evaluate(&self, script: &str) -> Value {
        self.post("execute/sync", json!({ "script": script, "args": [] }))
            .await
    }

    /// Makes `handle` the tab that commands go to.
    #[allow(dead_code)]
    pub(crate) async fn switch_to(&self, handle: &str) {
        self.post("window", json!({ "handle": handle })).await;
    }

    /// Closes the current tab; switch to another before the next command.
    #[allow(dead_code)]
    pub(crate) async fn close_tab(&self) {
        call(
            &self.http,
            reqwest::Method::DELETE,
            &format!("{}/window", self.url),
            None,
        )
        .await;
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.post("url", json!({ "url": url })).await;
    }

    /// The first element matching `css`, once there is one.
    pub(crate) async fn find(&self, css: &str) -> String {
        for _ in 0..200 {
            let found = self
                .http
                .post(format!("{}/element", self.url))
                .json(&json!({ "using": "css selector", "value": css }))
                .send()
                .await
                .unwrap();
            if found.status().is_success() {
                let value: Value = found.json().await.unwrap();
                return value["value"][ELEMENT].as_str().unwrap().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no element matches {css}");
    }

    pub(crate) async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.post(&format!("element/{element}/click"), json!({}))
            .await;
    }

    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.post(&format!("element/{element}/value"), json!({ "text": text }))
            .await;
    }

    /// The rendered text of the first element matching `css`.
    pub(crate) async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.get(&format!("element/{element}/text"))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the text of `css` satisfies `done`; panics with the last text after 30 s.
    pub(crate) async fn wait_for_text(
        &self,
        css: &str,
        what: &str,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let mut last = String::new();
        for _ in 0..300 {
            last = self.text(css).await;
            if done(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}; `{css}` reads {last:?}");
    }

    pub(crate) async fn screenshot(&self, path: &Path) {
        let png = self.get("screenshot").await;
        let bytes = STANDARD.decode(png.as_str().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    pub(crate) async fn quit(self) {
        let _ = self.http.delete(&self.url).send().await;
    }
}
