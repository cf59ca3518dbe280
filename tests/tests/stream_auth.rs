//! An event stream's token is not enough once its user signed out: the authenticator runs on
//! `GET /events` and `GET /poll` too, so a stream of a signed-out user, of someone now signed
//! in as another user, or of a changed role is refused at its next reconnection.

#![cfg(not(target_arch = "wasm32"))]

use crudp::ClientId;
use crudp_tests::*;

/// The status of `GET /{endpoint}` with `token`, sent with the `x-user` credentials given.
async fn status(server: &Server, endpoint: &str, token: &str, user: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new().get(format!(
        "{}/{endpoint}?token={token}&lastEventId=0",
        server.url()
    ));
    if let Some(user) = user {
        request = request.header("x-user", user);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_stream_needs_its_users_credentials_still_valid() {
    let server = Server::start().await;
    let token = server.token("ann", "member", ClientId(1)).await;
    for endpoint in ["events", "poll"] {
        let still = |user| status(&server, endpoint, &token, user);
        assert_eq!(
            still(Some("ann:member")).await,
            200,
            "{endpoint}: ann herself"
        );
        assert_eq!(still(Some("nobody")).await, 401, "{endpoint}: signed out");
        assert_eq!(still(Some("bob:member")).await, 401, "{endpoint}: now bob");
        assert_eq!(
            still(Some("ann:admin")).await,
            401,
            "{endpoint}: a new role"
        );
        // No session at all (an `EventSource` of another origin): the token vouches alone.
        assert_eq!(still(None).await, 200, "{endpoint}: no credentials");
    }
}

#[tokio::test]
async fn a_server_may_rely_on_the_token_alone() {
    let server = Server::start_with(|b| b.authenticate_streams(false)).await;
    let token = server.token("ann", "member", ClientId(1)).await;
    assert_eq!(status(&server, "events", &token, Some("nobody")).await, 200);
    assert_eq!(
        status(&server, "events", &token, Some("bob:member")).await,
        200
    );
}
