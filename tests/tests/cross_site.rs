//! Cross-site request forgery: what a page of another site can make a visitor's browser send
//! (a "simple" request: `text/plain`, a form, or no content type; or any request from its
//! origin) is refused before anything runs, on every `POST` endpoint.

#![cfg(not(target_arch = "wasm32"))]

use crudp::ClientId;
use crudp_tests::*;

async fn post(
    server: &Server,
    endpoint: &str,
    content_type: Option<&str>,
    origin: Option<&str>,
) -> u16 {
    let body = match endpoint {
        "token" => token_request(&[ClientId(5)]),
        _ => batch_of(ClientId(5), creates("forged", [1])),
    };
    let mut request = http()
        .post(format!("{}/{endpoint}", server.url()))
        // The victim's session, as a cookie would carry it.
        .header("x-user", "victim:admin")
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn simple_requests_and_foreign_origins_are_refused_before_anything_runs() {
    let server = Server::start().await;
    let evil = Some("https://evil.example");
    for endpoint in ["call", "sync", "token"] {
        for content_type in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            None,
        ] {
            for origin in [evil, None] {
                assert_eq!(
                    post(&server, endpoint, content_type, origin).await,
                    415,
                    "{endpoint} with {content_type:?} from {origin:?}"
                );
            }
        }
        let octets = Some("application/octet-stream");
        assert_eq!(
            post(&server, endpoint, octets, evil).await,
            403,
            "{endpoint}"
        );
    }
    assert_eq!(server.executions(), 0, "nothing ran");
    assert_eq!(server.store.todos.lock().unwrap().len(), 0);

    // The server's own pages, the allowed ones (here: 127.0.0.1), and clients outside a
    // browser are served.
    let own = format!("http://{}", server.addr);
    let octets = Some("application/octet-stream");
    assert_eq!(post(&server, "call", octets, Some(&own)).await, 200);
    assert_eq!(
        post(&server, "token", octets, Some("http://127.0.0.1:1")).await,
        200
    );
    assert_eq!(post(&server, "sync", octets, None).await, 202);
    eventually("the accepted calls to run", || server.executions() == 1).await;
}
