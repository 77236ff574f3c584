//! A queue's hotfolder: the names files are staged under, whether the folder can take
//! files now, and clearing what an earlier run left in staging. The file work itself
//! goes through [`StagingDir`], which never follows a link inside the hotfolder.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::staging::StagingDir;
use crate::protocol::QueueStatus;

/// Below this much free space a hotfolder takes no new deliveries.
pub(crate) const MIN_FREE_SPACE: u64 = 1024 * 1024;

/// One queue's hotfolder on disk, as used by one agent.
#[derive(Debug, Clone)]
pub struct Hotfolder {
    root: PathBuf,
    /// This agent's journal id: it starts every name the agent stages, so two agents
    /// sharing a hotfolder (a fail-over pair) never share a staged file, and each clears
    /// only its own.
    owner: String,
}

impl Hotfolder {
    pub fn new(root: &Path, owner: &str) -> Hotfolder {
        Hotfolder {
            root: root.to_path_buf(),
            owner: owner.to_string(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Opens the staging folder; the error says why the queue cannot take files.
    pub(crate) fn open_staging(&self) -> Result<StagingDir, String> {
        StagingDir::open(&self.root)
    }

    /// The name file number `index` of delivery `delivery_id` is staged under. The id
    /// comes from the server and may hold anything, so it is hashed: two ids never share
    /// a name, and the name is always a plain one.
    pub fn staged_name(&self, delivery_id: &str, index: usize) -> String {
        self.staged_piece(delivery_id, &format!("{index}.part"))
    }

    /// The name the job ticket of delivery `delivery_id` is staged under.
    pub fn staged_ticket(&self, delivery_id: &str) -> String {
        self.staged_piece(delivery_id, "ticket.part")
    }

    /// The name of the folder the job folder of delivery `delivery_id` is put together
    /// in, in folder layout.
    pub fn staged_job_folder(&self, delivery_id: &str) -> String {
        self.staged_piece(delivery_id, "folder")
    }

    fn staged_piece(&self, delivery_id: &str, piece: &str) -> String {
        let digest = hex::encode(Sha256::digest(delivery_id.as_bytes()));
        format!("{}-{}.{piece}", self.owner, &digest[..32])
    }

    /// Gives a file staged by an earlier tbot (named after the delivery id itself) its
    /// present name, so that a drop a crash interrupted before an upgrade
    /// finds it. Whether there was one.
    pub(crate) fn adopt_legacy_staged(
        &self,
        delivery_id: &str,
        index: usize,
    ) -> Result<bool, String> {
        let legacy: String = delivery_id
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
        let staging = self.open_staging()?;
        staging
            .rename(
                &format!("{legacy}.{index}.part"),
                &self.staged_name(delivery_id, index),
            )
            .map_err(|err| err.to_string())
    }

    /// Checks that the hotfolder exists, takes a file and has room. The answer is what
    /// the heartbeat announces for the queue.
    pub(crate) fn probe(&self) -> (QueueStatus, Option<String>) {
        match self.try_probe() {
            Ok(()) => (QueueStatus::Ready, None),
            Err(why) => (QueueStatus::Unavailable, Some(why)),
        }
    }

    fn try_probe(&self) -> Result<(), String> {
        let root = self.root.display();
        let staging = self.open_staging()?;
        let probe = format!("{}.probe", self.owner);
        let writable = staging
            .remove(&probe)
            .and_then(|()| staging.create(&probe))
            .and_then(|_| staging.remove(&probe));
        writable.map_err(|err| format!("hotfolder {root} is not writable: {err}"))?;
        match staging.space_and_name_max() {
            Ok((free, _)) if free < MIN_FREE_SPACE => Err(format!(
                "hotfolder {root} is full: {free} bytes free, tbot needs at least {MIN_FREE_SPACE}"
            )),
            _ => Ok(()),
        }
    }

    /// Removes the files (and job folders) this agent staged that belong to no delivery in `keep` (those
    /// the journal will carry on). Files of other agents, and anything tbot did not
    /// name, are left alone.
    pub(crate) fn clear_staging(&self, keep: &HashSet<String>) -> Result<usize, String> {
        let staging = self.open_staging()?;
        let prefix = format!("{}-", self.owner);
        let stale = staging
            .names(|name| {
                name.starts_with(&prefix)
                    && (name.ends_with(".part") || name.ends_with(".folder"))
                    && !keep.contains(name)
            })
            .map_err(|err| err.to_string())?;
        for name in &stale {
            let removed = if name.ends_with(".folder") {
                staging.remove_job_folder(name)
            } else {
                staging.remove(name)
            };
            removed.map_err(|err| err.to_string())?;
        }
        Ok(stale.len())
    }
}
