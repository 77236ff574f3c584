//! Moving one file's bytes from the job side into its staging file: streamed, hashed as
//! they arrive, checked against the size and SHA-256 the server promised. Memory stays
//! flat whatever the file's size.

use std::path::Path;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncWriteExt, BufWriter};

use super::client::{ClientError, JobSideClient};

/// Size of the write buffer between the network and the staging file.
const WRITE_BUFFER: usize = 1024 * 1024;

/// What a file looks like once its bytes are staged and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub size: u64,
    pub sha256: String,
}

/// Why a file's transfer did not produce verified bytes.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The server or the network failed; the staged bytes are not to be trusted.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The bytes arrived but are not the ones promised.
    #[error("{0}")]
    Mismatch(String),
    /// The staging file could not be written (disk full, permissions, share gone).
    #[error("{0}")]
    Local(String),
}

/// Downloads `url` into `staging` (replacing what is there) and checks it against
/// `size` bytes and `sha256`. On any error the staging file may hold garbage; the caller
/// removes or retries it, and never drops it.
pub async fn fetch(
    client: &JobSideClient,
    url: &str,
    size: u64,
    sha256: &str,
    staging: &Path,
) -> Result<Verified, TransferError> {
    let local = |err: std::io::Error| {
        TransferError::Local(format!("cannot write {}: {err}", staging.display()))
    };
    let mut response = client.download(url, 0, None).await?;
    if let Some(length) = response.content_length() {
        if length != size {
            return Err(TransferError::Mismatch(format!(
                "the server sent {length} bytes, {size} were promised"
            )));
        }
    }
    let file = tokio::fs::File::create(staging).await.map_err(local)?;
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut hasher = Sha256::new();
    let mut received: u64 = 0;
    while let Some(chunk) = response.chunk().await.map_err(|err| {
        TransferError::Client(ClientError::Transient {
            what: format!(
                "download broke off after {received} of {size} bytes: {}",
                super::client::error_chain(&err)
            ),
            retry_after: None,
        })
    })? {
        received += chunk.len() as u64;
        if received > size {
            return Err(TransferError::Mismatch(format!(
                "the server sent more than the {size} bytes promised"
            )));
        }
        hasher.update(&chunk);
        writer.write_all(&chunk).await.map_err(local)?;
    }
    writer.flush().await.map_err(local)?;
    if received != size {
        return Err(TransferError::Mismatch(format!(
            "the download ended after {received} of {size} bytes"
        )));
    }
    let actual = hex::encode(hasher.finalize());
    if !actual.eq_ignore_ascii_case(sha256) {
        return Err(TransferError::Mismatch(format!(
            "checksum mismatch: expected SHA-256 {sha256}, got {actual}"
        )));
    }
    Ok(Verified {
        size: received,
        sha256: actual,
    })
}
