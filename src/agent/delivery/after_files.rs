//! What a delivery profile drops after the files: the job ticket beside loose files,
//! and the triggers. Both come after what they name, never before, and both are
//! journaled, so a restart neither repeats nor forgets them.

use tracing::warn;

use super::drop_step::{place_under_free_name, DropFailure, DropWork};
use super::placement::triggered;
use crate::agent::staging::Target;
use crate::protocol::FileRole;
use crate::ticket::{self, TicketFile, TicketFormat};

impl DropWork<'_> {
    /// The job ticket naming the files: `path_of(slot)` is each file's path from the
    /// ticket's folder. Tickets the job side sent are dropped, not named.
    pub(super) fn render_ticket(
        &self,
        format: TicketFormat,
        path_of: impl Fn(usize) -> String,
    ) -> Vec<u8> {
        let paths: Vec<(usize, String)> = (0..self.plan.len())
            .filter(|&slot| self.role(slot) != FileRole::Ticket)
            .map(|slot| (slot, path_of(slot)))
            .collect();
        let files: Vec<TicketFile<'_>> = paths
            .iter()
            .map(|(slot, path)| TicketFile {
                path,
                role: self.role(*slot),
                size: self.plan[*slot].file.size,
                sha256: &self.plan[*slot].file.sha256,
            })
            .collect();
        ticket::render(format, self.delivery, &files)
    }

    /// Drops the job ticket beside the loose files in `target`, once they are all in
    /// place (`names`). Returns its path in the hotfolder, when there is one.
    pub(super) fn drop_ticket_beside(
        &self,
        target: &Target,
        names: &[String],
    ) -> Result<Option<String>, DropFailure> {
        let Some((format, name)) = &self.placement.ticket else {
            return Ok(None);
        };
        let fail = |why: String| self.failure(why, names);
        let id = &self.delivery.id;
        let done = self
            .journal
            .drop_extras(id)
            .map_err(|e| fail(e.to_string()))?;
        let staged = &self.pieces.ticket;
        let mut candidate = name.clone();
        match done.ticket_path {
            Some(path) if done.ticket_placed => return Ok(Some(path)),
            // Moved in by an attempt a crash cut short before it was journaled.
            Some(path) if self.staging.was_placed(staged, &path) => {
                self.staging
                    .remove(staged)
                    .map_err(|e| fail(e.to_string()))?;
                self.journal
                    .set_ticket_placed(id)
                    .map_err(|e| fail(e.to_string()))?;
                return Ok(Some(path));
            }
            // Staged whole and synced before its path was journaled: it moves in as it
            // is, never written again, so no second ticket can come of a retry.
            Some(path) if self.staging.holds(staged) => {
                candidate = target.relative(&path).to_string();
            }
            _ => {
                let bytes =
                    self.render_ticket(*format, |slot| target.relative(&names[slot]).to_string());
                self.staging
                    .write(staged, &bytes)
                    .and_then(|()| self.staging.sync_staging())
                    .map_err(|e| fail(format!("cannot stage the job ticket: {e}")))?;
            }
        }
        let record = |next: &str| {
            self.journal
                .record_ticket_path(id, &target.path_of(next))
                .map_err(|e| e.to_string())
        };
        record(&candidate).map_err(&fail)?;
        let candidate = place_under_free_name(name, candidate, record, |next| {
            self.staging.place(staged, target, next)
        })
        .map_err(|failed| fail(failed.describe("the job ticket", target)))?;
        self.journal
            .set_ticket_placed(id)
            .map_err(|e| fail(e.to_string()))?;
        Ok(Some(target.path_of(&candidate)))
    }

    /// Writes an empty trigger after each loose file and the ticket, or after the job
    /// folder, once all of them are in place. A trigger someone else already made is
    /// left as it is.
    pub(super) fn write_triggers(
        &self,
        target: &Target,
        names: &[String],
        ticket: Option<&str>,
    ) -> Result<(), DropFailure> {
        let Some(rule) = &self.queue.config.profile.trigger else {
            return Ok(());
        };
        let fail = |why: String| self.failure(why, names);
        let id = &self.delivery.id;
        if self
            .journal
            .drop_extras(id)
            .map_err(|e| fail(e.to_string()))?
            .triggers_written
        {
            return Ok(());
        }
        let landed: Vec<&str> = names.iter().map(|name| target.relative(name)).collect();
        // In folder layout every landed path starts with the job folder's name.
        let folder = self
            .placement
            .folder
            .as_ref()
            .and_then(|_| landed.first()?.split('/').next());
        let units = triggered(
            folder,
            landed.iter().copied(),
            ticket.map(|path| target.relative(path)),
        );
        for unit in units {
            let trigger = rule.render(self.delivery, unit);
            match self.staging.touch(target, &trigger) {
                Ok(true) => {}
                Ok(false) => warn!(
                    "trigger {} was there already; left as it is",
                    target.path_of(&trigger)
                ),
                Err(err) => {
                    return Err(fail(format!(
                        "cannot write the trigger {}: {err}",
                        target.path_of(&trigger)
                    )))
                }
            }
        }
        self.journal
            .set_triggers_written(id)
            .map_err(|e| fail(e.to_string()))
    }
}
