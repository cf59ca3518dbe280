//! The page: the generated `TodosClient`, `BoardClient` and `AttachmentsClient`, typed
//! listeners for everyone's changes, uploads with a progress bar, and the client's status.

use std::rc::Rc;

use crudp::{Client, Status, UploadProgress};
use example_api::{
    Attachment, AttachmentsClient, BoardClient, Todo, TodosClient, connection_word, percent,
    signed_in, status_line,
};
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

thread_local! {
    static API: (Client, TodosClient, BoardClient, AttachmentsClient) = {
        let client = Client::new("/crudp");
        let todos = TodosClient::new(&client);
        let board = BoardClient::new(&client);
        let attachments = AttachmentsClient::new(&client);
        (client, todos, board, attachments)
    };
}

fn attachments() -> AttachmentsClient {
    API.with(|api| api.3.clone())
}

fn client() -> Client {
    API.with(|api| api.0.clone())
}

fn todos() -> TodosClient {
    API.with(|api| api.1.clone())
}

fn board() -> BoardClient {
    API.with(|api| api.2.clone())
}

pub(crate) fn start() {
    console_error_panic_hook::set_once();
    yew::Renderer::<App>::new().render();
}

/// The page's state: the board, the calls this page is waiting for, and the client's status.
#[derive(Clone, PartialEq)]
struct Page {
    list: Vec<Todo>,
    pending: Vec<(u64, String)>,
    status: Status,
    notice: String,
    /// The files attached to todos.
    attached: Vec<Attachment>,
    /// The uploads under way, by todo.
    uploading: Vec<(u64, UploadProgress)>,
    /// While a reload is under way, the todos that arrived meanwhile: the board read may
    /// predate them, so they are applied again on top of it.
    since_reload: Option<Vec<Todo>>,
}

enum Change {
    Reloading,
    ReloadFailed,
    Loaded(Vec<Todo>),
    Upsert(Todo),
    Pending(u64, String),
    Settled(u64),
    Status(Status),
    Notice(String),
    Attached(Attachment),
    Uploading(u64, Option<UploadProgress>),
}

impl Reducible for Page {
    type Action = Change;

    fn reduce(self: Rc<Self>, change: Change) -> Rc<Self> {
        let mut page = (*self).clone();
        match change {
            Change::Reloading => {
                page.since_reload.get_or_insert_with(Vec::new);
            }
            Change::ReloadFailed => page.since_reload = None,
            Change::Loaded(list) => {
                page.list = list;
                for todo in page.since_reload.take().unwrap_or_default() {
                    page.upsert(todo);
                }
            }
            Change::Upsert(todo) => {
                if let Some(since) = &mut page.since_reload {
                    since.push(todo.clone());
                }
                page.upsert(todo);
            }
            Change::Pending(key, title) => page.pending.push((key, title)),
            Change::Settled(key) => page.pending.retain(|(k, _)| *k != key),
            Change::Status(status) => page.status = status,
            Change::Notice(notice) => page.notice = notice,
            // Once, whether heard of by result or by broadcast.
            Change::Attached(attachment) => {
                if !page
                    .attached
                    .iter()
                    .any(|a| a.file.id == attachment.file.id)
                {
                    page.attached.push(attachment);
                }
            }
            Change::Uploading(todo, progress) => {
                page.uploading.retain(|(t, _)| *t != todo);
                page.uploading.extend(progress.map(|p| (todo, p)));
            }
        }
        Rc::new(page)
    }
}

impl Page {
    fn upsert(&mut self, todo: Todo) {
        match self.list.binary_search_by_key(&todo.id, |t| t.id) {
            Ok(i) => self.list[i] = todo,
            Err(i) => self.list.insert(i, todo),
        }
    }
}

fn reload(page: UseReducerDispatcher<Page>) {
    page.dispatch(Change::Reloading);
    spawn_local(async move {
        match board().read().await {
            Ok(list) => page.dispatch(Change::Loaded(list)),
            Err(_) => page.dispatch(Change::ReloadFailed),
        }
    });
}

#[function_component(App)]
fn app() -> Html {
    let page = use_reducer(|| Page {
        list: Vec::new(),
        pending: Vec::new(),
        status: client().status(),
        notice: String::new(),
        attached: Vec::new(),
        uploading: Vec::new(),
        since_reload: None,
    });
    let input = use_node_ref();

    {
        let page = page.dispatcher();
        use_effect_with((), move |()| {
            let (created, updated, deleted, status, missed, attached) = (
                page.clone(),
                page.clone(),
                page.clone(),
                page.clone(),
                page.clone(),
                page.clone(),
            );
            let listeners = [
                todos().on_create(move |todo| created.dispatch(Change::Upsert(todo))),
                todos().on_update(move |todo| updated.dispatch(Change::Upsert(todo))),
                // Deletions are broadcast to admins only: reload the board when one arrives.
                todos().on_delete(move |_: u64| reload(deleted.clone())),
                client().on_status(move |s| status.dispatch(Change::Status(s))),
                // Broadcasts may have been missed (the server restarted, say): reload the board.
                client().on_reset(move || reload(missed.clone())),
                // Files attached by anyone appear as they are attached.
                attachments().on_create(move |a| attached.dispatch(Change::Attached(a))),
            ];
            reload(page.clone());
            spawn_local(async move {
                if let Ok(all) = attachments().read().await {
                    all.into_iter()
                        .for_each(|a| page.dispatch(Change::Attached(a)));
                }
            });
            move || listeners.into_iter().for_each(crudp::Listener::remove)
        });
    }

    let add = {
        let (page, input) = (page.dispatcher(), input.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let Some(field) = input.cast::<web_sys::HtmlInputElement>() else {
                return;
            };
            let title = field.value().trim().to_owned();
            if title.is_empty() {
                return;
            }
            field.set_value("");
            let key = next_key();
            page.dispatch(Change::Pending(key, title.clone()));
            let page = page.clone();
            // ANCHOR: create
            spawn_local(async move {
                // Queued at once, even offline; the result arrives when the server has run it.
                let result = todos().create(title).await;
                page.dispatch(Change::Settled(key));
                match result {
                    Ok(todo) => page.dispatch(Change::Upsert(todo)),
                    Err(e) => page.dispatch(Change::Notice(e.to_string())),
                }
            });
            // ANCHOR_END: create
        })
    };

    let rows = page.list.iter().map(|todo| {
        let toggled = Todo {
            done: !todo.done,
            ..todo.clone()
        };
        let id = todo.id;
        let toggle = Callback::from(move |_: Event| {
            let toggled = toggled.clone();
            spawn_local(async move {
                let _ = todos().update(toggled).await;
            });
        });
        let remove = Callback::from(move |_: MouseEvent| {
            spawn_local(async move {
                let _ = todos().delete(id).await;
            });
        });
        let upload = {
            let page = page.dispatcher();
            Callback::from(move |event: Event| {
                let Some(input) = event.target_dyn_into::<web_sys::HtmlInputElement>() else {
                    return;
                };
                let Some(file) = input.files().and_then(|f| f.get(0)) else {
                    return;
                };
                input.set_value("");
                let page = page.clone();
                spawn_local(async move {
                    let shown = page.clone();
                    let show = move |p| shown.dispatch(Change::Uploading(id, Some(p)));
                    show(UploadProgress::default());
                    // Sent in pieces, going on after an outage; then attached for everyone.
                    let uploaded = client().upload(picked(file)).on_progress(show).await;
                    page.dispatch(Change::Uploading(id, None));
                    if let Ok(file) = uploaded
                        && let Ok(attachment) = attachments().create(id, file).await
                    {
                        page.dispatch(Change::Attached(attachment));
                    }
                });
            })
        };
        let progress = page
            .uploading
            .iter()
            .find(|(todo, _)| *todo == id)
            .map(|(_, p)| {
                html! {
                    <progress class="upload" max={p.total.to_string()} value={p.sent.to_string()}>
                        { percent(*p) }{ "%" }
                    </progress>
                }
            });
        let attached = page.attached.iter().filter(|a| a.todo == id).map(|a| {
            html! {
                <><a class="attachment" href={a.href()} title={a.by.clone()}>{ &a.file.name }</a>{ " " }</>
            }
        });
        html! {
            <li key={todo.id} class={classes!(todo.done.then_some("done"))}>
                <input type="checkbox" checked={todo.done} onchange={toggle} />
                <span>{ &todo.title }</span>
                { " " }
                <button onclick={remove}>{ "✕" }</button>
                { " " }
                <label class="attach">{ "attach a file" }<input type="file" class="attach-file" onchange={upload} /></label>
                { for progress }
                { " " }
                { for attached }
            </li>
        }
    });
    let waiting = page.pending.iter().map(|(key, title)| {
        html! { <li key={format!("pending-{key}")} class="pending">{ title }{ " (pending)" }</li> }
    });
    let status = page.status;

    html! {
        <main>
            <h1>{ "Todo board " }<small>{ "(Yew)" }</small></h1>
            <p>
                { signed_in(&cookies()) }{ " · " }<a href="/">{ "switch user" }</a>{ " · " }
                // Nothing of this user's stays in the browser for the next one.
                <a id="signout" href="/signout" onclick={|_| client().sign_out()}>{ "sign out" }</a>
            </p>
            <p id="status" class={connection_word(status)}>
                { status_line(status) }
            </p>
            <form onsubmit={add}>
                <input id="new-title" ref={input} placeholder="What needs doing?" />
                <button id="add" type="submit">{ "Add" }</button>
            </form>
            <p id="notice">{ &page.notice }</p>
            <ul id="todos">{ for rows }{ for waiting }</ul>
        </main>
    }
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
