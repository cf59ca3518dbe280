//! `GET /modules`: the mounted modules' IDs, actions and serde shapes, off by default and for
//! signed-in users only.

#![cfg(not(target_arch = "wasm32"))]

use crudp::{Module, describe::Description};
use crudp_tests::{api::*, harness::*};

#[tokio::test]
async fn the_module_description_is_off_by_default() {
    let server = Server::start().await;
    let answer = http_as("ann", "admin")
        .get(format!("{}/modules", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
}

#[tokio::test]
async fn signed_in_users_read_every_mounted_module_with_its_shapes() {
    let server = Server::start_with(|b| b.describe_modules(true)).await;
    let url = format!("{}/modules", server.url());
    let anonymous = http().get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    let answer = http_as("ann", "admin").get(&url).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "application/json");
    let description: Description = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    assert_eq!(description, server.api.describe().unwrap());

    let todos = &description.modules["Todos"];
    assert_eq!(todos.id, TodosClient::DESCRIPTOR.id);
    let actions: Vec<&str> = todos.actions.keys().map(String::as_str).collect();
    assert_eq!(actions, ["create", "delete", "read", "update"]);
    let json = serde_json::to_value(&todos.actions["update"]).unwrap();
    assert_eq!(
        json["args"],
        serde_json::json!({ "TUPLE": [{ "TYPENAME": "Todo" }] })
    );
    assert_eq!(json["ok"], serde_json::json!({ "TYPENAME": "Todo" }));
    assert_eq!(json["err"], serde_json::json!({ "TYPENAME": "TodoError" }));
    let todo = serde_json::to_value(&description.types["Todo"]).unwrap();
    assert_eq!(
        todo,
        serde_json::json!({ "STRUCT": [{ "id": "U64" }, { "title": "STR" }, { "done": "BOOL" }] })
    );
    // Every mounted module is there, the one with a file reference included.
    for module in ["Catalog", "Fragile", "Attachments", "Search"] {
        assert!(description.modules.contains_key(module), "{module}");
    }
    // An enum inside the argument tuple, recursive too, with every variant.
    let filter = serde_json::to_value(&description.types["Filter"]).unwrap();
    assert_eq!(
        filter,
        serde_json::json!({ "ENUM": {
            "0": { "Eq": { "NEWTYPE": "STR" } },
            "1": { "Not": { "NEWTYPE": { "TYPENAME": "Filter" } } },
        } })
    );
}
