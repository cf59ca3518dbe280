//! Large files: [`Client::upload`](crate::Client::upload) reads a file once for its SHA-256,
//! then sends it in pieces to `PUT {mount}/upload/{id}`, going on where the server stopped
//! after a dropped connection, an offline period or a server restart.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError, Weak},
    task::{Context, Poll},
};

use crudp_runtime::{
    TransportError,
    files::{FileId, FileRef, UploadStatus},
};
use futures_channel::oneshot;
use sha2::{Digest, Sha256};

use crate::{
    backoff::Backoff,
    rt,
    shared::Shared,
    transport::{MaybeSendSync, Method, TransportFuture},
};

/// How many bytes one `PUT` carries: the server writes each as one part.
#[cfg(not(target_arch = "wasm32"))]
const PIECE: u64 = 8 << 20;
/// How many bytes one `PUT` carries; in the browser, smaller, so progress moves often.
#[cfg(target_arch = "wasm32")]
const PIECE: u64 = 1 << 20;

/// Reads the bytes of an upload, a stretch at a time.
trait Source: MaybeSendSync {
    /// Up to `len` bytes from `offset` on.
    fn read(&self, offset: u64, len: u64) -> TransportFuture<'_, Result<Vec<u8>, String>>;
}

/// What an upload sends: a name, a size and a way to read the bytes.
pub struct UploadSource {
    name: String,
    size: u64,
    source: Box<dyn Source>,
}

impl std::fmt::Debug for UploadSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadSource")
            .field("name", &self.name)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

struct InMemory(Arc<[u8]>);

impl Source for InMemory {
    fn read(&self, offset: u64, len: u64) -> TransportFuture<'_, Result<Vec<u8>, String>> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.0.len());
        let end = start
            .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
            .min(self.0.len());
        let bytes = self.0[start..end].to_vec();
        Box::pin(async move { Ok(bytes) })
    }
}

impl UploadSource {
    /// Bytes in memory, under the name `name`.
    pub fn bytes(name: impl Into<String>, bytes: impl Into<Arc<[u8]>>) -> Self {
        let bytes = bytes.into();
        Self {
            name: name.into(),
            size: bytes.len() as u64,
            source: Box::new(InMemory(bytes)),
        }
    }

    /// The file at `path`, read a piece at a time (it is never held whole in memory), under
    /// its file name.
    ///
    /// # Errors
    ///
    /// If the file's metadata cannot be read.
    #[cfg(all(feature = "native", not(target_arch = "wasm32")))]
    pub fn path(path: impl Into<std::path::PathBuf>) -> std::io::Result<Self> {
        let path = path.into();
        let size = std::fs::metadata(&path)?.len();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            name,
            size,
            source: Box::new(OnDisk(path)),
        })
    }

    /// A browser `Blob`, under the name `name`.
    #[cfg(target_arch = "wasm32")]
    pub fn blob(name: impl Into<String>, blob: web_sys::Blob) -> Self {
        Self {
            name: name.into(),
            size: blob.size() as u64,
            source: Box::new(InBrowser(blob)),
        }
    }

    /// The file's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file's length in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// A file the user picked in the browser, under its own name.
#[cfg(target_arch = "wasm32")]
impl From<web_sys::File> for UploadSource {
    fn from(file: web_sys::File) -> Self {
        let name = file.name();
        Self::blob(name, file.into())
    }
}

#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
struct OnDisk(std::path::PathBuf);

#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
impl Source for OnDisk {
    fn read(&self, offset: u64, len: u64) -> TransportFuture<'_, Result<Vec<u8>, String>> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        Box::pin(async move {
            let fail = |e: std::io::Error| format!("{}: {e}", self.0.display());
            let mut file = tokio::fs::File::open(&self.0).await.map_err(fail)?;
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(fail)?;
            let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            file.take(len).read_to_end(&mut bytes).await.map_err(fail)?;
            Ok(bytes)
        })
    }
}

#[cfg(target_arch = "wasm32")]
struct InBrowser(web_sys::Blob);

#[cfg(target_arch = "wasm32")]
impl Source for InBrowser {
    fn read(&self, offset: u64, len: u64) -> TransportFuture<'_, Result<Vec<u8>, String>> {
        Box::pin(async move {
            let fail = |e: wasm_bindgen::JsValue| format!("the file could not be read: {e:?}");
            let end = offset.saturating_add(len) as f64;
            let slice = self
                .0
                .slice_with_f64_and_f64(offset as f64, end)
                .map_err(fail)?;
            let buffer = wasm_bindgen_futures::JsFuture::from(slice.array_buffer())
                .await
                .map_err(fail)?;
            Ok(js_sys::Uint8Array::new(&buffer).to_vec())
        })
    }
}

/// How far an upload got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UploadProgress {
    /// The bytes the server has kept.
    pub sent: u64,
    /// The file's length.
    pub total: u64,
}

/// Why an upload failed for good. While the server is out of reach an upload waits and goes
/// on; it fails only when the server refuses it, the file cannot be read, or the client goes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// The file could not be read, or changed while it was sent.
    #[error("the file could not be read: {0}")]
    Source(String),
    /// The server refused the upload (too large, over quota, another user's, a digest that
    /// does not match, …); its answer says why.
    #[error("the server refused the upload: {0}")]
    Refused(TransportError),
    /// The client was dropped or signed out before the upload was done.
    #[error("the client was dropped or signed out before the upload was done")]
    Closed,
}

/// A progress callback: `Send` natively, where the upload runs on a thread pool.
#[cfg(not(target_arch = "wasm32"))]
type ProgressFn = dyn Fn(UploadProgress) + Send + Sync;
/// A progress callback.
#[cfg(target_arch = "wasm32")]
type ProgressFn = dyn Fn(UploadProgress);

/// What the upload task and its handle share.
#[derive(Default)]
struct Progress {
    now: Mutex<UploadProgress>,
    callbacks: Mutex<Vec<Box<ProgressFn>>>,
}

impl Progress {
    fn report(&self, progress: UploadProgress) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = progress;
        for callback in self
            .callbacks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            callback(progress);
        }
    }
}

/// An upload under way: await it for the [`FileRef`] to pass in a call, and watch its
/// progress with [`on_progress`](Self::on_progress) or [`progress`](Self::progress).
///
/// It goes on if the handle is dropped (as calls do), until the file is uploaded or the
/// client goes.
#[must_use = "await the upload for the file's reference"]
pub struct Upload {
    progress: Arc<Progress>,
    done: oneshot::Receiver<Result<FileRef, UploadError>>,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("progress", &self.progress())
            .finish_non_exhaustive()
    }
}

impl Upload {
    /// How far it got.
    pub fn progress(&self) -> UploadProgress {
        *self
            .progress
            .now
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls `callback` each time the server has kept more of the file, e.g. to move a
    /// progress bar.
    pub fn on_progress(self, callback: impl Fn(UploadProgress) + MaybeSendSync + 'static) -> Self {
        self.progress
            .callbacks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(callback));
        self
    }
}

impl Future for Upload {
    type Output = Result<FileRef, UploadError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.done)
            .poll(cx)
            .map(|done| done.unwrap_or(Err(UploadError::Closed)))
    }
}

/// Starts uploading `source` for the client `shared`.
// On wasm32 nothing is `Send`; the same `Arc`s are shared across threads natively.
#[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
pub(crate) fn start(shared: &Arc<Shared>, source: UploadSource) -> Upload {
    let progress = Arc::new(Progress {
        now: Mutex::new(UploadProgress {
            sent: 0,
            total: source.size,
        }),
        callbacks: Mutex::default(),
    });
    let (done, receiver) = oneshot::channel();
    let task = {
        let (client, progress) = (Arc::downgrade(shared), Arc::clone(&progress));
        async move {
            let _ = done.send(run(client, source, &progress).await);
        }
    };
    if let Err(e) = rt::spawn(task) {
        tracing::error!("an upload could not start: {e}");
    }
    Upload {
        progress,
        done: receiver,
    }
}

async fn run(
    client: Weak<Shared>,
    source: UploadSource,
    progress: &Progress,
) -> Result<FileRef, UploadError> {
    let UploadSource { name, size, source } = source;
    let mut hasher = Sha256::new();
    let mut at = 0;
    while at < size {
        let piece = source.read(at, PIECE).await.map_err(UploadError::Source)?;
        if piece.is_empty() {
            return Err(UploadError::Source(format!(
                "the file ended at byte {at} of {size}"
            )));
        }
        hasher.update(&piece);
        at += piece.len() as u64;
        rt::yield_now().await;
    }
    let id = FileId(u128::from(rt::random_u64()) << 64 | u128::from(rt::random_u64()));
    let file = FileRef::uploaded(id, name, size, hasher.finalize().into());
    let endpoint = {
        let shared = client.upgrade().ok_or(UploadError::Closed)?;
        shared.url(&format!("upload/{id}"))
    };
    let query = format!("?size={size}&sha256={}&offset=", file.sha256_hex());
    let mut backoff = Backoff::new(rt::random_u64());
    let mut offset = 0;
    loop {
        let piece = source
            .read(offset, PIECE)
            .await
            .map_err(UploadError::Source)?;
        if offset + (piece.len() as u64) > size || (piece.is_empty() && offset < size) {
            return Err(UploadError::Source(
                "the file changed while it was sent".into(),
            ));
        }
        let sent = {
            let shared = live(&client)?;
            let url = format!("{endpoint}{query}{offset}");
            shared
                .transport
                .request(Method::Put, &url, &shared.headers().pairs(), piece)
                .await
        };
        let failed = match sent.and_then(decode) {
            Ok(status) if status.complete => {
                progress.report(UploadProgress {
                    sent: size,
                    total: size,
                });
                return Ok(file);
            }
            Ok(status) => {
                backoff.reset();
                offset = status.received;
                progress.report(UploadProgress {
                    sent: offset,
                    total: size,
                });
                continue;
            }
            Err(e) => e,
        };
        let tried = offset;
        let conflict = match failed.status() {
            // The server is elsewhere than this client thought, or another request still
            // writes the upload (an earlier one of this client's, not yet timed out): ask it.
            Some(409) => true,
            _ if failed.is_retryable() => {
                rt::sleep(backoff.next()).await;
                false
            }
            _ => return Err(UploadError::Refused(failed)),
        };
        offset = loop {
            let asked = {
                let shared = live(&client)?;
                shared
                    .transport
                    .request(
                        Method::Get,
                        &endpoint,
                        &shared.headers().pairs(),
                        Vec::new(),
                    )
                    .await
            };
            match asked.and_then(decode) {
                Ok(status) => break status.received,
                // Expired or discarded: from the start.
                Err(e) if e.status() == Some(404) => break 0,
                Err(e) if e.is_retryable() => rt::sleep(backoff.next()).await,
                Err(e) => return Err(UploadError::Refused(e)),
            }
        };
        if conflict && offset == tried {
            // Where this client was: the conflict is another writer, which the server lets go
            // within its body timeout. Waiting, not asking again at once.
            rt::sleep(backoff.next()).await;
        }
    }
}

/// The client, unless it was dropped or stopped.
fn live(client: &Weak<Shared>) -> Result<Arc<Shared>, UploadError> {
    client
        .upgrade()
        .filter(|shared| shared.stopped().is_none())
        .ok_or(UploadError::Closed)
}

fn decode(body: Vec<u8>) -> Result<UploadStatus, TransportError> {
    postcard::from_bytes(&body)
        .map_err(|e| TransportError::Malformed(format!("the upload status does not decode: {e}")))
}
