//! A file opened for reading: its bytes as a stream, from the batch or from the store.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream::BoxStream};
use object_store::{ObjectStore, ObjectStoreExt, path::Path};

use super::FileError;

/// A file a handler (or server code) opened: read it as a stream of chunks, whole, or as an
/// HTTP body. Its bytes are the ones the client sent, checked against the reference's digest.
pub struct FileReader {
    size: u64,
    source: Source,
}

enum Source {
    Inline(Bytes),
    Parts {
        store: Arc<dyn ObjectStore>,
        parts: Vec<Path>,
    },
}

impl std::fmt::Debug for FileReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl FileReader {
    pub(crate) fn inline(bytes: Bytes) -> Self {
        Self {
            size: bytes.len() as u64,
            source: Source::Inline(bytes),
        }
    }

    pub(super) fn parts(store: Arc<dyn ObjectStore>, parts: Vec<Path>, size: u64) -> Self {
        Self {
            size,
            source: Source::Parts { store, parts },
        }
    }

    /// The file's length in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The file's bytes, a chunk at a time, without holding the file in memory.
    pub fn into_stream(self) -> BoxStream<'static, Result<Bytes, FileError>> {
        match self.source {
            Source::Inline(bytes) => futures_util::stream::once(async move { Ok(bytes) }).boxed(),
            Source::Parts { store, parts } => {
                // The parts are checked to add up to the file when it completes; should they
                // not when read (changed in the store since), the stream ends in an error
                // rather than pass for the whole file.
                let (size, seen) = (self.size, Arc::new(AtomicU64::new(0)));
                let counted = Arc::clone(&seen);
                let bytes = futures_util::stream::iter(parts)
                    .then(move |part| {
                        let store = Arc::clone(&store);
                        async move { store.get(&part).await }
                    })
                    .map_ok(|part| part.into_stream())
                    .try_flatten()
                    .map_err(FileError::from)
                    .inspect_ok(move |bytes| {
                        counted.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    });
                let end = futures_util::stream::once(async move {
                    let held = seen.load(Ordering::Relaxed);
                    (held != size).then(|| {
                        Err(FileError::Store(format!(
                            "the file's parts hold {held} bytes, not its {size}"
                        )))
                    })
                })
                .filter_map(std::future::ready);
                bytes.chain(end).boxed()
            }
        }
    }

    /// The whole file in memory: for files known to be small.
    pub async fn bytes(self) -> Result<Vec<u8>, FileError> {
        let mut whole = Vec::with_capacity(usize::try_from(self.size).unwrap_or(0).min(1 << 26));
        let mut stream = self.into_stream();
        while let Some(chunk) = stream.next().await {
            whole.extend_from_slice(&chunk?);
        }
        Ok(whole)
    }

    /// The file as an HTTP body, for a download route of the application's own.
    pub fn into_body(self) -> axum::body::Body {
        axum::body::Body::from_stream(self.into_stream())
    }
}
