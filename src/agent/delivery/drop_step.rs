//! The drop step: verified files move from staging into the hotfolder under their
//! planned names, never overwriting, with the names journaled durably first, so that
//! after a crash the journal and the folder together tell what happened.

use std::path::Path;
use std::sync::Arc;

use tracing::warn;

use super::{Outcome, Worker};
use crate::agent::check::CheckedFile;
use crate::agent::events::Event;
use crate::agent::journal::Journal;
use crate::agent::staging::StagingDir;
use crate::naming::clash_name;
use crate::protocol::{Delivery, DroppedFile};

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
    pub(super) fn recognise_moves(
        &self,
        id: &str,
        staging: &StagingDir,
        plan: Vec<FilePlan>,
    ) -> Vec<FilePlan> {
        plan.into_iter()
            .map(|mut file| {
                let Some(planned) = file
                    .planned
                    .take_if(|name| staging.was_placed(&file.staged, name))
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

    /// Drop step: each verified file moves into the hotfolder under the name planned
    /// for it, never overwriting. The names are journaled, durably, before the files
    /// move, so after a crash the journal and the folder together tell what happened.
    pub(super) async fn drop_all(
        &self,
        delivery: &Delivery,
        staging: Arc<StagingDir>,
        plan: Vec<FilePlan>,
    ) -> Outcome {
        let (journal, id) = (self.journal.clone(), delivery.id.clone());
        let root = staging.root_path().to_path_buf();
        let placed = tokio::task::spawn_blocking(move || {
            let placed = drop_files(&journal, &staging, &id, &plan);
            (placed, plan)
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

/// Why a drop stopped part of the way, and which files had moved in by then.
struct DropFailure {
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

/// The file work of the drop step, in one blocking call: sync the staged files, journal
/// their names durably, move them (a clash journals the next name first), and sync the
/// folders once. Returns each file's name.
fn drop_files(
    journal: &Journal,
    staging: &StagingDir,
    id: &str,
    plan: &[FilePlan],
) -> Result<Vec<String>, DropFailure> {
    let mut names: Vec<Option<String>> = plan.iter().map(|f| f.landed.clone()).collect();
    let fail = |why: String, names: &[Option<String>]| DropFailure {
        why,
        landed: plan
            .iter()
            .zip(names)
            .filter_map(|(f, name)| Some((f.file.name.clone(), name.clone()?)))
            .collect(),
    };
    let mut to_move = Vec::new();
    for (slot, file) in plan.iter().enumerate() {
        if file.landed.is_some() {
            continue;
        }
        let synced = staging
            .open_staged(&file.staged)
            .and_then(|staged| staged.ok_or_else(|| std::io::ErrorKind::NotFound.into()))
            .and_then(|staged| staged.sync_all());
        synced.map_err(|e| {
            fail(
                format!("cannot sync the staged {}: {e}", file.file.name),
                &names,
            )
        })?;
        to_move.push(slot);
    }
    let planned: Vec<(usize, String)> = to_move
        .iter()
        .map(|&slot| (plan[slot].index, plan[slot].name.clone()))
        .collect();
    journal
        .record_drop_names(id, &planned)
        .map_err(|e| fail(e.to_string(), &names))?;
    for slot in to_move {
        let file = &plan[slot];
        let mut candidate = file.name.clone();
        let mut tries = 1;
        loop {
            match staging.place(&file.staged, &candidate) {
                Ok(()) => break,
                Err(err)
                    if err.kind() == std::io::ErrorKind::AlreadyExists
                        && tries < MAX_CLASH_TRIES =>
                {
                    tries += 1;
                    candidate = clash_name(&file.name, tries);
                    journal
                        .record_drop_names(id, &[(file.index, candidate.clone())])
                        .map_err(|e| fail(e.to_string(), &names))?;
                }
                Err(err) => {
                    let why = format!(
                        "{} could not be moved in as {candidate}: {err}",
                        file.file.name
                    );
                    return Err(fail(why, &names));
                }
            }
        }
        names[slot] = Some(candidate);
        journal
            .set_dropped(id, file.index)
            .map_err(|e| fail(e.to_string(), &names))?;
    }
    staging
        .sync()
        .map_err(|e| fail(format!("cannot sync the hotfolder: {e}"), &names))?;
    Ok(names.into_iter().map(Option::unwrap_or_default).collect())
}

/// Removes what a delivery staged and did not move in.
pub(super) fn discard_staging(staging: &StagingDir, plan: &[FilePlan]) {
    for file in plan.iter().filter(|f| f.landed.is_none()) {
        if let Err(err) = staging.remove(&file.staged) {
            warn!("cannot remove staged {}: {err}", file.file.name);
        }
    }
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
