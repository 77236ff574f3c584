//! The bytes of job files stored on the mock server, kept in memory by file id.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// Job files' contents, with each file's SHA-256 worked out once when it is stored (it
/// is the download's `ETag`). `Bytes` clones are cheap, so a download never copies a
/// file.
#[derive(Debug, Default)]
pub struct FileStore {
    files: Mutex<HashMap<String, StoredFile>>,
}

/// One stored file.
#[derive(Debug, Clone)]
pub struct StoredFile {
    pub bytes: Bytes,
    pub sha256: String,
}

impl StoredFile {
    /// Wraps a file's bytes, hashing them once.
    pub fn new(bytes: Bytes) -> StoredFile {
        let sha256 = sha256_hex(&bytes);
        StoredFile { bytes, sha256 }
    }
}

impl FileStore {
    pub fn put(&self, file_id: &str, file: StoredFile) {
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(file_id.to_string(), file);
    }

    pub fn get(&self, file_id: &str) -> Option<StoredFile> {
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(file_id)
            .cloned()
    }
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
