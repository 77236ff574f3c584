//! The bytes of job files stored on the mock server, kept in memory by file id and,
//! when the server keeps its state in a folder, in that folder's `files/` too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use bytes::Bytes;
use sha2::{Digest, Sha256};

/// Job files' contents, with each file's SHA-256 worked out once when it is stored (it
/// is the download's `ETag`). `Bytes` clones are cheap, so a download never copies a
/// file.
#[derive(Debug, Default)]
pub struct FileStore {
    files: Mutex<HashMap<String, StoredFile>>,
    /// Where each file is also written, named by its id.
    folder: Option<PathBuf>,
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
    /// A store kept in `folder` as well as in memory, holding the files already there.
    pub fn saved_in(folder: &Path) -> anyhow::Result<FileStore> {
        let unreadable = || format!("cannot read the stored files in {}", folder.display());
        std::fs::create_dir_all(folder).with_context(unreadable)?;
        let mut files = HashMap::new();
        for entry in std::fs::read_dir(folder).with_context(unreadable)? {
            let path = entry.with_context(unreadable)?.path();
            let Some(id) = path.file_name().and_then(|name| name.to_str()) else {
                continue;
            };
            if id.ends_with(".tmp") {
                continue;
            }
            let bytes = std::fs::read(&path)
                .with_context(|| format!("cannot read stored file {}", path.display()))?;
            files.insert(id.to_string(), StoredFile::new(Bytes::from(bytes)));
        }
        Ok(FileStore {
            files: Mutex::new(files),
            folder: Some(folder.to_path_buf()),
        })
    }

    /// Keeps a file. When the store has a folder and the file cannot be written there,
    /// the file is still served from memory and the error is logged: it is the restart
    /// that would miss it.
    pub fn put(&self, file_id: &str, file: StoredFile) {
        if let Some(folder) = &self.folder {
            if let Err(err) = write_whole(&folder.join(file_id), &file.bytes) {
                tracing::error!("cannot keep file {file_id} in {}: {err}", folder.display());
            }
        }
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

/// Writes `bytes` to `path` whole or not at all: to a temporary name first, then
/// renamed, so a server stopped in the middle never leaves half a file to reload.
pub fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}
