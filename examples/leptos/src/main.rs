//! The todo board in Leptos: the generated `TodosClient`, `BoardClient` and
//! `AttachmentsClient`, typed listeners for everyone's changes, uploads with a progress bar,
//! and the client's status.

use crudp::{Client, UploadProgress};
use example_api::{
    Attachment, AttachmentsClient, BoardClient, Todo, TodosClient, connection_word, percent,
    signed_in, status_line,
};
use leptos::{prelude::*, task::spawn_local};

thread_local! {
    static API: (Client, TodosClient, BoardClient, AttachmentsClient) = {
        let client = Client::new("/crudp");
        let todos = TodosClient::new(&client);
        let board = BoardClient::new(&client);
        let attachments = AttachmentsClient::new(&client);
        (client, todos, board, attachments)
    };
}

fn todos() -> TodosClient {
    API.with(|api| api.1.clone())
}

fn attachments() -> AttachmentsClient {
    API.with(|api| api.3.clone())
}

/// The files attached to todos, and the uploads under way (by todo), for every row.
#[derive(Clone, Copy)]
struct Files {
    attached: RwSignal<Vec<Attachment>>,
    uploading: RwSignal<Vec<(u64, UploadProgress)>>,
}

/// Adds an attachment once, whether heard of by result or by broadcast.
fn attach(list: &mut Vec<Attachment>, attachment: Attachment) {
    if !list.iter().any(|a| a.file.id == attachment.file.id) {
        list.push(attachment);
    }
}

fn main() {
    console_error_panic_hook::set_once();
    mount_to_body(App);
}

/// Adds or replaces a todo in a list kept in ID order.
fn upsert(list: &mut Vec<Todo>, todo: Todo) {
    SINCE_RELOAD.with_borrow_mut(|since| {
        if let Some(since) = since {
            since.push(todo.clone());
        }
    });
    match list.binary_search_by_key(&todo.id, |t| t.id) {
        Ok(i) => list[i] = todo,
        Err(i) => list.insert(i, todo),
    }
}

#[component]
fn App() -> impl IntoView {
    let (client, board) = API.with(|api| (api.0.clone(), api.2.clone()));
    let list = RwSignal::new(Vec::<Todo>::new());
    let pending = RwSignal::new(Vec::<(u64, String)>::new());
    let status = RwSignal::new(client.status());
    let notice = RwSignal::new(String::new());
    let title = RwSignal::new(String::new());

    // ANCHOR: listeners
    // Everyone's new and changed todos, this page's own included.
    todos()
        .on_create(move |todo| list.update(|l| upsert(l, todo)))
        .keep();
    todos()
        .on_update(move |todo| list.update(|l| upsert(l, todo)))
        .keep();
    // Deletions are broadcast to admins only: reload the board when one arrives.
    todos().on_delete(move |_: u64| reload(list)).keep();
    // "Offline, 3 queued" for the status line.
    client.on_status(move |s| status.set(s)).keep();
    // Broadcasts may have been missed (the server restarted, say): reload the board.
    client.on_reset(move || reload(list)).keep();
    // ANCHOR_END: listeners
    // Files attached by anyone appear as they are attached.
    let files = Files {
        attached: RwSignal::new(Vec::new()),
        uploading: RwSignal::new(Vec::new()),
    };
    provide_context(files);
    attachments()
        .on_create(move |a| files.attached.update(|l| attach(l, a)))
        .keep();
    spawn_local(async move {
        if let Ok(all) = attachments().read().await {
            files
                .attached
                .update(|l| all.into_iter().for_each(|a| attach(l, a)));
        }
    });
    // How many changes this page heard of, its own included.
    let heard = RwSignal::new(0usize);
    todos().on_create(move |_| heard.update(|n| *n += 1)).keep();
    todos().on_update(move |_| heard.update(|n| *n += 1)).keep();
    spawn_local(async move {
        if let Ok(todos) = board.read().await {
            list.set(todos);
        }
    });

    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let text = title.get_untracked().trim().to_owned();
        if text.is_empty() {
            return;
        }
        title.set(String::new());
        let key = next_key();
        pending.update(|p| p.push((key, text.clone())));
        // ANCHOR: create
        spawn_local(async move {
            // Queued at once, even offline; the result arrives when the server has run it.
            let result = todos().create(text).await;
            pending.update(|p| p.retain(|(k, _)| *k != key));
            match result {
                Ok(todo) => list.update(|l| upsert(l, todo)),
                Err(e) => notice.set(e.to_string()),
            }
        });
        // ANCHOR_END: create
    };

    view! {
        <main>
            <h1>"Todo board " <small>"(Leptos)"</small></h1>
            <p>
                {signed_in(&cookies())} " · " <a href="/">"switch user"</a> " · "
                // Nothing of this user's stays in the browser for the next one.
                <a id="signout" href="/signout" on:click=move |_| client.sign_out()>"sign out"</a>
            </p>
            <p id="status" class=move || connection_word(status.get())>{move || status_line(status.get())}</p>
            <form on:submit=add>
                <input id="new-title" placeholder="What needs doing?"
                    prop:value=move || title.get()
                    on:input=move |ev| title.set(event_target_value(&ev)) />
                <button id="add" type="submit">"Add"</button>
            </form>
            <p id="notice">{move || notice.get()}</p>
            <ul id="todos">
                <For each=move || list.get() key=|todo| (todo.id, todo.done, todo.title.clone()) children=row />
                <For
                    each=move || pending.get()
                    key=|(key, _)| *key
                    children=|(_, text)| view! { <li class="pending">{text} " (pending)"</li> }
                />
            </ul>
            <p id="heard">{move || heard.get()} " changes heard"</p>
        </main>
    }
}

fn row(todo: Todo) -> impl IntoView {
    let toggled = Todo {
        done: !todo.done,
        ..todo.clone()
    };
    let id = todo.id;
    let files = expect_context::<Files>();
    let upload = move |ev: leptos::ev::Event| {
        use wasm_bindgen::JsCast;
        let input = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok());
        let Some(file) = input
            .as_ref()
            .and_then(|i| i.files())
            .and_then(|f| f.get(0))
        else {
            return;
        };
        if let Some(input) = input {
            input.set_value("");
        }
        spawn_local(async move {
            let client = API.with(|api| api.0.clone());
            let show = move |p: UploadProgress| {
                files.uploading.update(|u| {
                    u.retain(|(todo, _)| *todo != id);
                    u.push((id, p));
                });
            };
            show(UploadProgress::default());
            // Sent in pieces, going on after an outage; then attached for everyone to see.
            let uploaded = client.upload(picked(file)).on_progress(show).await;
            files
                .uploading
                .update(|u| u.retain(|(todo, _)| *todo != id));
            if let Ok(file) = uploaded
                && let Ok(attachment) = attachments().create(id, file).await
            {
                files.attached.update(|l| attach(l, attachment));
            }
        });
    };
    let progress = move || {
        files
            .uploading
            .get()
            .into_iter()
            .find(|(todo, _)| *todo == id)
            .map(|(_, p)| {
                view! {
                    <progress class="upload" max=p.total value=p.sent>{percent(p)} "%"</progress>
                }
            })
    };
    let attached = move || {
        files
            .attached
            .get()
            .into_iter()
            .filter(|a| a.todo == id)
            .map(|a| view! { <a class="attachment" href=a.href() title=a.by.clone()>{a.file.name.clone()}</a> " " })
            .collect_view()
    };
    view! {
        <li class:done=todo.done>
            <input type="checkbox" prop:checked=todo.done on:change=move |_| {
                let toggled = toggled.clone();
                spawn_local(async move { let _ = todos().update(toggled).await; });
            } />
            <span>{todo.title}</span>
            " "
            <button on:click=move |_| {
                spawn_local(async move { let _ = todos().delete(id).await; });
            }>"✕"</button>
            " "
            <label class="attach">"attach a file"<input type="file" class="attach-file" on:change=upload /></label>
            {progress}
            " "
            {attached}
        </li>
    }
}

thread_local! {
    /// While a reload is under way, the todos that arrived meanwhile: the board read may
    /// predate them, so they are applied again on top of it.
    static SINCE_RELOAD: std::cell::RefCell<Option<Vec<Todo>>> = const { std::cell::RefCell::new(None) };
}

fn reload(list: RwSignal<Vec<Todo>>) {
    let board = API.with(|api| api.2.clone());
    SINCE_RELOAD.with_borrow_mut(|since| {
        since.get_or_insert_with(Vec::new);
    });
    spawn_local(async move {
        let read = board.read().await;
        let since = SINCE_RELOAD.take().unwrap_or_default();
        if let Ok(todos) = read {
            list.set(todos);
        }
        list.update(|l| since.into_iter().for_each(|todo| upsert(l, todo)));
    });
}

/// A key for a pending row.
fn next_key() -> u64 {
    thread_local!(static NEXT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) });
    NEXT.with(|n| {
        n.set(n.get() + 1);
        n.get()
    })
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

/// The file the user picked, as an upload. The page runs in the browser only; natively (where
/// it is only type-checked) there is no browser file to read.
#[cfg(target_arch = "wasm32")]
fn picked(file: web_sys::File) -> crudp::UploadSource {
    file.into()
}

/// The file the user picked, as an upload. The page runs in the browser only; natively (where
/// it is only type-checked) there is no browser file to read.
#[cfg(not(target_arch = "wasm32"))]
fn picked(_: web_sys::File) -> crudp::UploadSource {
    unreachable!("the page runs in the browser")
}
