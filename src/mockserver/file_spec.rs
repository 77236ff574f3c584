//! Files as an operator or a store gives them for a new job: inline (text or
//! base64), stored on this server, or behind a URL on another host.

use axum::body::Bytes;
use base64::Engine;
use serde::Deserialize;

use super::api_error::{invalid, ApiError};
use super::file_store::StoredFile;
use super::model::{FileLocation, NewFile};
use crate::protocol::FileRole;

/// A file given when a job is created, by an operator or a store. `content` (text) or `content_base64` puts
/// bytes on this server; `url` points at another host. `size` and `sha256` default to
/// the content's; giving other values makes a job whose metadata lies, for testing.
/// Fields beyond these are ignored: a store may send more.
#[derive(Deserialize)]
pub(crate) struct FileSpec {
    name: String,
    content: Option<String>,
    content_base64: Option<String>,
    url: Option<String>,
    size: Option<i64>,
    sha256: Option<String>,
    #[serde(default)]
    role: FileRole,
}

/// The new files `specs` describe, and the bytes to store for each (none for a file
/// behind a URL). The error names the file and what is wrong with it.
pub(crate) fn read_file_specs(
    specs: Vec<FileSpec>,
) -> Result<(Vec<NewFile>, Vec<Option<StoredFile>>), ApiError> {
    let mut new_files = Vec::new();
    let mut contents = Vec::new();
    for spec in specs {
        let content = match (spec.content, spec.content_base64) {
            (Some(text), None) => Some(Bytes::from(text)),
            (None, Some(encoded)) => Some(Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|err| {
                        invalid(format!("file {:?}: content_base64: {err}", spec.name))
                    })?,
            )),
            (None, None) => None,
            (Some(_), Some(_)) => {
                return Err(invalid(format!(
                    "file {:?}: give content or content_base64, not both",
                    spec.name
                )))
            }
        };
        let location = match (&content, spec.url) {
            (Some(_), None) => FileLocation::Stored,
            (None, Some(url)) => FileLocation::External(url),
            _ => {
                return Err(invalid(format!(
                    "file {:?}: give either content or url",
                    spec.name
                )))
            }
        };
        let size = match (spec.size, &content) {
            (Some(size), _) => size,
            (None, Some(bytes)) => bytes.len() as i64,
            (None, None) => {
                return Err(invalid(format!(
                    "file {:?}: a file behind a url needs size",
                    spec.name
                )))
            }
        };
        let content = content.map(StoredFile::new);
        let sha256 = match (spec.sha256, &content) {
            (Some(sha), _) => sha,
            (None, Some(stored)) => stored.sha256.clone(),
            (None, None) => {
                return Err(invalid(format!(
                    "file {:?}: a file behind a url needs sha256",
                    spec.name
                )))
            }
        };
        contents.push(content);
        new_files.push(NewFile {
            name: spec.name,
            size,
            sha256,
            location,
            role: spec.role,
        });
    }
    Ok((new_files, contents))
}
