//! The todo board in Leptos, on `crudp-leptos`: a board kept live by everyone's changes,
//! todos shown at once while they are sent, a status pill, who changed what as it happens,
//! and files attached with a progress bar.

use crudp::{Client, UploadProgress};
use crudp_leptos::{provide_client, use_call, use_client, use_listener, use_live_read, use_status};
use example_api::{
    Attachment, AttachmentsClient, BoardClient, Todo, TodosClient, activity, attach,
    connection_word, percent, signed_in, status_line, upsert,
};
use leptos::{prelude::*, task::spawn_local};

fn main() {
    console_error_panic_hook::set_once();
    mount_to_body(App);
}

/// The uploads under way, by todo.
#[derive(Clone, Copy)]
struct Uploads(RwSignal<Vec<(u64, UploadProgress)>>);

#[component]
fn App() -> impl IntoView {
    let client = provide_client(Client::new("/crudp"));
    let todos = TodosClient::new(&client);
    let title = RwSignal::new(String::new());
    // "online, 2 queued, 0 in flight", and the pill's colour.
    let status = use_status();

    // Who changed what, newest first, and how many changes this page heard (its own too).
    let (feed, heard) = (RwSignal::new(Vec::<String>::new()), RwSignal::new(0usize));
    let note = move |line: String| {
        heard.update(|n| *n += 1);
        feed.update(|f| f.insert(0, line));
    };
    use_listener(todos.on_create(move |t| note(activity::created(&t))));
    use_listener(todos.on_update(move |t| note(activity::updated(&t))));
    use_listener(todos.on_delete(move |id| feed.update(|f| f.insert(0, activity::deleted(id)))));

    // ANCHOR: live
    // The board: read once, then kept current by everyone's creates, updates and deletes
    // (a delete's listeners hear its argument, the ID); read again only after a reset.
    let board = {
        let (board, todos) = (BoardClient::new(&client), todos.clone());
        use_live_read(
            move || board.read(),
            move |live| {
                live.follow(|hear| todos.on_create(hear), upsert);
                live.follow(|hear| todos.on_update(hear), upsert);
                live.follow(
                    |hear| todos.on_delete(hear),
                    |list, id| list.retain(|t: &Todo| t.id != id),
                );
            },
        )
    };
    // Queued at once, even offline: shown as pending until the server has run it.
    let create = use_call(move |title: String| todos.create(title));
    // ANCHOR_END: live

    let attachments = {
        let (files, read) = (
            AttachmentsClient::new(&client),
            AttachmentsClient::new(&client),
        );
        use_live_read(
            move || read.read(),
            move |live| {
                live.follow(|hear| files.on_create(hear), attach);
            },
        )
    };
    provide_context(attachments.value());
    provide_context(Uploads(RwSignal::new(Vec::new())));

    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let text = title.get_untracked().trim().to_owned();
        if !text.is_empty() {
            title.set(String::new());
            create.dispatch(text);
        }
    };
    let notice = move || match create.value().get() {
        Some(Err(e)) => e.to_string(),
        _ => String::new(),
    };

    view! {
        <main>
            <h1>"Todo board " <small>"(Leptos)"</small></h1>
            <p>
                {signed_in(&cookies())} " · " <a href="/">"switch user"</a> " · "
                // Nothing of this user's stays in the browser for the next one.
                <a id="signout" href="/signout" on:click=move |_| client.sign_out()>"sign out"</a>
                " "
                <span id="status" class=move || format!("pill {}", connection_word(status.get()))>
                    {move || status_line(status.get())}
                </span>
            </p>
            <form on:submit=add>
                <input id="new-title" placeholder="What needs doing?"
                    prop:value=move || title.get()
                    on:input=move |ev| title.set(event_target_value(&ev)) />
                <button id="add" type="submit">"Add"</button>
            </form>
            <p id="notice">{notice}</p>
            <ul id="todos">
                <For
                    each=move || board.value().get().unwrap_or_default()
                    key=|todo| (todo.id, todo.done, todo.title.clone())
                    children=row
                />
                // Keyed by place: two pending todos may have one title.
                <For
                    each=move || create.pending().get().into_iter().enumerate()
                    key=|(i, text)| (*i, text.clone())
                    children=|(_, text)| view! { <li class="pending">{text} " (pending)"</li> }
                />
            </ul>
            <p id="heard">{move || heard.get()} " changes heard"</p>
            <ul id="activity">
                <For each=move || feed.get().into_iter().take(8).enumerate() key=|(i, line)| (*i, line.clone())
                    children=|(_, line)| view! { <li>{line}</li> } />
            </ul>
        </main>
    }
}

fn row(todo: Todo) -> impl IntoView {
    let client = use_client();
    let todos = TodosClient::new(&client);
    let id = todo.id;
    let toggled = Todo {
        done: !todo.done,
        ..todo.clone()
    };
    // The row is marked while its change is on its way.
    let update = use_call({
        let todos = todos.clone();
        move |todo: Todo| todos.update(todo)
    });
    let delete = use_call(move |id: u64| todos.delete(id));
    let Uploads(uploads) = expect_context();
    let attached = expect_context::<Signal<Option<Vec<Attachment>>>>();

    let upload = move |ev: leptos::ev::Event| {
        let Some(file) = picked(&ev) else {
            return;
        };
        let client = client.clone();
        spawn_local(async move {
            let show = move |p: UploadProgress| {
                uploads.update(|u| {
                    u.retain(|(todo, _)| *todo != id);
                    u.push((id, p));
                });
            };
            show(UploadProgress::default());
            // Sent in pieces, going on after an outage; then attached for everyone to see.
            let uploaded = client.upload(file).on_progress(show).await;
            uploads.update(|u| u.retain(|(todo, _)| *todo != id));
            if let Ok(file) = uploaded {
                let _ = AttachmentsClient::new(&client).create(id, file).await;
            }
        });
    };
    let progress = move || {
        uploads.get().into_iter().find(|(todo, _)| *todo == id).map(|(_, p)| {
            view! { <progress class="upload" max=p.total value=p.sent>{percent(p)} "%"</progress> }
        })
    };
    let files = move || {
        attached
            .get()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.todo == id)
            .map(|a| view! { <a class="attachment" href=a.href() title=a.by.clone()>{a.file.name.clone()}</a> " " })
            .collect_view()
    };
    view! {
        <li class:done=todo.done class:pending=move || update.is_pending().get() || delete.is_pending().get()>
            <input type="checkbox" prop:checked=todo.done on:change=move |_| update.dispatch(toggled.clone()) />
            <span title=format!("by {}", todo.by)>{todo.title}</span>
            " "
            <button on:click=move |_| delete.dispatch(id)>"✕"</button>
            " "
            <label class="attach">"attach a file"<input type="file" class="attach-file" on:change=upload /></label>
            {progress}
            " "
            {files}
        </li>
    }
}

/// The page's cookies, for the sign-in line.
fn cookies() -> String {
    use wasm_bindgen::JsCast;
    web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.dyn_into::<web_sys::HtmlDocument>().ok())
        .and_then(|d| d.cookie().ok())
        .unwrap_or_default()
}

/// The file the user picked in the input that fired `ev`, as an upload (the input is cleared
/// for the next one). The page runs in the browser only; natively (where it is only
/// type-checked) there is no browser file to read.
fn picked(ev: &leptos::ev::Event) -> Option<crudp::UploadSource> {
    use wasm_bindgen::JsCast;
    let input = ev
        .target()
        .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())?;
    let file = input.files().and_then(|f| f.get(0))?;
    input.set_value("");
    #[cfg(target_arch = "wasm32")]
    return Some(file.into());
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = file;
        unreachable!("the page runs in the browser")
    }
}
