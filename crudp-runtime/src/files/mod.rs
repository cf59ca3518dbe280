//! Files in calls: a [`FileRef`] crosses the wire in arguments and results, and a handler
//! opens it from the [`Context`](crate::Context) as a stream, never knowing how it came.
//!
//! - Small files travel inside the batch: [`FileRef::inline`], atomic with the call.
//! - Large ones are uploaded to `PUT {mount}/upload/{id}` (resumable, checksum verified, only
//!   by the user who started them) and referenced by ID.

#[cfg(feature = "files")]
mod reader;
#[cfg(feature = "files")]
pub(crate) mod store;

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[cfg(feature = "files")]
pub use reader::FileReader;
#[cfg(feature = "files")]
pub use store::{
    DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_FILES_PER_USER, DEFAULT_UPLOAD_EXPIRY,
    DEFAULT_UPLOAD_QUOTA, DEFAULT_UPLOADS_AT_ONCE, DEFAULT_UPLOADS_PER_USER, FileError, Files,
};

/// The ID of an uploaded file: 128 random bits, made by the client that uploads it. Written
/// as 32 lowercase hex digits (in URLs, logs and `Display`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileId(pub u128);

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileId({self})")
    }
}

/// Why a text is not a [`FileId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a file ID is 32 hex digits")]
pub struct InvalidFileId;

impl FromStr for FileId {
    type Err = InvalidFileId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InvalidFileId);
        }
        u128::from_str_radix(text, 16)
            .map(FileId)
            .map_err(|_| InvalidFileId)
    }
}

/// A file that a call's arguments or result refer to: its name, size and SHA-256 digest, and
/// either its bytes ([`inline`](Self::inline), for small files) or the ID of its upload.
///
/// Use it as any other argument or result type. A handler reads it with
/// [`Context::open`](crate::Context::open) (server feature `files`), the same way whichever
/// way it came; a client makes one with `Client::upload` or [`FileRef::inline`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// The upload's ID; for an inline file, 0.
    pub id: FileId,
    /// The file's name, as the client gave it (never a path on the server).
    pub name: String,
    /// Its length in bytes.
    pub size: u64,
    /// The SHA-256 digest of its bytes.
    pub sha256: [u8; 32],
    /// The bytes of an inline file.
    content: Option<serde_bytes::ByteBuf>,
}

impl FileRef {
    /// A file sent inside the batch, with the call that carries it: for small files (the
    /// batch's size limit applies, 8 MiB by default).
    pub fn inline(name: impl Into<String>, bytes: Vec<u8>) -> Self {
        Self {
            id: FileId(0),
            name: name.into(),
            size: bytes.len() as u64,
            sha256: Sha256::digest(&bytes).into(),
            content: Some(serde_bytes::ByteBuf::from(bytes)),
        }
    }

    /// A reference to the upload `id` of a file of `size` bytes with digest `sha256`: what a
    /// client makes before it uploads the bytes.
    pub fn uploaded(id: FileId, name: impl Into<String>, size: u64, sha256: [u8; 32]) -> Self {
        Self {
            id,
            name: name.into(),
            size,
            sha256,
            content: None,
        }
    }

    /// The bytes of an inline file; `None` for an uploaded one.
    pub fn inline_bytes(&self) -> Option<&[u8]> {
        self.content.as_deref().map(|b| b.as_slice())
    }

    /// The digest as 64 lowercase hex digits, as the upload endpoint takes it.
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
}

impl fmt::Debug for FileRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileRef")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("size", &self.size)
            .field("sha256", &self.sha256_hex())
            .field("inline", &self.content.is_some())
            .finish()
    }
}

/// The bytes of an inline file, checked against the reference that carries them (no upload
/// ID; their own size and digest): the reference came from a client, which may have put
/// anything in it. `None` for an uploaded file.
#[cfg(feature = "files")]
pub(crate) fn inline_checked(file: &FileRef) -> Option<Result<bytes::Bytes, FileError>> {
    let bytes = file.inline_bytes()?;
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    if file.id != FileId(0) || file.size != bytes.len() as u64 || digest != file.sha256 {
        return Some(Err(FileError::Mismatch(file.id)));
    }
    Some(Ok(bytes::Bytes::copy_from_slice(bytes)))
}

/// What the server has of an upload: the answer of `GET` and `PUT {mount}/upload/{id}`
/// (postcard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadStatus {
    /// The bytes received and kept; the next `PUT` starts at this offset.
    pub received: u64,
    /// The file's announced length.
    pub size: u64,
    /// All of it arrived and its digest matched: handlers may open it.
    pub complete: bool,
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::new();
    crate::context::push_hex(&mut out, bytes);
    out
}

/// The 32 bytes written as 64 hex digits in `text`.
pub fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_digests_read_back_as_written() {
        let id = FileId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(id.to_string(), "0123456789abcdef0011223344556677");
        assert_eq!(id.to_string().parse(), Ok(id));
        assert_eq!("0123".parse::<FileId>(), Err(InvalidFileId));
        assert_eq!(
            "+123456789abcdef0011223344556677".parse::<FileId>(),
            Err(InvalidFileId)
        );
        let file = FileRef::inline("a.txt", b"abc".to_vec());
        assert_eq!(
            file.sha256_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_sha256(&file.sha256_hex()), Some(file.sha256));
        assert_eq!(parse_sha256("zz"), None);
        assert_eq!(file.inline_bytes(), Some(&b"abc"[..]));
        let back: FileRef = postcard::from_bytes(&postcard::to_stdvec(&file).unwrap()).unwrap();
        assert_eq!(back, file);
    }
}
