//! The drop of a delivery as one job folder: its files (and its ticket) are put
//! together in a folder in staging, which then moves into the hotfolder in one step,
//! so a device watching for folders sees the whole job or nothing.

use super::drop_step::{place_under_free_name, DropFailure, DropWork};
use crate::agent::staging::Target;

impl DropWork<'_> {
    /// Puts the job folder together and moves it into `target` as `folder` (or the
    /// next free name). Every file's path, and the ticket's, is journaled durably
    /// before the folder moves. Returns each file's path in the hotfolder.
    pub(super) fn drop_job_folder(
        &self,
        target: &Target,
        folder: &str,
    ) -> Result<Vec<String>, DropFailure> {
        let landed = self.landed_names();
        if landed.iter().all(|name| !name.is_empty()) {
            return Ok(landed);
        }
        let fail = |why: String| self.failure(why, &landed);
        let id = &self.delivery.id;
        let still_staged: Vec<usize> = (0..self.plan.len())
            .filter(|&slot| self.staging.holds(&self.plan[slot].staged))
            .collect();
        self.sync_staged(&still_staged)?;
        let candidate = folder.to_string();
        self.journal_paths(target, &candidate).map_err(&fail)?;
        let staged = &self.pieces.job_folder;
        let assembly = self
            .staging
            .job_folder(staged)
            .map_err(|e| fail(format!("cannot make the job folder in staging: {e}")))?;
        for (slot, file) in self.plan.iter().enumerate() {
            let moved = self
                .staging
                .move_into(&file.staged, &assembly, &file.name)
                .map_err(|e| {
                    fail(format!(
                        "cannot put {} into the job folder: {e}",
                        file.file.name
                    ))
                })?;
            if !moved && !still_staged.contains(&slot) && !assembly.holds(&file.name) {
                return Err(fail(format!(
                    "the staged {} is gone from tbot's staging folder",
                    file.file.name
                )));
            }
        }
        if let Some((format, name)) = &self.placement.ticket {
            let bytes = self.render_ticket(*format, |slot| self.plan[slot].name.clone());
            assembly
                .write_new(name, &bytes)
                .map_err(|e| fail(format!("cannot write the job ticket {name}: {e}")))?;
        }
        assembly
            .sync()
            .map_err(|e| fail(format!("cannot sync the job folder: {e}")))?;
        let candidate = place_under_free_name(
            folder,
            candidate,
            |next| self.journal_paths(target, next),
            |name| self.staging.place_folder(staged, target, name),
        )
        .map_err(|failed| fail(failed.describe("the job folder", target)))?;
        let names: Vec<String> = self
            .plan
            .iter()
            .map(|file| target.path_of(&format!("{candidate}/{}", file.name)))
            .collect();
        // On disk before the journal says so: after a power cut, a folder the journal
        // has as landed is in the hotfolder.
        self.staging
            .sync(target)
            .map_err(|e| self.failure(format!("cannot sync the hotfolder: {e}"), &names))?;
        for file in self.plan {
            self.journal
                .set_dropped(id, file.index)
                .map_err(|e| self.failure(e.to_string(), &names))?;
        }
        if self.placement.ticket.is_some() {
            self.journal
                .set_ticket_placed(id)
                .map_err(|e| self.failure(e.to_string(), &names))?;
        }
        Ok(names)
    }

    /// Journals, durably, the path every file and the ticket get when the job folder
    /// moves in as `folder`.
    fn journal_paths(&self, target: &Target, folder: &str) -> Result<(), String> {
        let id = &self.delivery.id;
        let planned: Vec<(usize, String)> = self
            .plan
            .iter()
            .map(|file| {
                (
                    file.index,
                    target.path_of(&format!("{folder}/{}", file.name)),
                )
            })
            .collect();
        self.journal
            .record_drop_names(id, &planned)
            .map_err(|e| e.to_string())?;
        if let Some((_, name)) = &self.placement.ticket {
            self.journal
                .record_ticket_path(id, &target.path_of(&format!("{folder}/{name}")))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
