//! The drop step: verified files move from staging into the hotfolder under their
//! planned names, never overwriting, with the names journaled durably first, so that
//! after a crash the journal and the folder together tell what happened. Loose files
//! are here; the job folder is in `job_folder.rs`, the ticket and triggers that follow
//! the files in `after_files.rs`.

use std::path::Path;
use std::sync::Arc;

use tracing::warn;

use super::placement::Placement;
use super::{Outcome, Worker};
use crate::agent::check::CheckedFile;
use crate::agent::events::Event;
use crate::agent::journal::Journal;
use crate::agent::queue_set::Queue;
use crate::agent::staging::{StagingDir, Target};
use crate::naming::clash_name;
use crate::protocol::{Delivery, DroppedFile, FileRole};

/// How many clash names are tried before a drop gives up.
const MAX_CLASH_TRIES: u32 = 10_000;

/// One file of a delivery on its way: where it is staged, the name it gets, and how far
/// an earlier attempt took it.
pub(super) struct FilePlan {
    pub(super) index: usize,
    pub(super) file: CheckedFile,
    /// Its name in the staging folder.
    pub(super) staged: String,
    /// The name the naming rule gives it in the hotfolder.
    pub(super) name: String,
    /// The name it has in the hotfolder, moved there by an earlier attempt.
    pub(super) landed: Option<String>,
    /// The name journaled for its move by an earlier attempt that was interrupted.
    pub(super) planned: Option<String>,
    /// The server's ETag from an earlier attempt, for `If-Range`.
    pub(super) etag: Option<String>,
}

impl FilePlan {
    /// Whether its bytes still have to be fetched: not in the hotfolder, and not
    /// verified and staged by a drop that was interrupted.
    pub(super) fn needs_transfer(&self) -> bool {
        self.landed.is_none() && self.planned.is_none()
    }
}

impl Worker {
    /// After a crash in the middle of a drop: the files whose move took place count as
    /// landed (and are journaled so) before anything else is decided, so that no later
    /// step or attempt moves them again.
    /// A file of a job folder moved in when the folder did: while the folder is still
    /// in staging, none did.
    pub(super) fn recognise_moves(
        &self,
        id: &str,
        staging: &StagingDir,
        pieces: &StagedPieces,
        plan: Vec<FilePlan>,
    ) -> Vec<FilePlan> {
        let folder_staged = staging.holds(&pieces.job_folder);
        if !folder_staged {
            self.recognise_ticket_move(id, staging, pieces);
        }
        plan.into_iter()
            .map(|mut file| {
                let Some(planned) = file
                    .planned
                    .take_if(|name| !folder_staged && staging.was_placed(&file.staged, name))
                else {
                    return file;
                };
                if let Err(err) = staging
                    .remove(&file.staged)
                    .map_err(|e| e.to_string())
                    .and_then(|()| {
                        self.journal
                            .set_dropped(id, file.index)
                            .map_err(|e| e.to_string())
                    })
                {
                    warn!(
                        "cannot record that {} is in the hotfolder: {err}",
                        file.file.name
                    );
                }
                file.landed = Some(planned);
                file
            })
            .collect()
    }

    /// A ticket whose move a crash cut short before it was journaled counts as placed,
    /// before a lost lease discards what is staged: a new attempt then never writes
    /// a second one.
    fn recognise_ticket_move(&self, id: &str, staging: &StagingDir, pieces: &StagedPieces) {
        let Ok(done) = self.journal.drop_extras(id) else {
            return;
        };
        let Some(path) = done.ticket_path.filter(|_| !done.ticket_placed) else {
            return;
        };
        if staging.was_placed(&pieces.ticket, &path) {
            if let Err(err) = staging
                .remove(&pieces.ticket)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    self.journal
                        .set_ticket_placed(id)
                        .map_err(|e| e.to_string())
                })
            {
                warn!("cannot record that the job ticket is in the hotfolder: {err}");
            }
        }
    }

    /// Drop step: each verified file moves into the hotfolder under the name planned
    /// for it (loose, or in a job folder that moves in whole), never overwriting, then
    /// the job ticket and the triggers. Every name is journaled, durably, before its
    /// move, so after a crash the journal and the folder together tell what happened.
    pub(super) async fn drop_all(
        &self,
        delivery: &Delivery,
        queue: &Queue,
        staging: Arc<StagingDir>,
        placement: Placement,
        pieces: StagedPieces,
        plan: Vec<FilePlan>,
    ) -> Outcome {
        let journal = self.journal.clone();
        let root = staging.root_path().to_path_buf();
        let (owned_delivery, owned_queue) = (delivery.clone(), queue.clone());
        let placed = tokio::task::spawn_blocking(move || {
            let work = DropWork {
                journal: &journal,
                staging: &staging,
                delivery: &owned_delivery,
                queue: &owned_queue,
                placement: &placement,
                pieces: &pieces,
                plan: &plan,
            };
            (work.drop_everything(), plan)
        })
        .await;
        let (placed, plan) = match placed {
            Ok(done) => done,
            Err(join) => {
                return Outcome::Failed {
                    reason: format!("the drop stopped: {join}"),
                    retryable: true,
                }
            }
        };
        let names = match placed {
            Ok(names) => names,
            Err(failure) => return failure.into_outcome(&root),
        };
        let dropped = plan
            .into_iter()
            .zip(names)
            .map(|(item, name)| {
                self.events.emit(Event::Dropped {
                    queue: &delivery.queue,
                    file: &item.file.name,
                    path: &root.join(&name),
                });
                DroppedFile {
                    name: item.file.name,
                    sha256: item.file.sha256,
                    path: name,
                }
            })
            .collect();
        Outcome::Completed(dropped)
    }
}

/// What the drop of one delivery works with, in its one blocking call.
pub(super) struct DropWork<'a> {
    pub(super) journal: &'a Journal,
    pub(super) staging: &'a StagingDir,
    pub(super) delivery: &'a Delivery,
    pub(super) queue: &'a Queue,
    pub(super) placement: &'a Placement,
    pub(super) pieces: &'a StagedPieces,
    pub(super) plan: &'a [FilePlan],
}

impl DropWork<'_> {
    /// The whole drop: the files (loose or as a job folder), the ticket, the
    /// triggers, and one sync of the folders. Returns each file's path in the
    /// hotfolder.
    fn drop_everything(&self) -> Result<Vec<String>, DropFailure> {
        let target = self
            .staging
            .folder(&self.placement.subfolder)
            .map_err(|err| {
                self.failure(
                    format!(
                        "cannot make the subfolder {}: {err}",
                        self.placement.subfolder.join("/")
                    ),
                    &self.landed_names(),
                )
            })?;
        let (names, ticket) = match &self.placement.folder {
            Some(folder) => (self.drop_job_folder(&target, folder)?, None),
            None => {
                let names = self.drop_loose(&target)?;
                let ticket = self.drop_ticket_beside(&target, &names)?;
                (names, ticket)
            }
        };
        self.write_triggers(&target, &names, ticket.as_deref())?;
        self.staging
            .sync(&target)
            .map_err(|e| self.failure(format!("cannot sync the hotfolder: {e}"), &names))?;
        Ok(names)
    }

    /// A failure part of the way, naming the files that had landed by then.
    pub(super) fn failure(&self, why: String, names: &[impl AsRef<str>]) -> DropFailure {
        let landed = self
            .plan
            .iter()
            .zip(names)
            .filter(|(_, name)| !name.as_ref().is_empty())
            .map(|(f, name)| (f.file.name.clone(), name.as_ref().to_string()))
            .collect();
        DropFailure { why, landed }
    }

    /// Syncs the staged file of each slot still to move, so no device sees it torn.
    pub(super) fn sync_staged(&self, slots: &[usize]) -> Result<(), DropFailure> {
        for &slot in slots {
            let file = &self.plan[slot];
            let synced = self
                .staging
                .open_staged(&file.staged)
                .and_then(|staged| staged.ok_or_else(|| std::io::ErrorKind::NotFound.into()))
                .and_then(|staged| staged.sync_all());
            synced.map_err(|e| {
                self.failure(
                    format!("cannot sync the staged {}: {e}", file.file.name),
                    &self.landed_names(),
                )
            })?;
        }
        Ok(())
    }

    /// Each file's path in the hotfolder from an earlier attempt, empty for those
    /// still to move.
    pub(super) fn landed_names(&self) -> Vec<String> {
        self.plan
            .iter()
            .map(|f| f.landed.clone().unwrap_or_default())
            .collect()
    }

    /// Loose files: each moves into `target` on its own, content before the tickets
    /// the job side sent, so a device starting on a ticket finds what it names. A
    /// clash journals the next name first.
    fn drop_loose(&self, target: &Target) -> Result<Vec<String>, DropFailure> {
        let mut names = self.landed_names();
        let mut to_move: Vec<usize> = (0..self.plan.len())
            .filter(|&slot| self.plan[slot].landed.is_none())
            .collect();
        to_move.sort_by_key(|&slot| self.role(slot) == FileRole::Ticket);
        self.sync_staged(&to_move)?;
        let planned: Vec<(usize, String)> = to_move
            .iter()
            .map(|&slot| (self.plan[slot].index, target.path_of(&self.plan[slot].name)))
            .collect();
        self.journal
            .record_drop_names(&self.delivery.id, &planned)
            .map_err(|e| self.failure(e.to_string(), &names))?;
        for slot in to_move {
            let file = &self.plan[slot];
            let placed = place_under_free_name(
                &file.name,
                file.name.clone(),
                |next| {
                    self.journal
                        .record_drop_names(&self.delivery.id, &[(file.index, target.path_of(next))])
                        .map_err(|e| e.to_string())
                },
                |name| self.staging.place(&file.staged, target, name),
            );
            let candidate = placed.map_err(|failed| {
                let why = failed.describe(&file.file.name, target);
                self.failure(why, &names)
            })?;
            names[slot] = target.path_of(&candidate);
            self.journal
                .set_dropped(&self.delivery.id, file.index)
                .map_err(|e| self.failure(e.to_string(), &names))?;
        }
        Ok(names)
    }

    /// What the file in `slot` is to the job.
    pub(super) fn role(&self, slot: usize) -> FileRole {
        self.delivery
            .files
            .get(self.plan[slot].index)
            .map_or(FileRole::Content, |file| file.role)
    }
}

/// Why a move under a free name did not happen.
pub(super) enum PlaceFailure {
    /// The next name could not be journaled.
    Journal(String),
    /// The move under `name` failed for another reason than a taken name, or every
    /// clash name was taken.
    Move { name: String, err: std::io::Error },
}

impl PlaceFailure {
    /// The reason, naming `what` was being moved into `target`.
    pub(super) fn describe(self, what: &str, target: &Target) -> String {
        match self {
            PlaceFailure::Journal(why) => why,
            PlaceFailure::Move { name, err } => {
                format!(
                    "{what} could not be moved in as {}: {err}",
                    target.path_of(&name)
                )
            }
        }
    }
}

/// Moves something in (`place`) under `first`, or while that name is taken under the
/// next clash name of `base` (`_2`, `_3`, ...), journaling each of those (`journal`)
/// before it is tried; the caller journals `first`. Returns the name it got.
pub(super) fn place_under_free_name(
    base: &str,
    first: String,
    mut journal: impl FnMut(&str) -> Result<(), String>,
    mut place: impl FnMut(&str) -> std::io::Result<()>,
) -> Result<String, PlaceFailure> {
    let mut candidate = first;
    let mut tries = 1;
    loop {
        match place(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(err)
                if err.kind() == std::io::ErrorKind::AlreadyExists && tries < MAX_CLASH_TRIES =>
            {
                tries += 1;
                candidate = clash_name(base, tries);
                journal(&candidate).map_err(PlaceFailure::Journal)?;
            }
            Err(err) => {
                return Err(PlaceFailure::Move {
                    name: candidate,
                    err,
                })
            }
        }
    }
}

/// Why a drop stopped part of the way, and which files had moved in by then.
pub(super) struct DropFailure {
    why: String,
    /// Each file already in the hotfolder: its name from the server, and its name there.
    landed: Vec<(String, String)>,
}

impl DropFailure {
    fn into_outcome(self, root: &Path) -> Outcome {
        let reason = format!(
            "cannot move the files into hotfolder {}: {}",
            root.display(),
            self.why
        );
        Outcome::Failed {
            reason: append_landed(reason, &self.landed),
            retryable: true,
        }
    }
}

/// Adds to `reason` which files are in the hotfolder already, and that they stay.
fn append_landed(reason: String, landed: &[(String, String)]) -> String {
    if landed.is_empty() {
        return reason;
    }
    let list: Vec<String> = landed
        .iter()
        .map(|(name, path)| format!("{name} as {path}"))
        .collect();
    format!(
        "{reason}; already in the hotfolder, and never dropped again: {}",
        list.join(", ")
    )
}

/// An outcome that ends a delivery part of the way, with the files it had moved in.
pub(super) fn with_landed(outcome: Outcome, plan: &[FilePlan]) -> Outcome {
    let landed: Vec<(String, String)> = plan
        .iter()
        .filter_map(|f| Some((f.file.name.clone(), f.landed.clone()?)))
        .collect();
    match outcome {
        Outcome::LeaseLost(why) => Outcome::LeaseLost(append_landed(why, &landed)),
        Outcome::Failed { reason, retryable } => Outcome::Failed {
            reason: append_landed(reason, &landed),
            retryable,
        },
        other => other,
    }
}

/// Removes what a delivery staged and did not move in: files, ticket, job folder.
pub(super) fn discard_staging(staging: &StagingDir, pieces: &StagedPieces, plan: &[FilePlan]) {
    for file in plan.iter().filter(|f| f.landed.is_none()) {
        if let Err(err) = staging.remove(&file.staged) {
            warn!("cannot remove staged {}: {err}", file.file.name);
        }
    }
    if let Err(err) = staging.remove(&pieces.ticket) {
        warn!("cannot remove the staged job ticket: {err}");
    }
    if let Err(err) = staging.remove_job_folder(&pieces.job_folder) {
        warn!("cannot remove the staged job folder: {err}");
    }
}

/// The names a delivery's ticket and job folder are staged under.
#[derive(Debug, Clone)]
pub(super) struct StagedPieces {
    pub(super) ticket: String,
    pub(super) job_folder: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drop_cut_short_names_the_files_that_landed() {
        let failure = DropFailure {
            why: "b.pdf could not be moved in as MC-1_J-1_b.pdf: share gone".into(),
            landed: vec![("a.pdf".into(), "MC-1_J-1_a.pdf".into())],
        };
        let Outcome::Failed { reason, retryable } = failure.into_outcome(Path::new("/srv/hot"))
        else {
            panic!("not a failure");
        };
        assert!(retryable, "the rest may still arrive: {reason}");
        assert!(
            reason.contains("/srv/hot") && reason.contains("share gone"),
            "{reason}"
        );
        assert!(
            reason.contains(
                "already in the hotfolder, and never dropped again: a.pdf as MC-1_J-1_a.pdf"
            ),
            "{reason}"
        );
    }
}
