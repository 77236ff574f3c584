//! The bytes of job files stored on the mock server, kept in memory by file id.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// Job files' contents. `Bytes` clones are cheap, so a download never copies a file.
#[derive(Debug, Default)]
pub struct FileStore {
    files: Mutex<HashMap<String, Bytes>>,
}

impl FileStore {
    pub fn put(&self, file_id: &str, bytes: Bytes) {
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(file_id.to_string(), bytes);
    }

    pub fn get(&self, file_id: &str) -> Option<Bytes> {
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
