//! Where a download's bytes go once received: hashed and written to the staging file on
//! two threads of their own, so that receiving, hashing and writing overlap and the
//! async runtime never waits on the disk. The queues between the stages are short, so
//! memory stays a few MiB whatever the file's size.

use std::io::{self, Write};
use std::thread::JoinHandle;

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// Chunks waiting between two stages (network chunks are 16 to 64 KiB).
const DEPTH: usize = 8;

/// Size of the writes to the staging file. Larger direct writes are faster on their
/// own, but block the writing thread longer; 1 MiB measured best end to end.
const WRITE_BUFFER: usize = 1024 * 1024;

/// After this many bytes the kernel is asked to start writing them to disk.
const WRITE_BEHIND: u64 = 8 * 1024 * 1024;

/// The hashing and writing stages of one transfer.
pub struct Pipeline {
    sender: tokio::sync::mpsc::Sender<Bytes>,
    hashing: JoinHandle<(Sha256, io::Result<()>)>,
}

impl Pipeline {
    /// Starts the stages: bytes will be added to `hasher` (which may already hold a
    /// staged prefix) and appended to `file`.
    pub fn start(file: std::fs::File, mut hasher: Sha256) -> io::Result<Pipeline> {
        let (sender, mut received) = tokio::sync::mpsc::channel::<Bytes>(DEPTH);
        let (to_writer, for_writer) = std::sync::mpsc::sync_channel::<Bytes>(DEPTH);
        let writer = std::thread::Builder::new()
            .name("tbot-write".into())
            .spawn(move || -> io::Result<()> {
                let mut out = StagingWriter::new(file)?;
                for chunk in for_writer {
                    out.write(&chunk)?;
                }
                out.finish()
            })?;
        let hashing = std::thread::Builder::new()
            .name("tbot-hash".into())
            .spawn(move || {
                while let Some(chunk) = received.blocking_recv() {
                    hasher.update(&chunk);
                    if to_writer.send(chunk).is_err() {
                        break;
                    }
                }
                drop(to_writer);
                let written = writer
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("the writing thread stopped")));
                (hasher, written)
            })?;
        Ok(Pipeline { sender, hashing })
    }

    /// Hands a chunk on. `false` when the stages have stopped (a write failed); the
    /// error comes from [`Pipeline::finish`].
    pub async fn push(&self, chunk: Bytes) -> bool {
        self.sender.send(chunk).await.is_ok()
    }

    /// Waits until every chunk is hashed and written; returns the hash.
    pub async fn finish(self) -> io::Result<Sha256> {
        drop(self.sender);
        let hashing = self.hashing;
        let (hasher, written) = tokio::task::spawn_blocking(move || hashing.join())
            .await
            .map_err(io::Error::other)?
            .map_err(|_| io::Error::other("the hashing thread stopped"))?;
        written.map(|()| hasher)
    }
}

/// Alignment that direct I/O needs for buffers, file offsets and lengths.
const ALIGN: usize = 4096;

/// Writes a staging file in large aligned pieces. Where the file system allows it, the
/// pieces go straight to disk (`O_DIRECT`), which on the virtual machines print shops
/// run on is twice as fast as the page cache and leaves the final sync nothing to do;
/// elsewhere the kernel is asked to start writing each few MiB at once, so the disk
/// works while the network does.
struct StagingWriter {
    file: std::fs::File,
    /// Holds `WRITE_BUFFER` aligned bytes starting at `start`.
    storage: Vec<u8>,
    start: usize,
    filled: usize,
    /// Where the next write lands in the file.
    position: u64,
    /// Everything before this has been handed to the disk (buffered writes).
    handed_over: u64,
    direct: bool,
}

impl StagingWriter {
    fn new(file: std::fs::File) -> io::Result<StagingWriter> {
        let position = file.metadata()?.len();
        let direct = position % ALIGN as u64 == 0 && set_direct(&file, true);
        let storage = vec![0u8; WRITE_BUFFER + ALIGN];
        let start = storage.as_ptr().align_offset(ALIGN);
        Ok(StagingWriter {
            file,
            storage,
            start,
            filled: 0,
            position,
            handed_over: position,
            direct,
        })
    }

    fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let take = (WRITE_BUFFER - self.filled).min(bytes.len());
            let at = self.start + self.filled;
            self.storage[at..at + take].copy_from_slice(&bytes[..take]);
            self.filled += take;
            bytes = &bytes[take..];
            if self.filled == WRITE_BUFFER {
                self.write_out()?;
            }
        }
        Ok(())
    }

    /// Writes what is buffered; a last piece that is not aligned goes through the page
    /// cache.
    fn finish(mut self) -> io::Result<()> {
        if self.direct && self.filled % ALIGN != 0 {
            self.direct = !set_direct(&self.file, false);
        }
        if self.filled > 0 {
            self.write_out()?;
        }
        Ok(())
    }

    fn write_out(&mut self) -> io::Result<()> {
        let window = &self.storage[self.start..self.start + self.filled];
        match self.file.write_all(window) {
            // A file system that took O_DIRECT but refuses the write: fall back.
            Err(err) if self.direct && err.kind() == io::ErrorKind::InvalidInput => {
                self.direct = !set_direct(&self.file, false);
                self.file.write_all(window)?;
            }
            written => written?,
        }
        self.position += self.filled as u64;
        self.filled = 0;
        if !self.direct && self.position - self.handed_over >= WRITE_BEHIND {
            start_writeback(
                &self.file,
                self.handed_over,
                self.position - self.handed_over,
            );
            self.handed_over = self.position;
        }
        Ok(())
    }
}

/// Turns direct I/O on or off for `file`; whether that worked.
#[cfg(target_os = "linux")]
fn set_direct(file: &std::fs::File, on: bool) -> bool {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    let Ok(flags) = fcntl_getfl(file) else {
        return false;
    };
    let flags = if on {
        flags | OFlags::DIRECT
    } else {
        flags - OFlags::DIRECT
    };
    fcntl_setfl(file, flags).is_ok()
}

#[cfg(not(target_os = "linux"))]
fn set_direct(_file: &std::fs::File, _on: bool) -> bool {
    false
}

/// Asks the kernel to start writing a range of `file` to disk, without waiting. A hint:
/// the sync before the drop is what makes the bytes durable.
#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range reads only its integer arguments, and the descriptor is
    // open for the whole call because `file` is borrowed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File, _offset: u64, _len: u64) {}
