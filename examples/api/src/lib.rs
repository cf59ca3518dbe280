//! The todo example's API, shared by the server and every client (native, Leptos and Yew).

use serde::{Deserialize, Serialize};

/// A task on the shared board.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Todo {
    /// Assigned by the server.
    pub id: u64,
    /// What to do.
    pub title: String,
    /// Whether it is done.
    pub done: bool,
    /// Who created it or changed it last; set by the server.
    pub by: String,
}

/// Why a todo call failed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum TodoError {
    /// No todo has this ID.
    NotFound,
    /// The input was refused; the reason says why.
    Invalid(String),
}

impl std::fmt::Display for TodoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TodoError::NotFound => f.write_str("no such todo"),
            TodoError::Invalid(reason) => write!(f, "invalid todo: {reason}"),
        }
    }
}

/// A call the server could not run now is answered `Unavailable` and sent again; the handler's
/// error is never seen by a client. This lets handlers write `ctx.retry_later(..).into()`.
impl From<crudp::RetryLater> for TodoError {
    fn from(retry: crudp::RetryLater) -> Self {
        TodoError::Invalid(retry.to_string())
    }
}

// ANCHOR: module
/// The todo board: create, read, update and delete todos.
#[crudp::module]
pub trait Todos {
    /// Adds a todo with this title.
    async fn create(&self, ctx: &crudp::Context, title: String) -> Result<Todo, TodoError>;
    /// The todo with this ID.
    async fn read(&self, ctx: &crudp::Context, id: u64) -> Result<Todo, TodoError>;
    /// Replaces a todo's title and done flag.
    async fn update(&self, ctx: &crudp::Context, todo: Todo) -> Result<Todo, TodoError>;
    /// Removes a todo.
    async fn delete(&self, ctx: &crudp::Context, id: u64) -> Result<(), TodoError>;
}
// ANCHOR_END: module

/// The whole board at once, for a page that opens.
#[crudp::module]
pub trait Board {
    /// Every todo, oldest first.
    async fn read(&self, ctx: &crudp::Context) -> Result<Vec<Todo>, TodoError>;
}

/// A file attached to a todo: uploaded first, then attached, so everyone sees it appear.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Attachment {
    /// The todo it belongs to.
    pub todo: u64,
    /// The uploaded file.
    pub file: crudp::files::FileRef,
    /// Who attached it.
    pub by: String,
}

impl Attachment {
    /// Where the server lets anyone signed in download it.
    pub fn href(&self) -> String {
        format!("/files/{}", self.file.id)
    }
}

/// Files attached to todos.
#[crudp::module]
pub trait Attachments {
    /// Attaches the uploaded `file` to the todo `todo`.
    async fn create(
        &self,
        ctx: &crudp::Context,
        todo: u64,
        file: crudp::files::FileRef,
    ) -> Result<Attachment, TodoError>;
    /// Every attachment, oldest first.
    async fn read(&self, ctx: &crudp::Context) -> Result<Vec<Attachment>, TodoError>;
}

/// Adds or replaces `todo` in a list kept in ID order: how the front ends apply a created or
/// an updated todo, whether this page's own or another's.
pub fn upsert(list: &mut Vec<Todo>, todo: Todo) {
    match list.binary_search_by_key(&todo.id, |t| t.id) {
        Ok(i) => list[i] = todo,
        Err(i) => list.insert(i, todo),
    }
}

/// Adds `attachment` to `list` once, whether heard of by result or by broadcast.
pub fn attach(list: &mut Vec<Attachment>, attachment: Attachment) {
    if !list.iter().any(|a| a.file.id == attachment.file.id) {
        list.push(attachment);
    }
}

/// The lines of the front ends' activity feed: who changed what.
pub mod activity {
    use crate::Todo;

    /// "ann added “milk”".
    pub fn created(todo: &Todo) -> String {
        format!("{} added “{}”", todo.by, todo.title)
    }

    /// "ann finished “milk”", or reopened it, or changed it.
    pub fn updated(todo: &Todo) -> String {
        let what = if todo.done { "finished" } else { "reopened" };
        format!("{} {what} “{}”", todo.by, todo.title)
    }

    /// "todo 3 was deleted".
    pub fn deleted(id: u64) -> String {
        format!("todo {id} was deleted")
    }
}

/// What the front ends show of the client: `online`, `reconnecting` or `offline`, as a word and
/// a CSS class.
pub fn connection_word(status: crudp::Status) -> &'static str {
    match status.connection {
        crudp::Connection::Online => "online",
        crudp::Connection::Reconnecting => "reconnecting",
        crudp::Connection::Offline => "offline",
    }
}

/// An upload's progress as a percentage, for a progress bar's label.
pub fn percent(progress: crudp::UploadProgress) -> u64 {
    (progress.sent * 100)
        .checked_div(progress.total)
        .unwrap_or(100)
}

/// The front ends' status line: "offline, 2 queued, 0 in flight".
pub fn status_line(status: crudp::Status) -> String {
    format!(
        "{}, {} queued, {} in flight",
        connection_word(status),
        status.queued,
        status.in_flight
    )
}

/// Who the sign-in cookie names, given the page's `document.cookie`.
pub fn signed_in(cookies: &str) -> String {
    match cookies
        .split(';')
        .find_map(|c| c.trim().strip_prefix("crudp_user=")?.split_once(':'))
    {
        Some((name, role)) => format!("signed in as {name} ({role})"),
        None => "not signed in".to_owned(),
    }
}
