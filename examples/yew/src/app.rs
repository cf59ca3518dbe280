//! The page, on `crudp-yew`: a board kept live by everyone's changes, todos shown at once
//! while they are sent, a status pill, who changed what as it happens, and files attached with
//! a progress bar.

use std::rc::Rc;

use crudp::{Client, UploadProgress};
use crudp_yew::{use_call, use_client, use_listener, use_live_read, use_status};
use example_api::{
    Attachment, AttachmentsClient, BoardClient, Todo, TodosClient, activity, attach,
    connection_word, percent, signed_in, status_line, upsert,
};
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

pub(crate) fn start() {
    console_error_panic_hook::set_once();
    yew::Renderer::<App>::new().render();
}

#[function_component(App)]
fn app() -> Html {
    let client = use_memo((), |_| Client::new("/crudp"));
    html! {
        <ContextProvider<Client> context={(*client).clone()}>
            <Page />
        </ContextProvider<Client>>
    }
}

/// The uploads under way, by todo: each report changes the latest list, not the one its
/// upload saw when it began (two uploads at once would undo each other's reports).
#[derive(Default, PartialEq)]
struct UploadList(Vec<(u64, UploadProgress)>);

impl Reducible for UploadList {
    /// The todo, and its upload's progress (`None`: done).
    type Action = (u64, Option<UploadProgress>);

    fn reduce(self: Rc<Self>, (id, progress): Self::Action) -> Rc<Self> {
        let mut list = self.0.clone();
        list.retain(|(todo, _)| *todo != id);
        list.extend(progress.map(|p| (id, p)));
        Rc::new(Self(list))
    }
}

type Uploads = UseReducerHandle<UploadList>;

#[function_component(Page)]
fn page() -> Html {
    let client = use_client();
    let todos = TodosClient::new(&client);
    // "online, 2 queued, 0 in flight", and the pill's colour.
    let status = use_status();
    let input = use_node_ref();

    // Who changed what, newest first, and how many changes this page heard (its own too).
    let feed = use_reducer(Feed::default);
    {
        let (created, updated, deleted) = (feed.dispatcher(), feed.dispatcher(), feed.dispatcher());
        let todos = todos.clone();
        use_listener(move |_| {
            todos.on_create(move |t| created.dispatch(Line::Heard(activity::created(&t))))
        });
        let todos2 = TodosClient::new(&client);
        use_listener(move |_| {
            todos2.on_update(move |t| updated.dispatch(Line::Heard(activity::updated(&t))))
        });
        let todos3 = TodosClient::new(&client);
        use_listener(move |_| {
            todos3.on_delete(move |id| deleted.dispatch(Line::Deleted(activity::deleted(id))))
        });
    }

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

    let attached = {
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
    let uploads: Uploads = use_reducer(UploadList::default);

    let add = {
        let (create, input) = (create.clone(), input.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let Some(field) = input.cast::<web_sys::HtmlInputElement>() else {
                return;
            };
            let title = field.value().trim().to_owned();
            if !title.is_empty() {
                field.set_value("");
                create.dispatch(title);
            }
        })
    };
    let notice = match create.value() {
        Some(Err(e)) => e.to_string(),
        _ => String::new(),
    };
    let rows = board
        .value()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|todo| {
            let files: Vec<Attachment> = attached
                .value()
                .into_iter()
                .flatten()
                .filter(|a| a.todo == todo.id)
                .cloned()
                .collect();
            let key = todo.id;
            html! { <Row {key} {todo} {files} uploads={uploads.clone()} /> }
        });
    let waiting = create.pending().into_iter().enumerate().map(|(i, title)| {
        html! { <li key={format!("pending-{i}")} class="pending">{ title }{ " (pending)" }</li> }
    });
    let sign_out = move |_| client.sign_out();
    html! {
        <main>
            <h1>{ "Todo board " }<small>{ "(Yew)" }</small></h1>
            <p>
                { signed_in(&cookies()) }{ " · " }<a href="/">{ "switch user" }</a>{ " · " }
                // Nothing of this user's stays in the browser for the next one.
                <a id="signout" href="/signout" onclick={sign_out}>{ "sign out" }</a>
                { " " }
                <span id="status" class={classes!("pill", connection_word(status))}>{ status_line(status) }</span>
            </p>
            <form onsubmit={add}>
                <input id="new-title" ref={input} placeholder="What needs doing?" />
                <button id="add" type="submit">{ "Add" }</button>
            </form>
            <p id="notice">{ notice }</p>
            <ul id="todos">{ for rows }{ for waiting }</ul>
            <p id="heard">{ feed.heard }{ " changes heard" }</p>
            <ul id="activity">{ for feed.lines.iter().take(8).map(|line| html! { <li>{ line }</li> }) }</ul>
        </main>
    }
}

/// The activity feed.
#[derive(Default, PartialEq)]
struct Feed {
    lines: Vec<String>,
    /// Creates and updates heard, this page's own included.
    heard: usize,
}

enum Line {
    Heard(String),
    Deleted(String),
}

impl Reducible for Feed {
    type Action = Line;

    fn reduce(self: Rc<Self>, line: Line) -> Rc<Self> {
        let (line, heard) = match line {
            Line::Heard(line) => (line, self.heard + 1),
            Line::Deleted(line) => (line, self.heard),
        };
        let lines = std::iter::once(line).chain(self.lines.iter().take(7).cloned());
        Rc::new(Feed {
            lines: lines.collect(),
            heard,
        })
    }
}

#[derive(Properties, PartialEq)]
struct RowProps {
    todo: Todo,
    files: Vec<Attachment>,
    uploads: Uploads,
}

#[function_component(Row)]
fn row(
    RowProps {
        todo,
        files,
        uploads,
    }: &RowProps,
) -> Html {
    let client = use_client();
    let id = todo.id;
    // The row is marked while its change is on its way.
    let update = {
        let todos = TodosClient::new(&client);
        use_call(move |todo: Todo| todos.update(todo))
    };
    let delete = {
        let todos = TodosClient::new(&client);
        use_call(move |id: u64| todos.delete(id))
    };
    let toggle = {
        let (update, toggled) = (
            update.clone(),
            Todo {
                done: !todo.done,
                ..todo.clone()
            },
        );
        Callback::from(move |_: Event| update.dispatch(toggled.clone()))
    };
    let remove = {
        let delete = delete.clone();
        Callback::from(move |_: MouseEvent| delete.dispatch(id))
    };
    let upload = {
        let uploads = uploads.clone();
        Callback::from(move |event: Event| {
            let Some(file) = picked(&event) else {
                return;
            };
            let (client, uploads) = (client.clone(), uploads.clone());
            spawn_local(async move {
                let show = {
                    let uploads = uploads.clone();
                    move |p: Option<UploadProgress>| uploads.dispatch((id, p))
                };
                show(Some(UploadProgress::default()));
                // Sent in pieces, going on after an outage; then attached for everyone.
                let progress = show.clone();
                let uploaded = client
                    .upload(file)
                    .on_progress(move |p| progress(Some(p)))
                    .await;
                show(None);
                if let Ok(file) = uploaded {
                    let _ = AttachmentsClient::new(&client).create(id, file).await;
                }
            });
        })
    };
    let progress = uploads
        .0
        .iter()
        .find(|(todo, _)| *todo == id)
        .map(|(_, p)| {
            html! {
                <progress class="upload" max={p.total.to_string()} value={p.sent.to_string()}>
                    { percent(*p) }{ "%" }
                </progress>
            }
        });
    let files = files.iter().map(|a| {
        html! { <><a class="attachment" href={a.href()} title={a.by.clone()}>{ &a.file.name }</a>{ " " }</> }
    });
    let pending = (update.is_pending() || delete.is_pending()).then_some("pending");
    html! {
        <li class={classes!(todo.done.then_some("done"), pending)}>
            <input type="checkbox" checked={todo.done} onchange={toggle} />
            <span title={format!("by {}", todo.by)}>{ &todo.title }</span>
            { " " }
            <button onclick={remove}>{ "✕" }</button>
            { " " }
            <label class="attach">{ "attach a file" }<input type="file" class="attach-file" onchange={upload} /></label>
            { for progress }
            { " " }
            { for files }
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

/// The file the user picked in the input that fired `event`, as an upload (the input is
/// cleared for the next one). The page runs in the browser only; natively (where it is only
/// type-checked) there is no browser file to read.
fn picked(event: &Event) -> Option<crudp::UploadSource> {
    let input = event.target_dyn_into::<web_sys::HtmlInputElement>()?;
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
