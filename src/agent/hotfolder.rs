//! A queue's hotfolder: where staged files wait, how a verified file is moved in
//! without a device ever seeing half of it, and whether the folder can take files now.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::naming::clash_name;
use crate::protocol::QueueStatus;

/// The hidden folder inside each hotfolder where files are staged. Being on the same
/// file system as the hotfolder makes the final move a rename, never a copy.
pub const STAGING_DIR: &str = ".tbot";

/// How many clash names are tried before a drop gives up.
const MAX_CLASH_TRIES: u32 = 10_000;

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
            .map_err(|err| format!("hotfolder {root} is not writable: {err}"))
    }

    /// Removes staged files left behind by an earlier run.
    pub fn clear_staging(&self) -> io::Result<usize> {
        let mut removed = 0;
        let entries = match fs::read_dir(self.staging_dir()) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(err) => return Err(err),
        };
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "part") {
                fs::remove_file(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Moves a verified staged file into the hotfolder as `name`, or as the first free
    /// clash name when `name` is taken: nothing already there is ever overwritten. The
    /// file is synced before it appears and the folder after, so a power cut leaves
    /// either no file or the whole file. Returns the name the file got.
    pub fn drop_file(&self, staged: &Path, name: &str) -> io::Result<String> {
        File::open(staged)?.sync_all()?;
        for n in 1..=MAX_CLASH_TRIES {
            let candidate = if n == 1 {
                name.to_string()
            } else {
                clash_name(name, n)
            };
            match place_without_overwrite(staged, &self.root.join(&candidate)) {
                Ok(()) => {
                    sync_dir(&self.root)?;
                    sync_dir(&self.staging_dir())?;
                    return Ok(candidate);
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(err),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{MAX_CLASH_TRIES} files named like {name} are already in {}",
                self.root.display()
            ),
        ))
    }
}

/// Gives `staged` the name `target` in one atomic step, failing with `AlreadyExists`
/// rather than replacing a file. A hard link appears whole or not at all; the staged
/// name is removed afterwards.
fn place_without_overwrite(staged: &Path, target: &Path) -> io::Result<()> {
    fs::hard_link(staged, target)?;
    fs::remove_file(staged)
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
