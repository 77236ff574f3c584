//! Moving one file's bytes from the job side into its staging file: streamed, hashed as
//! they arrive, checked against the size and SHA-256 the server promised, and resumed
//! from the bytes already staged after an interruption. Memory stays flat whatever the
//! file's size.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use reqwest::header;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tracing::{debug, info};

use super::check::CheckedFile;
use super::client::{error_chain, ClientError, JobSideClient};
use super::hotfolder::MIN_FREE_SPACE;
use super::journal::Journal;
use super::pipeline::Pipeline;
use super::staging::{StagingDir, STAGING_DIR};

/// Size of the reads when hashing a staged prefix.
const READ_BUFFER: usize = 1024 * 1024;

/// How often, in bytes, progress is written to the journal for `tbot status`.
const PROGRESS_EVERY: u64 = 8 * 1024 * 1024;

/// What a file looks like once its bytes are staged and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub size: u64,
    pub sha256: String,
}

/// Why a file's transfer did not produce verified bytes.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The server or the network failed; the staged prefix is kept for a resume.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The bytes arrived but are not the ones promised; the staged file is discarded.
    #[error("{0}")]
    Mismatch(String),
    /// The staging file could not be written (disk full, permissions, share gone); the
    /// staged file is discarded.
    #[error("{0}")]
    Local(String),
}

/// Where one file's transfer records its progress.
pub struct Progress<'a> {
    pub journal: &'a Journal,
    pub delivery: &'a str,
    pub index: usize,
    /// The server's ETag from an earlier attempt, for `If-Range`.
    pub etag: Option<String>,
}

/// Stages `file` as `name` in `staging`, continuing from what is staged already, and
/// checks it. On a mismatch or a local error the staged file is removed, so the next
/// attempt starts clean; on a network error it is kept, so the next one resumes.
pub(crate) async fn fetch(
    client: &JobSideClient,
    staging: &StagingDir,
    name: &str,
    file: &CheckedFile,
    progress: &mut Progress<'_>,
) -> Result<Verified, TransferError> {
    let result = fetch_once(client, staging, name, file, progress).await;
    if matches!(
        result,
        Err(TransferError::Mismatch(_) | TransferError::Local(_))
    ) {
        let _ = staging.remove(name);
    }
    result
}

async fn fetch_once(
    client: &JobSideClient,
    staging: &StagingDir,
    name: &str,
    file: &CheckedFile,
    progress: &mut Progress<'_>,
) -> Result<Verified, TransferError> {
    let local = |err: std::io::Error| {
        TransferError::Local(format!(
            "cannot write {}/{STAGING_DIR}/{name}: {err}",
            staging.root_path().display()
        ))
    };
    let size = file.size;
    // Opened or created here, on this task, never on a thread that could outlive a
    // cancelled transfer: a file created after its delivery stopped would be left behind.
    let staged = open_or_create(staging, name, size).map_err(local)?;
    let (staged, mut hasher, mut offset) = hash_staged_prefix(staged).await.map_err(local)?;
    if offset == size {
        debug!(file = %file.name, "already staged whole; checking it");
        return finish(hasher, offset, size, &file.sha256);
    }
    check_space(staging, size - offset)?;

    let mut response = client
        .download(&file.url, offset, progress.etag.as_deref())
        .await?;
    match response.status() {
        StatusCode::PARTIAL_CONTENT => {
            let range = response
                .headers()
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !range.starts_with(&format!("bytes {offset}-"))
                || !range.ends_with(&format!("/{size}"))
            {
                return Err(TransferError::Mismatch(format!(
                    "asked for bytes {offset}- of {size}, the server sent range {range:?}"
                )));
            }
            info!(file = %file.name, from = offset, "resuming the transfer");
        }
        _ if offset > 0 => {
            info!(file = %file.name, staged = offset, "the server sent the whole file; starting over");
            staged.set_len(0).map_err(local)?;
            hasher = Sha256::new();
            offset = 0;
        }
        _ => {}
    }
    let etag = response
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    if etag != progress.etag {
        let _ = progress
            .journal
            .set_etag(progress.delivery, progress.index, etag.as_deref());
        progress.etag = etag;
    }
    if let Some(length) = response.content_length() {
        if length != size - offset {
            return Err(TransferError::Mismatch(format!(
                "the server sent {length} bytes from byte {offset}, {} were promised",
                size - offset
            )));
        }
    }
    let mut staged = staged;
    staged.seek(SeekFrom::Start(offset)).map_err(local)?;
    let mut pipeline = Pipeline::start(staged, hasher).map_err(local)?;
    let mut received = offset;
    let mut recorded = offset;
    let broke_off = loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break None,
            Err(err) => break Some(err),
        };
        received += chunk.len() as u64;
        if received > size {
            let _ = pipeline.finish().await;
            return Err(TransferError::Mismatch(format!(
                "the server sent more than the {size} bytes promised"
            )));
        }
        if !pipeline.push(&chunk).await {
            break None;
        }
        if received - recorded >= PROGRESS_EVERY {
            recorded = received;
            let _ = progress
                .journal
                .set_received(progress.delivery, progress.index, received);
        }
    };
    let hasher = pipeline.finish().await.map_err(local)?;
    let _ = progress
        .journal
        .set_received(progress.delivery, progress.index, received);
    if let Some(err) = broke_off {
        return Err(TransferError::Client(ClientError::Transient {
            what: format!(
                "download broke off after {received} of {size} bytes: {}",
                error_chain(&err)
            ),
            retry_after: None,
        }));
    }
    finish(hasher, received, size, &file.sha256)
}

/// The staged file to carry on with, or a new one. One longer than the promised size
/// is garbage and is started over.
fn open_or_create(staging: &StagingDir, name: &str, size: u64) -> std::io::Result<File> {
    if let Some(staged) = staging.open_staged(name)? {
        if staged.metadata()?.len() <= size {
            return Ok(staged);
        }
        staging.remove(name)?;
    }
    staging.create(name)
}

/// Hashes what is already staged, so a resumed transfer verifies the whole file. Runs
/// on a blocking thread: a prefix can be gigabytes.
async fn hash_staged_prefix(mut staged: File) -> std::io::Result<(File, Sha256, u64)> {
    if staged.metadata()?.len() == 0 {
        return Ok((staged, Sha256::new(), 0));
    }
    tokio::task::spawn_blocking(move || {
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; READ_BUFFER];
        let mut read = 0;
        loop {
            let n = staged.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            read += n as u64;
        }
        Ok((staged, hasher, read))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Refuses a transfer that would leave the hotfolder's disk all but full.
fn check_space(staging: &StagingDir, needed: u64) -> Result<(), TransferError> {
    match staging.space_and_name_max() {
        Ok((free, _)) if free < needed.saturating_add(MIN_FREE_SPACE) => {
            Err(TransferError::Local(format!(
            "not enough space in hotfolder {}: the file needs {needed} more bytes, {free} are free",
            staging.root_path().display()
        )))
        }
        _ => Ok(()),
    }
}

fn finish(
    hasher: Sha256,
    received: u64,
    size: u64,
    sha256: &str,
) -> Result<Verified, TransferError> {
    if received != size {
        return Err(TransferError::Mismatch(format!(
            "the download ended after {received} of {size} bytes"
        )));
    }
    let actual = hex::encode(hasher.finalize());
    if actual != sha256 {
        return Err(TransferError::Mismatch(format!(
            "checksum mismatch: expected SHA-256 {sha256}, got {actual}"
        )));
    }
    Ok(Verified {
        size,
        sha256: actual,
    })
}
