//! A queue's hotfolder: where staged files wait, how a verified file is moved in
//! without a device ever seeing half of it, and whether the folder can take files now.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::protocol::QueueStatus;

/// The hidden folder inside each hotfolder where files are staged. Being on the same
/// file system as the hotfolder makes the final move a rename, never a copy.
pub const STAGING_DIR: &str = ".tbot";

/// Below this much free space a hotfolder takes no new deliveries.
pub const MIN_FREE_SPACE: u64 = 1024 * 1024;

/// One queue's hotfolder on disk.
#[derive(Debug, Clone)]
pub struct Hotfolder {
    root: PathBuf,
}

impl Hotfolder {
    pub fn new(root: &Path) -> Hotfolder {
        Hotfolder {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn staging_dir(&self) -> PathBuf {
        self.root.join(STAGING_DIR)
    }

    /// Where file number `index` of delivery `delivery_id` is staged. The delivery id
    /// comes from the server, so only safe characters of it are used.
    pub fn staging_path(&self, delivery_id: &str, index: usize) -> PathBuf {
        let id: String = delivery_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(80)
            .collect();
        self.staging_dir().join(format!("{id}.{index}.part"))
    }

    /// Checks that the hotfolder exists and takes files, creating the staging folder.
    /// The answer is what the heartbeat announces for the queue.
    pub fn probe(&self) -> (QueueStatus, Option<String>) {
        match self.try_probe() {
            Ok(()) => (QueueStatus::Ready, None),
            Err(why) => (QueueStatus::Unavailable, Some(why)),
        }
    }

    fn try_probe(&self) -> Result<(), String> {
        let root = self.root.display();
        match fs::metadata(&self.root) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(format!("hotfolder {root} is not a folder")),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(format!("hotfolder {root} does not exist"))
            }
            Err(err) => return Err(format!("hotfolder {root} cannot be read: {err}")),
        }
        let staging = self.staging_dir();
        fs::create_dir_all(&staging)
            .map_err(|err| format!("hotfolder {root} is not writable: {err}"))?;
        let probe = staging.join(".probe");
        File::create(&probe)
            .and_then(|_| fs::remove_file(&probe))
            .map_err(|err| format!("hotfolder {root} is not writable: {err}"))?;
        match self.available_space() {
            Ok(free) if free < MIN_FREE_SPACE => Err(format!(
                "hotfolder {root} is full: {free} bytes free, tbot needs at least {MIN_FREE_SPACE}"
            )),
            _ => Ok(()),
        }
    }

    /// Removes staged files left behind by an earlier run, except those in `keep`
    /// (deliveries the journal will resume).
    pub fn clear_staging(&self, keep: &HashSet<PathBuf>) -> io::Result<usize> {
        let mut removed = 0;
        let entries = match fs::read_dir(self.staging_dir()) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(err) => return Err(err),
        };
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "part") && !keep.contains(&path) {
                fs::remove_file(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Free bytes on the hotfolder's file system, for the user tbot runs as.
    pub fn available_space(&self) -> io::Result<u64> {
        fs4::available_space(&self.root)
    }

    /// Makes a staged file's bytes durable before it is moved in.
    pub fn sync_staged(&self, staged: &Path) -> io::Result<()> {
        File::open(staged)?.sync_all()
    }

    /// Moves a verified staged file into the hotfolder as `name`, in one atomic step that
    /// fails with `AlreadyExists` rather than replace anything. The move is durable once
    /// [`Hotfolder::sync_folders`] has run.
    pub fn place(&self, staged: &Path, name: &str) -> io::Result<()> {
        move_without_overwrite(staged, &self.root.join(name))
    }

    /// Makes the moves into this hotfolder durable: syncs the hotfolder and the staging
    /// folder, once for all the files of a delivery.
    pub fn sync_folders(&self) -> io::Result<()> {
        sync_dir(&self.root)?;
        sync_dir(&self.staging_dir())
    }

    /// After a crash: whether the move of `staged` to `name` took place. The staged
    /// name only goes away with the move, so a missing staged file means it did.
    pub fn was_placed(&self, staged: &Path, name: &str) -> bool {
        match fs::symlink_metadata(staged) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => true,
            Err(_) => false,
            Ok(staged_meta) => fs::symlink_metadata(self.root.join(name))
                .is_ok_and(|placed| same_file(&staged_meta, &placed)),
        }
    }

    /// Removes a staged file whose move was interrupted after a link (the fallback
    /// path), once the file is known to be in place.
    pub fn forget_staged(&self, staged: &Path) -> io::Result<()> {
        match fs::remove_file(staged) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }
}

/// Renames `from` to `to` unless `to` exists. On Linux this is `renameat2` with
/// `RENAME_NOREPLACE`: the file leaves staging and appears in the hotfolder at the same
/// instant. Where the file system cannot do that (some network shares), a hard link
/// followed by removing the staged name gives the same guarantee for the device.
fn move_without_overwrite(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(()),
            Err(err) if err == rustix::io::Errno::INVAL || err == rustix::io::Errno::NOSYS => {}
            Err(err) => return Err(err.into()),
        }
    }
    fs::hard_link(from, to)?;
    fs::remove_file(from)
}

/// Whether two metadata describe one file (same device and inode).
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        a.dev() == b.dev() && a.ino() == b.ino()
    }
    #[cfg(not(unix))]
    {
        a.len() == b.len() && a.modified().ok() == b.modified().ok()
    }
}
/// Makes a folder's entries durable (a no-op where folders cannot be synced).
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}
