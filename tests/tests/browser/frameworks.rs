//! `crudp-leptos` and `crudp-yew` in the page: components that register listeners remove them
//! when they unmount, and the status they show follows an outage of the server.

use crudp::{Client, Connection, Read};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

use super::{client, command, eventually, reachable};
use crudp_tests::{Todo, TodoError, TodosClient};

/// An element of its own in the page's body, for one component.
fn mount_point() -> web_sys::HtmlElement {
    let document = web_sys::window().unwrap().document().unwrap();
    let element = document.create_element("div").unwrap();
    document.body().unwrap().append_child(&element).unwrap();
    element.dyn_into().unwrap()
}

/// What a component of either framework registers: the status, a listener, a live read that
/// follows two actions (with its reset watcher).
const REGISTERED: usize = 5;

/// Applies a heard todo to the live read's value: the fetched todo, replaced if it is the one.
fn replace(todo: &mut Todo, heard: Todo) {
    if heard.id == todo.id {
        *todo = heard;
    }
}

/// Shows the connection, as the page's text.
fn word(connection: Connection) -> &'static str {
    match connection {
        Connection::Online => "online",
        Connection::Reconnecting => "reconnecting",
        Connection::Offline => "offline",
    }
}

// `#[component]` makes a public props type.
#[allow(unreachable_pub)]
mod leptos_probe {
    use crudp_leptos::{provide_client, use_call, use_listener, use_live_read, use_status};
    use leptos::prelude::*;

    use super::*;

    #[component]
    pub(super) fn Probe(client: Client) -> impl IntoView {
        let client = provide_client(client);
        let todos = TodosClient::new(&client);
        let status = use_status();
        use_listener(todos.on_delete(|_| {}));
        let read = {
            let (fetch, follow) = (todos.clone(), todos.clone());
            use_live_read(
                move || fetch.read(1),
                move |live| {
                    live.follow(|hear| follow.on_update(hear), replace);
                    live.follow(|hear| follow.on_create(hear), replace);
                },
            )
        };
        let create = use_call(move |title: String| todos.create(title));
        let failed = move || matches!(read.read().get(), crudp::Read::<Todo, TodoError>::Failed(_));
        view! {
            <p class="status">{move || word(status.get().connection)}</p>
            <p>{move || create.pending().get().len()} {failed}</p>
        }
    }
}

mod yew_probe {
    use crudp_yew::{use_call, use_client, use_listener, use_live_read, use_status};
    use yew::prelude::*;

    use super::*;

    #[derive(Properties, PartialEq)]
    pub(super) struct Props {
        pub(super) client: Client,
    }

    #[function_component(Probe)]
    pub(super) fn probe(props: &Props) -> Html {
        html! {
            <ContextProvider<Client> context={props.client.clone()}>
                <Inner />
            </ContextProvider<Client>>
        }
    }

    #[function_component(Inner)]
    fn inner() -> Html {
        let client = use_client();
        let todos = TodosClient::new(&client);
        let status = use_status();
        let listening = todos.clone();
        use_listener(move |_| listening.on_delete(|_| {}));
        let (fetch, follow) = (todos.clone(), todos.clone());
        let read = use_live_read(
            move || fetch.read(1),
            move |live| {
                live.follow(|hear| follow.on_update(hear), replace);
                live.follow(|hear| follow.on_create(hear), replace);
            },
        );
        let create = use_call(move |title: String| todos.create(title));
        html! {
            <>
                <p class="status">{ word(status.connection) }</p>
                <p>{ create.pending().len() }{ matches!(read, Read::Failed(_)) }</p>
            </>
        }
    }
}

/// Yew renders and runs effects on its scheduler: let it.
async fn settle() {
    gloo_timers::future::sleep(std::time::Duration::from_millis(5)).await;
}

#[wasm_bindgen_test]
async fn a_leptos_component_mounted_and_unmounted_100_times_leaves_no_listener_behind() {
    let client = client();
    let before = client.listeners();
    for _ in 0..100 {
        let element = mount_point();
        let probe = client.clone();
        let mounted = leptos::mount::mount_to(element.clone(), move || {
            leptos::view! { <leptos_probe::Probe client=probe /> }
        });
        assert_eq!(
            client.listeners(),
            before + REGISTERED,
            "while it is mounted"
        );
        drop(mounted);
        element.remove();
    }
    assert_eq!(
        client.listeners(),
        before,
        "every unmount removed its listeners"
    );
}

#[wasm_bindgen_test]
async fn a_yew_component_mounted_and_unmounted_100_times_leaves_no_listener_behind() {
    let client = client();
    let before = client.listeners();
    for _ in 0..100 {
        let element = mount_point();
        let props = yew_probe::Props {
            client: client.clone(),
        };
        let app =
            yew::Renderer::<yew_probe::Probe>::with_root_and_props(element.clone().into(), props)
                .render();
        eventually("its listeners", || {
            client.listeners() == before + REGISTERED
        })
        .await;
        app.destroy();
        settle().await;
        element.remove();
        eventually("the unmount", || client.listeners() == before).await;
    }
    assert_eq!(client.listeners(), before);
}

/// Takes the server away with a call queued; the component's text says `offline`, then
/// `online` once the server is back.
async fn outage(element: &web_sys::HtmlElement, client: &Client) {
    let shown = || {
        element
            .query_selector(".status")
            .ok()
            .flatten()
            .and_then(|p| p.text_content())
            .unwrap_or_default()
    };
    let todos = TodosClient::new(client);
    todos.read(0).await.ok();
    eventually("online at first", || shown() == "online").await;
    command("down").await;
    let queued = todos.create("during the outage".into());
    eventually("offline", || shown() == "offline").await;
    command("up").await;
    eventually("online again", || shown() == "online").await;
    assert_eq!(queued.await.unwrap().title, "during the outage");
}

#[wasm_bindgen_test]
async fn the_leptos_status_signal_follows_an_outage() {
    reachable().await;
    let client = client();
    let element = mount_point();
    let probe = client.clone();
    let _mounted = leptos::mount::mount_to(element.clone(), move || {
        leptos::view! { <leptos_probe::Probe client=probe /> }
    });
    outage(&element, &client).await;
}

#[wasm_bindgen_test]
async fn the_yew_status_follows_an_outage() {
    reachable().await;
    let client = client();
    let element = mount_point();
    let props = yew_probe::Props {
        client: client.clone(),
    };
    let _app =
        yew::Renderer::<yew_probe::Probe>::with_root_and_props(element.clone().into(), props)
            .render();
    outage(&element, &client).await;
}
