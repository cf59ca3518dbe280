//! Where uploads live: an [`ObjectStore`] (the local file system by default), laid out as
//!
//! - `uploads/{id}/meta`: the owner, the quota account, the announced size and digest, and
//!   whether it is complete;
//! - `uploads/{id}/p{offset:020}`: the bytes from `offset` on, one object per stretch written.
//!
//! Parts are whole objects, written at once, so a part is never half there: after a dropped
//! connection or a restart the upload goes on from the sum of its parts. An index in memory
//! (rebuilt from the store at first use) holds each upload's owner, progress, writer and
//! running digest, and each user's bytes for the quota.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, path::Path};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{FileId, FileReader, FileRef, UploadStatus, hex};

/// Default for [`CrudpBuilder::max_file_bytes`](crate::server::CrudpBuilder::max_file_bytes):
/// 4 GiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 4 << 30;
/// Default for [`CrudpBuilder::upload_quota`](crate::server::CrudpBuilder::upload_quota):
/// 16 GiB of files per user.
pub const DEFAULT_UPLOAD_QUOTA: u64 = 16 << 30;
/// Default for [`CrudpBuilder::upload_expiry`](crate::server::CrudpBuilder::upload_expiry):
/// an upload left incomplete for 24 hours is removed.
pub const DEFAULT_UPLOAD_EXPIRY: Duration = Duration::from_secs(24 * 60 * 60);

/// Default for [`CrudpBuilder::uploads_at_once`](crate::server::CrudpBuilder::uploads_at_once):
/// 32 uploads written at once, of all users.
pub const DEFAULT_UPLOADS_AT_ONCE: usize = 32;
/// Default for
/// [`CrudpBuilder::uploads_per_user`](crate::server::CrudpBuilder::uploads_per_user): 4
/// uploads of one user written at once.
pub const DEFAULT_UPLOADS_PER_USER: usize = 4;
/// Default for [`CrudpBuilder::max_files_per_user`](crate::server::CrudpBuilder::max_files_per_user):
/// 100,000 uploads kept per user.
pub const DEFAULT_MAX_FILES_PER_USER: usize = 100_000;

/// The most bytes an upload holds in memory before it writes them out as a part. The next
/// part is received while one is written, so an upload holds up to twice as much: with
/// [`DEFAULT_UPLOADS_AT_ONCE`], at most 256 MiB held in all.
const PART_BYTES: usize = 4 << 20;

/// Why a file could not be uploaded or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The server has no file store: see
    /// [`CrudpBuilder::files_dir`](crate::server::CrudpBuilder::files_dir).
    #[error("this server keeps no files: its builder names no `files_dir` or `file_store`")]
    NotConfigured,
    /// No such upload: never started, expired, deleted, or discarded.
    #[error("there is no upload {0}: it was never started, or it expired or was deleted")]
    NotFound(FileId),
    /// The upload is another user's.
    #[error("upload {0} belongs to another user; each upload makes its own random ID")]
    Forbidden(FileId),
    /// Not all of the file arrived yet. From [`Context::open`](crate::Context::open), the
    /// call is answered `Unavailable` and runs again later.
    #[error("upload {0} is not complete yet")]
    Pending(FileId),
    /// The file is larger than the server takes.
    #[error("a file of {size} bytes is larger than the {limit} bytes this server takes")]
    TooLarge {
        /// The announced size.
        size: u64,
        /// The server's limit.
        limit: u64,
    },
    /// The user's files would take more than their quota.
    #[error(
        "a file of {size} bytes does not fit the upload quota: {used} of {quota} bytes are taken"
    )]
    Quota {
        /// The announced size.
        size: u64,
        /// The bytes the user's files take.
        used: u64,
        /// The user's quota.
        quota: u64,
    },
    /// The user already keeps the most uploads allowed (complete or not).
    #[error("{count} uploads are kept for this user, the most allowed; remove some first")]
    TooManyFiles {
        /// The uploads the user keeps.
        count: usize,
    },
    /// The request does not fit the upload's state; the message says how, and `GET` tells
    /// where to go on.
    #[error("{0}")]
    Conflict(String),
    /// The body went on past the announced size; what came before was kept.
    #[error("the body is longer than the {size} bytes announced; the upload keeps the first ones")]
    TooLong {
        /// The announced size.
        size: u64,
    },
    /// All bytes arrived but their digest is not the one announced: the upload was
    /// discarded; start it again.
    #[error("the bytes of upload {0} do not match the SHA-256 announced; the upload was discarded")]
    Checksum(FileId),
    /// The reference names a size or digest other than its upload's.
    #[error("the reference to upload {0} names another size or digest than the file has")]
    Mismatch(FileId),
    /// Too many uploads are being written now, of all users or of this one; trying again
    /// later may work.
    #[error("{0}")]
    Busy(String),
    /// The store failed; trying again may work.
    #[error("the file store failed: {0}")]
    Store(String),
}

impl From<object_store::Error> for FileError {
    fn from(error: object_store::Error) -> Self {
        FileError::Store(error.to_string())
    }
}

/// For handlers whose error type is a `String`.
impl From<FileError> for String {
    fn from(error: FileError) -> Self {
        error.to_string()
    }
}

/// The bytes from 0 on, without a gap, that `parts` (offset, length) hold of a file of
/// `size` bytes.
fn received(parts: &mut [(u64, u64)], size: u64) -> u64 {
    parts.sort_unstable();
    parts
        .iter()
        .try_fold(0u64, |at, &(offset, len)| {
            (offset == at).then_some(at + len)
        })
        .unwrap_or(0)
        .min(size)
}

/// The limits of a file store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileLimits {
    pub(crate) max_file_bytes: u64,
    pub(crate) quota: u64,
    pub(crate) expiry: Duration,
    pub(crate) at_once: usize,
    pub(crate) per_user: usize,
    /// The most uploads one account keeps.
    pub(crate) files: usize,
}

/// What `uploads/{id}/meta` holds (postcard).
#[derive(Serialize, Deserialize)]
struct Meta {
    owner: String,
    /// Whose quota the file counts against: the owner's, or for anonymous visitors their
    /// address's.
    account: String,
    size: u64,
    sha256: [u8; 32],
    complete: bool,
}

/// One upload, in the index.
struct Entry {
    owner: Arc<str>,
    account: Arc<str>,
    size: u64,
    sha256: [u8; 32],
    /// The bytes kept in parts.
    received: u64,
    complete: bool,
    /// When it last received bytes (or was found at start).
    touched: SystemTime,
    /// A request is writing it.
    writing: bool,
    /// The digest of the `received` bytes, while it is known; after a restart it is not, and
    /// the parts are read again to check the whole.
    hasher: Option<Sha256>,
}

impl Entry {
    /// An upload found in the store, with `received` bytes in its parts.
    fn found(index: &Index, meta: Meta, received: u64, touched: Option<SystemTime>) -> Self {
        Self {
            owner: meta.owner.into(),
            account: index.account(&meta.account),
            size: meta.size,
            sha256: meta.sha256,
            received,
            complete: meta.complete,
            touched: touched.unwrap_or_else(SystemTime::now),
            writing: false,
            hasher: None,
        }
    }

    fn status(&self) -> UploadStatus {
        UploadStatus {
            received: self.received,
            size: self.size,
            complete: self.complete,
        }
    }
}

#[derive(Default)]
struct Index {
    uploads: HashMap<FileId, Entry>,
    /// The bytes each account's uploads take (announced sizes), and how many they are.
    used: HashMap<Arc<str>, (u64, usize)>,
    /// The uploads being written, in all and by account.
    writers: usize,
    writers_of: HashMap<Arc<str>, usize>,
}

impl Index {
    /// `account` as the key the index holds, so that its uploads share one allocation.
    fn account(&self, account: &str) -> Arc<str> {
        self.used
            .get_key_value(account)
            .map_or_else(|| account.into(), |(account, _)| Arc::clone(account))
    }

    /// Records an upload, counting its size against its account.
    fn insert(&mut self, id: FileId, entry: Entry) {
        let used = self.used.entry(Arc::clone(&entry.account)).or_default();
        used.0 += entry.size;
        used.1 += 1;
        self.uploads.insert(id, entry);
    }

    /// Counts a writer for `account`, unless too many are writing.
    fn start_writing(&mut self, account: &Arc<str>, limits: &FileLimits) -> Result<(), FileError> {
        if self.writers >= limits.at_once {
            return Err(FileError::Busy(format!(
                "{} uploads are being written now, the most this server takes at once; try \
                 again shortly",
                self.writers
            )));
        }
        let mine = self.writers_of.entry(Arc::clone(account)).or_default();
        if *mine >= limits.per_user {
            return Err(FileError::Busy(format!(
                "{mine} of this user's uploads are being written now, the most one user may \
                 write at once; send the others after them"
            )));
        }
        *mine += 1;
        self.writers += 1;
        Ok(())
    }

    fn stop_writing(&mut self, account: &Arc<str>) {
        self.writers = self.writers.saturating_sub(1);
        if let Some(mine) = self.writers_of.get_mut(account) {
            *mine -= 1;
            if *mine == 0 {
                self.writers_of.remove(account);
            }
        }
    }

    fn remove(&mut self, id: FileId) {
        if let Some(entry) = self.uploads.remove(&id)
            && let Some(used) = self.used.get_mut(&entry.account)
        {
            used.0 = used.0.saturating_sub(entry.size);
            used.1 = used.1.saturating_sub(1);
            if used.1 == 0 {
                self.used.remove(&entry.account);
            }
        }
    }
}

/// A server's uploaded files: on an [`ObjectStore`], with per-file and per-user limits, and
/// incomplete uploads removed once they expire. Made by the server builder; handlers reach
/// it through [`Context::open`](crate::Context::open), server code through
/// [`Crudp::files`](crate::server::Crudp::files).
#[derive(Clone)]
pub struct Files {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    limits: FileLimits,
    index: Mutex<Index>,
    loaded: tokio::sync::OnceCell<()>,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("store", &self.inner.store.to_string())
            .finish_non_exhaustive()
    }
}

fn meta_path(id: FileId) -> Path {
    Path::from(format!("uploads/{id}/meta"))
}

fn part_path(id: FileId, offset: u64) -> Path {
    Path::from(format!("uploads/{id}/p{offset:020}"))
}

fn upload_prefix(id: FileId) -> Path {
    Path::from(format!("uploads/{id}"))
}

impl Files {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, limits: FileLimits) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                limits,
                index: Mutex::default(),
                loaded: tokio::sync::OnceCell::new(),
            }),
        }
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.inner
            .index
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the store's uploads into the index, once, and starts removing expired ones.
    async fn ready(&self) -> Result<(), FileError> {
        self.inner
            .loaded
            .get_or_try_init(|| async {
                self.load().await?;
                tokio::spawn(sweep(Arc::downgrade(&self.inner)));
                Ok::<_, FileError>(())
            })
            .await
            .map(drop)
    }

    async fn load(&self) -> Result<(), FileError> {
        /// When an upload's objects were last written, and its parts: (offset, length).
        type Found = (Option<SystemTime>, Vec<(u64, u64)>);
        let mut found: HashMap<FileId, Found> = HashMap::new();
        let mut listing = self.inner.store.list(Some(&Path::from("uploads")));
        while let Some(object) = listing.next().await {
            let object = object?;
            let mut parts = object.location.parts();
            let (Some(_), Some(id), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let Ok(id) = id.as_ref().parse::<FileId>() else {
                continue;
            };
            let modified = SystemTime::UNIX_EPOCH
                + Duration::from_secs(u64::try_from(object.last_modified.timestamp()).unwrap_or(0));
            let slot = found.entry(id).or_default();
            slot.0 = slot.0.max(Some(modified));
            if let Some(offset) = name.as_ref().strip_prefix('p').and_then(|o| o.parse().ok()) {
                slot.1.push((offset, object.size));
            }
        }
        for (id, (touched, mut parts)) in found {
            let meta = match self.inner.store.get(&meta_path(id)).await {
                Ok(meta) => postcard::from_bytes::<Meta>(&meta.bytes().await?).ok(),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            let Some(meta) = meta else {
                // Parts without a record: what a crash left between the two. Of no use.
                self.delete_objects(id).await?;
                continue;
            };
            let received = received(&mut parts, meta.size);
            let mut index = self.index();
            let entry = Entry::found(&index, meta, received, touched);
            index.insert(id, entry);
        }
        Ok(())
    }

    /// Reads upload `id` from the store again, for what other servers sharing it did: its
    /// record and the bytes its parts hold. Keeps this server's writer and digest if nothing
    /// changed; forgets the upload if the store no longer has it.
    async fn refresh(&self, id: FileId) -> Result<(), FileError> {
        let meta = match self.inner.store.get(&meta_path(id)).await {
            Ok(meta) => postcard::from_bytes::<Meta>(&meta.bytes().await?).ok(),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let Some(meta) = meta else {
            let mut index = self.index();
            if index.uploads.get(&id).is_some_and(|e| !e.writing) {
                index.remove(id);
            }
            return Ok(());
        };
        let received = self.stored(id, meta.size).await?;
        let mut index = self.index();
        match index.uploads.get_mut(&id) {
            Some(entry) if entry.writing => {}
            Some(entry) => {
                if entry.received != received {
                    entry.hasher = None;
                    entry.received = received;
                    entry.touched = SystemTime::now();
                }
                entry.complete = meta.complete;
            }
            None => {
                let entry = Entry::found(&index, meta, received, None);
                index.insert(id, entry);
            }
        }
        Ok(())
    }

    /// Whether the index's record of `id` may be behind the store: missing, or incomplete.
    fn may_be_stale(&self, id: FileId) -> bool {
        self.index().uploads.get(&id).is_none_or(|e| !e.complete)
    }

    /// What the server has of upload `id`, for its owner `user`.
    pub(crate) async fn status(&self, id: FileId, user: &str) -> Result<UploadStatus, FileError> {
        self.ready().await?;
        if self.may_be_stale(id) {
            self.refresh(id).await?;
        }
        let index = self.index();
        let entry = index.uploads.get(&id).ok_or(FileError::NotFound(id))?;
        if &*entry.owner != user {
            return Err(FileError::Forbidden(id));
        }
        Ok(entry.status())
    }

    /// Starts (or goes on with) writing upload `id` of `user` at `offset`, the file having
    /// `size` bytes with digest `sha256`; a new upload counts against the quota of `account`.
    /// A complete upload is answered by its status.
    pub(crate) async fn begin(
        &self,
        id: FileId,
        user: &str,
        account: &str,
        size: u64,
        sha256: [u8; 32],
        offset: u64,
    ) -> Result<Result<Writer, UploadStatus>, FileError> {
        self.ready().await?;
        // Another server sharing the store may have started or gone on with it.
        let behind = self
            .index()
            .uploads
            .get(&id)
            .is_none_or(|e| !e.writing && !e.complete && e.received != offset);
        if behind {
            self.refresh(id).await?;
        }
        let limits = self.inner.limits;
        let (is_new, writing_for) = {
            let mut index = self.index();
            match index.uploads.get_mut(&id) {
                Some(entry) => {
                    if &*entry.owner != user {
                        return Err(FileError::Forbidden(id));
                    }
                    if entry.size != size || entry.sha256 != sha256 {
                        return Err(FileError::Conflict(format!(
                            "upload {id} was started for {} bytes with SHA-256 {}; a file ID \
                             names one file",
                            entry.size,
                            hex(&entry.sha256)
                        )));
                    }
                    if entry.complete {
                        return Ok(Err(entry.status()));
                    }
                    if entry.writing {
                        return Err(FileError::Conflict(format!(
                            "another request is writing upload {id}; one writer at a time"
                        )));
                    }
                    if offset != entry.received {
                        return Err(FileError::Conflict(format!(
                            "upload {id} goes on at byte {}, not {offset}; ask `GET` where to \
                             go on",
                            entry.received
                        )));
                    }
                    let account = Arc::clone(&entry.account);
                    index.start_writing(&account, &limits)?;
                    if let Some(entry) = index.uploads.get_mut(&id) {
                        entry.writing = true;
                    }
                    (false, account)
                }
                None => {
                    if offset != 0 {
                        return Err(FileError::Conflict(format!(
                            "upload {id} is not known here (never started, or expired): it \
                             starts again at byte 0, not {offset}"
                        )));
                    }
                    if size > limits.max_file_bytes {
                        return Err(FileError::TooLarge {
                            size,
                            limit: limits.max_file_bytes,
                        });
                    }
                    let (used, count) = index.used.get(account).copied().unwrap_or_default();
                    if count >= limits.files {
                        return Err(FileError::TooManyFiles { count });
                    }
                    if used.saturating_add(size) > limits.quota {
                        return Err(FileError::Quota {
                            size,
                            used,
                            quota: limits.quota,
                        });
                    }
                    let account = index.account(account);
                    index.start_writing(&account, &limits)?;
                    index.insert(
                        id,
                        Entry {
                            owner: user.into(),
                            account: Arc::clone(&account),
                            size,
                            sha256,
                            received: 0,
                            complete: false,
                            touched: SystemTime::now(),
                            writing: true,
                            hasher: Some(Sha256::new()),
                        },
                    );
                    (true, account)
                }
            }
        };
        let writer = Writer {
            files: self.clone(),
            account: writing_for,
            id,
            size,
            sha256,
            received: offset,
            hasher: None,
            writing: None,
            buffer: Vec::new(),
            buffered: 0,
            exclusive: false,
        };
        if is_new {
            let meta = Meta {
                owner: user.to_owned(),
                account: account.to_owned(),
                size,
                sha256,
                complete: false,
            };
            let meta = postcard::to_stdvec(&meta).expect("a record always encodes");
            if let Err(e) = self.inner.store.put(&meta_path(id), meta.into()).await {
                drop(writer);
                self.index().remove(id);
                return Err(e.into());
            }
        }
        let mut writer = writer;
        writer.hasher = self
            .index()
            .uploads
            .get_mut(&id)
            .and_then(|e| e.hasher.take());
        Ok(Ok(writer))
    }

    /// Opens a complete upload, whoever's it is: for server code that checked the reader may
    /// see it (handlers use [`Context::open`](crate::Context::open), which checks the owner).
    /// The reference's size and digest must be the file's.
    pub async fn open(&self, file: &FileRef) -> Result<FileReader, FileError> {
        if let Some(bytes) = super::inline_checked(file) {
            return bytes.map(FileReader::inline);
        }
        self.ready().await?;
        if self.may_be_stale(file.id) {
            self.refresh(file.id).await?;
        }
        {
            let index = self.index();
            let entry = index
                .uploads
                .get(&file.id)
                .ok_or(FileError::NotFound(file.id))?;
            if entry.size != file.size || entry.sha256 != file.sha256 {
                return Err(FileError::Mismatch(file.id));
            }
            if !entry.complete {
                return Err(FileError::Pending(file.id));
            }
        }
        let parts = self.parts(file.id).await?;
        Ok(FileReader::parts(
            Arc::clone(&self.inner.store),
            parts,
            file.size,
        ))
    }

    /// The owner of upload `id`, if it exists.
    pub(crate) async fn owner(&self, id: FileId) -> Result<Option<Arc<str>>, FileError> {
        self.ready().await?;
        let known = self.index().uploads.contains_key(&id);
        if !known {
            self.refresh(id).await?;
        }
        let owner = self.index().uploads.get(&id).map(|e| Arc::clone(&e.owner));
        Ok(owner)
    }

    /// Removes a file and gives its bytes back to its owner's quota: for server code, once
    /// no record refers to it. An upload a request is writing is not removed (`Conflict`):
    /// its writer would go on writing parts that no record counts.
    pub async fn delete(&self, id: FileId) -> Result<(), FileError> {
        self.ready().await?;
        if self.index().uploads.get(&id).is_some_and(|e| e.writing) {
            return Err(FileError::Conflict(format!(
                "upload {id} is being written; remove it once that request ends"
            )));
        }
        self.remove(id).await
    }

    async fn remove(&self, id: FileId) -> Result<(), FileError> {
        self.index().remove(id);
        self.delete_objects(id).await
    }

    /// Removes upload `id` for `user`, its owner.
    pub(crate) async fn cancel(&self, id: FileId, user: &str) -> Result<(), FileError> {
        self.status(id, user).await?;
        self.delete(id).await
    }

    async fn delete_objects(&self, id: FileId) -> Result<(), FileError> {
        let store = &self.inner.store;
        let mut listing = store.list(Some(&upload_prefix(id)));
        while let Some(object) = listing.next().await {
            match store.delete(&object?.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The bytes of upload `id`, of `size` bytes, that its parts hold from its start on.
    async fn stored(&self, id: FileId, size: u64) -> Result<u64, FileError> {
        let mut parts = Vec::new();
        let mut listing = self.inner.store.list(Some(&upload_prefix(id)));
        while let Some(object) = listing.next().await {
            let object = object?;
            if let Some(offset) = object
                .location
                .filename()
                .and_then(|name| name.strip_prefix('p'))
                .and_then(|offset| offset.parse::<u64>().ok())
            {
                parts.push((offset, object.size));
            }
        }
        Ok(received(&mut parts, size))
    }

    /// The paths of upload `id`'s parts, in order.
    async fn parts(&self, id: FileId) -> Result<Vec<Path>, FileError> {
        let mut parts = Vec::new();
        let mut listing = self.inner.store.list(Some(&upload_prefix(id)));
        while let Some(object) = listing.next().await {
            let location = object?.location;
            if location
                .filename()
                .is_some_and(|name| name.starts_with('p'))
            {
                parts.push(location);
            }
        }
        // Zero-padded offsets: in name order is in offset order.
        parts.sort_unstable();
        Ok(parts)
    }

    /// The SHA-256 of upload `id`'s parts, read again.
    async fn digest_of_parts(&self, id: FileId) -> Result<[u8; 32], FileError> {
        let mut hasher = Sha256::new();
        for part in self.parts(id).await? {
            let mut stream = self.inner.store.get(&part).await?.into_stream();
            while let Some(bytes) = stream.next().await {
                hasher.update(&bytes?);
                // A store in memory hands out its bytes at once: let the other tasks run.
                tokio::task::yield_now().await;
            }
        }
        Ok(hasher.finalize().into())
    }

    async fn sweep_once(&self, now: SystemTime) {
        let expired = |files: &Files| -> Vec<FileId> {
            files
                .index()
                .uploads
                .iter()
                .filter(|(_, e)| {
                    !e.complete
                        && !e.writing
                        && now.duration_since(e.touched).unwrap_or_default()
                            >= files.inner.limits.expiry
                })
                .map(|(id, _)| *id)
                .collect()
        };
        // Servers that share the store each see their own writes: what another one completed
        // or went on with since is read before anything is removed.
        for id in expired(self) {
            if let Err(e) = self.refresh(id).await {
                tracing::warn!(%id, "could not read an upload again before removing it: {e}");
            }
        }
        for id in expired(self) {
            tracing::info!(%id, "removing an upload left incomplete");
            if let Err(e) = self.remove(id).await {
                tracing::warn!(%id, "could not remove an expired upload: {e}");
            }
        }
    }
}

/// Removes expired incomplete uploads, every quarter of the expiry (at most a minute apart),
/// as long as the store is in use.
async fn sweep(inner: Weak<Inner>) {
    loop {
        let Some(period) = inner.upgrade().map(|inner| {
            (inner.limits.expiry / 4).clamp(Duration::from_millis(50), Duration::from_secs(60))
        }) else {
            return;
        };
        tokio::time::sleep(period).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        Files { inner }.sweep_once(SystemTime::now()).await;
    }
}

/// Writes one request's bytes into an upload. Dropping it lets another request write (once
/// the part it is writing, if any, is written).
pub(crate) struct Writer {
    files: Files,
    /// Whose writers it counts among.
    account: Arc<str>,
    id: FileId,
    size: u64,
    sha256: [u8; 32],
    /// The bytes written out as parts.
    received: u64,
    /// The digest of the `received` bytes, if known.
    hasher: Option<Sha256>,
    /// The part being written (and hashed) while the next one is received, if any.
    writing: Option<(usize, tokio::task::JoinHandle<Written>)>,
    buffer: Vec<Bytes>,
    buffered: usize,
    /// Parts are written only where none is yet; see [`Writer::flush_unless_taken`].
    exclusive: bool,
}

/// A part written out: whether it was written, and the digest up to its end (if it could be
/// known).
struct Written {
    result: Result<(), FileError>,
    hasher: Option<Sha256>,
}

impl Writer {
    /// Takes the next bytes of the body; starts writing a part out when enough are held.
    pub(crate) async fn push(&mut self, bytes: Bytes) -> Result<(), FileError> {
        let room = self.size - self.received - self.in_flight() - self.buffered as u64;
        if bytes.len() as u64 > room {
            // The file's own bytes are kept, the excess refused.
            let fits = bytes.slice(..usize::try_from(room).unwrap_or(usize::MAX));
            self.hold(fits);
            self.flush().await?;
            return Err(FileError::TooLong { size: self.size });
        }
        self.hold(bytes);
        if self.buffered >= PART_BYTES {
            self.write_part().await?;
        }
        Ok(())
    }

    fn hold(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.buffered += bytes.len();
            self.buffer.push(bytes);
        }
    }

    /// The bytes of the part being written, if any.
    fn in_flight(&self) -> u64 {
        self.writing.as_ref().map_or(0, |(len, _)| *len as u64)
    }

    /// Writes every byte held as parts, and waits until they are written.
    pub(crate) async fn flush(&mut self) -> Result<(), FileError> {
        self.write_part().await?;
        self.written().await
    }

    /// Writes what is held as a part only if no part is at its offset yet, for a request
    /// being let go (too slow): its client may have gone on at another server sharing the
    /// store, whose part at that offset, longer, must not be replaced by this shorter one.
    pub(crate) async fn flush_unless_taken(&mut self) -> Result<(), FileError> {
        self.written().await?;
        self.exclusive = true;
        self.flush().await
    }

    /// Starts writing the bytes held as one part, once the part before is written: the next
    /// part is received while this one is written. The part is hashed on a thread of its own
    /// while it is written, so the digest costs no time of its own where the disk is as fast
    /// as the hash.
    async fn write_part(&mut self) -> Result<(), FileError> {
        self.written().await?;
        if self.buffered == 0 {
            return Ok(());
        }
        let parts = std::mem::take(&mut self.buffer);
        let len = std::mem::take(&mut self.buffered);
        let hasher = self.hasher.clone();
        let store = Arc::clone(&self.files.inner.store);
        let path = part_path(self.id, self.received);
        let exclusive = self.exclusive;
        let writing = tokio::spawn(async move {
            let hashing = hasher.map(|mut hasher| {
                let parts = parts.clone();
                tokio::task::spawn_blocking(move || {
                    for bytes in &parts {
                        hasher.update(bytes);
                    }
                    hasher
                })
            });
            let payload: PutPayload = parts.into_iter().collect();
            let mode = if exclusive {
                PutMode::Create
            } else {
                PutMode::Overwrite
            };
            let write = store.put_opts(&path, payload, PutOptions::from(mode));
            let (result, hasher) = match hashing {
                // A hash that could not finish leaves the digest unknown: it is read back at
                // the end.
                Some(hashing) => {
                    let (written, hashed) = tokio::join!(write, hashing);
                    (written, hashed.ok())
                }
                None => (write.await, None),
            };
            Written {
                result: result.map(drop).map_err(FileError::from),
                hasher,
            }
        });
        self.writing = Some((len, writing));
        Ok(())
    }

    /// Waits until the part being written, if any, is written, and counts it.
    async fn written(&mut self) -> Result<(), FileError> {
        let Some((len, writing)) = self.writing.take() else {
            return Ok(());
        };
        let written = writing.await.map_err(|e| {
            FileError::Store(format!("writing a part of upload {} failed: {e}", self.id))
        })?;
        self.settle(len, written)
    }

    /// Counts a part of `len` bytes once it is written.
    fn settle(&mut self, len: usize, written: Written) -> Result<(), FileError> {
        written.result?;
        self.received += len as u64;
        self.hasher = written.hasher;
        if let Some(entry) = self.files.index().uploads.get_mut(&self.id) {
            entry.received = self.received;
            entry.touched = SystemTime::now();
        }
        Ok(())
    }

    /// Writes what is held and, once every byte is there, checks the digest: a match makes
    /// the upload complete; a mismatch discards it.
    pub(crate) async fn finish(mut self) -> Result<UploadStatus, FileError> {
        self.flush().await?;
        let status = UploadStatus {
            received: self.received,
            size: self.size,
            complete: false,
        };
        if self.received < self.size {
            return Ok(status);
        }
        // What the store holds, not what this writer counted: another server sharing the
        // store may have written a part of another length at one of these offsets.
        let stored = self.files.stored(self.id, self.size).await?;
        if stored < self.size {
            tracing::warn!(id = %self.id, stored, "an upload's parts do not cover it: it goes on");
            self.received = stored;
            self.hasher = None;
            if let Some(entry) = self.files.index().uploads.get_mut(&self.id) {
                entry.received = stored;
                entry.hasher = None;
            }
            return Ok(UploadStatus {
                received: stored,
                ..status
            });
        }
        let digest: [u8; 32] = match self.hasher.take() {
            Some(hasher) => hasher.finalize().into(),
            None => self.files.digest_of_parts(self.id).await?,
        };
        let id = self.id;
        if digest != self.sha256 {
            let files = self.files.clone();
            drop(self);
            files.remove(id).await?;
            return Err(FileError::Checksum(id));
        }
        let (owner, account) = self
            .files
            .index()
            .uploads
            .get(&id)
            .map(|e| (e.owner.to_string(), e.account.to_string()))
            .ok_or(FileError::NotFound(id))?;
        let meta = Meta {
            owner,
            account,
            size: status.size,
            sha256: self.sha256,
            complete: true,
        };
        let meta = postcard::to_stdvec(&meta).expect("a record always encodes");
        self.files
            .inner
            .store
            .put(&meta_path(id), meta.into())
            .await?;
        if let Some(entry) = self.files.index().uploads.get_mut(&id) {
            entry.complete = true;
        }
        Ok(UploadStatus {
            complete: true,
            ..status
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let writing = self.writing.take();
        let runtime = tokio::runtime::Handle::try_current();
        match (writing, runtime) {
            // Another request may write once the part on its way is written: the two would
            // write the same part.
            (Some((len, writing)), Ok(runtime)) => {
                let mut writer = self.let_go_later();
                runtime.spawn(async move {
                    if let Ok(written) = writing.await {
                        let _ = writer.settle(len, written);
                    }
                    // `writer` holds nothing in flight: its drop lets go at once.
                });
            }
            _ => self.let_go(),
        }
    }
}

impl Writer {
    /// A writer with this one's place and state, that lets the upload go when it is dropped;
    /// this one then lets go of nothing.
    fn let_go_later(&mut self) -> Writer {
        Writer {
            files: self.files.clone(),
            account: Arc::clone(&self.account),
            id: self.id,
            size: self.size,
            sha256: self.sha256,
            received: self.received,
            hasher: self.hasher.take(),
            writing: None,
            buffer: std::mem::take(&mut self.buffer),
            buffered: std::mem::take(&mut self.buffered),
            exclusive: self.exclusive,
        }
    }

    /// Lets another request write the upload.
    fn let_go(&mut self) {
        let mut index = self.files.index();
        index.stop_writing(&self.account);
        if let Some(entry) = index.uploads.get_mut(&self.id) {
            entry.writing = false;
            // The digest goes back only if it covers what the parts hold.
            if entry.received == self.received && self.buffered == 0 {
                entry.hasher = self.hasher.take();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Files {
        let limits = FileLimits {
            max_file_bytes: 1 << 30,
            quota: 1 << 30,
            expiry: Duration::from_secs(3600),
            at_once: 8,
            per_user: 8,
            files: 8,
        };
        Files::new(Arc::new(object_store::memory::InMemory::new()), limits)
    }

    #[tokio::test]
    async fn a_writer_dropped_while_it_writes_a_part_keeps_the_part_and_lets_go_after() {
        let files = files();
        let data = Bytes::from(vec![7u8; PART_BYTES + 10]);
        let sha: [u8; 32] = Sha256::digest(&data).into();
        let (id, size) = (FileId(1), data.len() as u64);
        let begin = |offset| files.begin(id, "ann", "ann", size, sha, offset);
        let mut writer = begin(0).await.unwrap().unwrap();
        writer.push(data.slice(..PART_BYTES)).await.unwrap();
        assert!(writer.writing.is_some(), "the part is on its way");
        // The request goes away while the part is written.
        drop(writer);
        let mut resumed = None;
        for _ in 0..500 {
            match begin(PART_BYTES as u64).await {
                Ok(Ok(writer)) => {
                    resumed = Some(writer);
                    break;
                }
                Err(FileError::Conflict(_) | FileError::Busy(_)) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => panic!("unexpected: {:?}", other.map(|r| r.err())),
            }
        }
        let mut writer = resumed.expect("the upload is let go once its part is written");
        assert_eq!(writer.received, PART_BYTES as u64, "the part was kept");
        writer.push(data.slice(PART_BYTES..)).await.unwrap();
        let status = writer.finish().await.unwrap();
        assert!(status.complete, "{status:?}");
        assert_eq!(status.received, size);
    }

    #[tokio::test]
    async fn parts_are_received_while_the_one_before_is_written() {
        let files = files();
        let data = Bytes::from((0..3 * PART_BYTES + 5).map(|i| i as u8).collect::<Vec<_>>());
        let sha: [u8; 32] = Sha256::digest(&data).into();
        let mut writer = files
            .begin(FileId(2), "ann", "ann", data.len() as u64, sha, 0)
            .await
            .unwrap()
            .unwrap();
        for chunk in data.chunks(1 << 20) {
            writer.push(data.slice_ref(chunk)).await.unwrap();
        }
        let status = writer.finish().await.unwrap();
        assert!(
            status.complete,
            "the digest of the parts matches: {status:?}"
        );
        let mut wrong = files
            .begin(FileId(3), "ann", "ann", data.len() as u64, [0; 32], 0)
            .await
            .unwrap()
            .unwrap();
        wrong.push(data.clone()).await.unwrap();
        assert!(matches!(wrong.finish().await, Err(FileError::Checksum(_))));
    }
}
