//! The smallest wasm app that logs a line; with the `client` feature it also makes one call of
//! each action through the generated `TodosClient` and listens to results and status.

use wasm_bindgen::prelude::wasm_bindgen;

/// Runs when the module loads.
#[wasm_bindgen(start)]
pub fn start() {
    web_sys::console::log_1(&"started".into());
    #[cfg(feature = "client")]
    calls();
}

#[cfg(feature = "client")]
fn calls() {
    use example_api::{Todo, TodosClient};

    let client = crudp::Client::new("/crudp");
    let todos = TodosClient::new(&client);
    let _created = todos.on_create(|todo| web_sys::console::log_1(&todo.title.into()));
    let _status =
        client.on_status(|s| web_sys::console::log_1(&example_api::status_line(s).into()));
    wasm_bindgen_futures::spawn_local(async move {
        let created = todos.create("milk".into()).await;
        let _ = todos.read(1).await;
        let _ = todos
            .update(Todo {
                id: 1,
                title: "milk".into(),
                done: true,
                by: String::new(),
            })
            .await;
        let _ = todos.delete(1).await;
        web_sys::console::log_1(&format!("{created:?}").into());
    });
}
