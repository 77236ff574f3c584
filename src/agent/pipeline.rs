//! Where a download's bytes go once received: copied at once into a few large aligned
//! buffers, which are hashed and written to the staging file on two threads of their
//! own, so that receiving, hashing and writing overlap and the async runtime never
//! waits on the disk. Copying at once hands the network's buffer straight back to be
//! read into again, and the same few buffers go round and round, so memory stays a few
//! MiB whatever the file's size and no page is allocated twice.

use std::io::{self, Write};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::stream_copy::copy_streaming;

/// Most buffers going round: one filling, one hashing, one writing and one spare. A
/// small file needs only one, so they are made as needed.
const BUFFERS: usize = 4;

/// Size of each buffer, and so of the writes to the staging file. Larger direct writes
/// are faster on their own, but block the writing thread longer; 1 MiB measured best
/// end to end.
const BUFFER_SIZE: usize = 1024 * 1024;

/// Alignment that direct I/O needs for buffers, file offsets and lengths.
const ALIGN: usize = 4096;

/// After this many bytes the kernel is asked to start writing them to disk.
const WRITE_BEHIND: u64 = 8 * 1024 * 1024;

/// The hashing and writing stages of one transfer.
pub struct Pipeline {
    filling: Option<Buffer>,
    to_hasher: mpsc::Sender<Buffer>,
    empty: mpsc::Receiver<Buffer>,
    made: usize,
    hashing: JoinHandle<(Sha256, io::Result<()>)>,
}

impl Pipeline {
    /// Starts the stages: bytes will be added to `hasher` (which may already hold a
    /// staged prefix) and appended to `file`.
    pub fn start(file: std::fs::File, mut hasher: Sha256) -> io::Result<Pipeline> {
        let (to_hasher, mut for_hasher) = mpsc::channel::<Buffer>(BUFFERS);
        let (to_writer, for_writer) = std::sync::mpsc::sync_channel::<Buffer>(BUFFERS);
        let (give_back, empty) = mpsc::channel::<Buffer>(BUFFERS);
        let writer = std::thread::Builder::new()
            .name("tbot-write".into())
            .spawn(move || -> io::Result<()> {
                let mut out = StagingWriter::new(file)?;
                for mut buffer in for_writer {
                    out.write(buffer.filled())?;
                    buffer.len = 0;
                    // Fails only once the receiving side has finished.
                    let _ = give_back.blocking_send(buffer);
                }
                Ok(())
            })?;
        let hashing = std::thread::Builder::new()
            .name("tbot-hash".into())
            .spawn(move || {
                while let Some(buffer) = for_hasher.blocking_recv() {
                    hasher.update(buffer.filled());
                    if to_writer.send(buffer).is_err() {
                        break;
                    }
                }
                drop(to_writer);
                let written = writer
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("the writing thread stopped")));
                (hasher, written)
            })?;
        Ok(Pipeline {
            filling: None,
            to_hasher,
            empty,
            made: 0,
            hashing,
        })
    }

    /// Takes a copy of received bytes. `false` when the stages have stopped (a write
    /// failed); the error comes from [`Pipeline::finish`].
    pub async fn push(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            let mut buffer = match self.filling.take() {
                Some(buffer) => buffer,
                None => match self.next_empty().await {
                    Some(buffer) => buffer,
                    None => return false,
                },
            };
            let taken = buffer.fill_from(bytes);
            bytes = &bytes[taken..];
            if buffer.len < BUFFER_SIZE {
                self.filling = Some(buffer);
            } else if self.to_hasher.send(buffer).await.is_err() {
                return false;
            }
        }
        true
    }

    /// A buffer to fill: one given back, else a new one while fewer than `BUFFERS`
    /// exist, else the next given back. `None` when the stages have stopped.
    async fn next_empty(&mut self) -> Option<Buffer> {
        if let Ok(buffer) = self.empty.try_recv() {
            return Some(buffer);
        }
        if self.made < BUFFERS {
            self.made += 1;
            return Some(Buffer::new());
        }
        self.empty.recv().await
    }

    /// Waits until every byte is hashed and written; returns the hash.
    pub async fn finish(mut self) -> io::Result<Sha256> {
        if let Some(buffer) = self.filling.take().filter(|buffer| buffer.len > 0) {
            // A failed send means the stages stopped; join says why.
            let _ = self.to_hasher.send(buffer).await;
        }
        drop(self.to_hasher);
        let hashing = self.hashing;
        let (hasher, written) = tokio::task::spawn_blocking(move || hashing.join())
            .await
            .map_err(io::Error::other)?
            .map_err(|_| io::Error::other("the hashing thread stopped"))?;
        written.map(|()| hasher)
    }
}

/// Whether SHA-256 runs on the CPU's SHA extensions here, as the `sha2` crate decides
/// it, for the start-up log: without them hashing takes several times as long and may
/// be what limits a transfer.
pub fn sha256_uses_cpu_extensions() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse2")
            && std::arch::is_x86_feature_detected!("ssse3")
            && std::arch::is_x86_feature_detected!("sse4.1")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("sha2")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// `BUFFER_SIZE` bytes aligned for direct I/O, of which the first `len` are in use.
struct Buffer {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl Buffer {
    fn new() -> Buffer {
        let storage = vec![0u8; BUFFER_SIZE + ALIGN];
        let start = storage.as_ptr().align_offset(ALIGN);
        Buffer {
            storage,
            start,
            len: 0,
        }
    }

    /// Copies as much of `bytes` as fits; how much that was.
    fn fill_from(&mut self, bytes: &[u8]) -> usize {
        let taken = (BUFFER_SIZE - self.len).min(bytes.len());
        let at = self.start + self.len;
        copy_streaming(&mut self.storage[at..at + taken], &bytes[..taken]);
        self.len += taken;
        taken
    }

    fn filled(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }
}

/// Writes a staging file from aligned buffers. Where the file system allows it, they go
/// straight to disk (`O_DIRECT`), which on the virtual machines print shops run on is
/// twice as fast as the page cache and leaves the final sync nothing to do; elsewhere
/// the kernel is asked to start writing each few MiB at once, so the disk works while
/// the network does.
struct StagingWriter {
    file: std::fs::File,
    /// Where the next write lands in the file.
    position: u64,
    /// Everything before this has been handed to the disk (buffered writes).
    handed_over: u64,
    direct: bool,
}

impl StagingWriter {
    fn new(file: std::fs::File) -> io::Result<StagingWriter> {
        let position = file.metadata()?.len();
        let direct = position.is_multiple_of(ALIGN as u64) && set_direct(&file, true);
        Ok(StagingWriter {
            file,
            position,
            handed_over: position,
            direct,
        })
    }

    /// Appends one buffer's bytes. Only the last one can be short of a whole number
    /// of blocks; it goes through the page cache.
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.direct && !bytes.len().is_multiple_of(ALIGN) {
            self.direct = !set_direct(&self.file, false);
        }
        match self.file.write_all(bytes) {
            // A file system that took O_DIRECT but refuses the write: fall back.
            Err(err) if self.direct && err.kind() == io::ErrorKind::InvalidInput => {
                self.direct = !set_direct(&self.file, false);
                self.file.write_all(bytes)?;
            }
            written => written?,
        }
        self.position += bytes.len() as u64;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes `bytes` in pieces of `piece` bytes after `prefix`, already staged.
    async fn stage(prefix: &[u8], bytes: &[u8], piece: usize) -> (Vec<u8>, Sha256) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staged.part");
        std::fs::write(&path, prefix).unwrap();
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let mut pipeline = Pipeline::start(file, Sha256::new_with_prefix(prefix)).unwrap();
        for chunk in bytes.chunks(piece) {
            assert!(pipeline.push(chunk).await);
        }
        let hasher = pipeline.finish().await.unwrap();
        (std::fs::read(&path).unwrap(), hasher)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn stages_whole_buffers_and_a_short_last_one() {
        let bytes = pattern(3 * BUFFER_SIZE + 12_345);
        let (staged, hasher) = stage(&[], &bytes, 65_536).await;
        assert!(
            staged == bytes,
            "the staged file differs from what was sent"
        );
        assert_eq!(hasher.finalize(), Sha256::digest(&bytes));
    }

    #[tokio::test]
    async fn resumes_after_a_prefix_that_is_not_block_aligned() {
        let prefix = pattern(ALIGN + 7);
        let rest = pattern(BUFFER_SIZE + 1);
        let (staged, hasher) = stage(&prefix, &rest, 7_919).await;
        let whole = [prefix, rest].concat();
        assert!(
            staged == whole,
            "the staged file differs from prefix and rest"
        );
        assert_eq!(hasher.finalize(), Sha256::digest(&whole));
    }
}
