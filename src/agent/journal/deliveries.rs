//! Each delivery's progress: claimed, its files' bytes and names, dropped or how it
//! ended, and what a restart carries on.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use time::OffsetDateTime;

use super::reports::{self, Owed};
use super::{now_text, time_text, Journal, Result};
use crate::protocol::{Delivery, DroppedFile};

/// How far a delivery has come on this agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Leased to us; nothing written yet.
    Claimed,
    /// Bytes are being staged.
    Transferring,
    /// Files are being moved into the hotfolder; some may be there already.
    Dropping,
    /// Every file is in the hotfolder; the report may still be owed.
    Dropped,
    /// The server knows it is complete.
    Reported,
    /// Given up, with a reason; the report may still be owed.
    Failed,
    /// Another agent has it; nothing was dropped.
    LeaseLost,
    /// Handed back to the server when tbot stopped; nothing was dropped.
    HandedBack,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Step::Claimed => "claimed",
            Step::Transferring => "transferring",
            Step::Dropping => "dropping",
            Step::Dropped => "dropped",
            Step::Reported => "reported",
            Step::Failed => "failed",
            Step::LeaseLost => "lease_lost",
            Step::HandedBack => "handed_back",
        }
    }

    fn parse(text: &str) -> Step {
        match text {
            "claimed" => Step::Claimed,
            "transferring" => Step::Transferring,
            "dropping" => Step::Dropping,
            "dropped" => Step::Dropped,
            "reported" => Step::Reported,
            "failed" => Step::Failed,
            "lease_lost" => Step::LeaseLost,
            _ => Step::HandedBack,
        }
    }

    /// Whether the delivery's files are in the hotfolder (so it must never be dropped
    /// again).
    pub fn is_dropped(self) -> bool {
        matches!(self, Step::Dropped | Step::Reported)
    }

    /// Whether work on this agent is unfinished (a restart must carry it on).
    pub fn is_unfinished(self) -> bool {
        matches!(self, Step::Claimed | Step::Transferring | Step::Dropping)
    }
}

/// One file of a journaled delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileState {
    pub index: usize,
    pub name: String,
    pub size: u64,
    pub received: u64,
    pub etag: Option<String>,
    /// The name being given to the file in the hotfolder, recorded before the move.
    pub drop_name: Option<String>,
    /// Set once the file is in the hotfolder.
    pub dropped: bool,
}

/// What a delivery profile drops after the files, as far as it got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropExtras {
    /// The job ticket's path in the hotfolder, recorded before it moves there.
    pub ticket_path: Option<String>,
    pub ticket_placed: bool,
    pub triggers_written: bool,
}

/// A delivery as the journal holds it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub delivery: Delivery,
    pub step: Step,
    pub files: Vec<FileState>,
}

impl Entry {
    /// The files already in the hotfolder, as the complete report lists them.
    pub fn dropped_files(&self) -> Vec<DroppedFile> {
        self.files
            .iter()
            .filter(|f| f.dropped)
            .filter_map(|f| {
                Some(DroppedFile {
                    name: f.name.clone(),
                    sha256: self
                        .delivery
                        .files
                        .get(f.index)?
                        .sha256
                        .to_ascii_lowercase(),
                    path: f.drop_name.clone()?,
                })
            })
            .collect()
    }
}

/// A file of a delivery as the journal had it before a restart, with its checksum from
/// the journaled claim: what is kept of it depends on whether it landed.
struct EarlierFile {
    name: String,
    sha256: String,
    received: u64,
    etag: Option<String>,
    drop_name: Option<String>,
    dropped: bool,
    dropped_at: Option<String>,
}

/// The files of delivery `id` as journaled.
fn earlier_files(conn: &Connection, id: &str) -> rusqlite::Result<Vec<EarlierFile>> {
    let mut statement = conn.prepare(
        "SELECT f.name, f.received, f.etag, f.drop_name, f.dropped, f.dropped_at,
                json_extract(d.claim, '$.files[' || f.idx || '].sha256')
         FROM files f JOIN deliveries d ON d.id = f.delivery WHERE f.delivery = ?1",
    )?;
    let rows = statement.query_map(params![id], |row| {
        Ok(EarlierFile {
            name: row.get(0)?,
            received: row.get::<_, i64>(1)? as u64,
            etag: row.get(2)?,
            drop_name: row.get(3)?,
            dropped: row.get::<_, i64>(4)? != 0,
            dropped_at: row.get(5)?,
            sha256: row
                .get::<_, Option<String>>(6)?
                .unwrap_or_default()
                .to_ascii_lowercase(),
        })
    })?;
    rows.collect()
}

fn load_files(conn: &Connection, id: &str) -> rusqlite::Result<Vec<FileState>> {
    let mut statement = conn.prepare(
        "SELECT idx, name, size, received, etag, drop_name, dropped FROM files WHERE delivery = ?1 ORDER BY idx",
    )?;
    let rows = statement.query_map(params![id], |row| {
        Ok(FileState {
            index: row.get::<_, i64>(0)? as usize,
            name: row.get(1)?,
            size: row.get::<_, i64>(2)? as u64,
            received: row.get::<_, i64>(3)? as u64,
            etag: row.get(4)?,
            drop_name: row.get(5)?,
            dropped: row.get::<_, i64>(6)? != 0,
        })
    })?;
    rows.collect()
}

impl Journal {
    /// Records a claimed delivery before any byte moves. Returns the entry the journal
    /// already had when the server hands out a delivery it knows.
    pub fn record_claim(&self, delivery: &Delivery) -> Result<Option<Entry>> {
        if let Some(known) = self.entry(&delivery.id)? {
            return Ok(Some(known));
        }
        let claim = serde_json::to_string(delivery).unwrap_or_default();
        let now = now_text();
        self.with(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO deliveries (id, queue, job, order_number, claim, step, claimed_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'claimed', ?6, ?6)",
                params![delivery.id, delivery.queue, delivery.job.id, delivery.job.order_number, claim, now],
            )?;
            for (index, file) in delivery.files.iter().enumerate() {
                tx.execute(
                    "INSERT INTO files (delivery, idx, name, size) VALUES (?1, ?2, ?3, ?4)",
                    params![delivery.id, index as i64, file.name, file.size.max(0)],
                )?;
            }
            tx.commit()
        })?;
        Ok(None)
    }

    /// Starts a delivery the journal knew over, for a new lease after a failure or a
    /// lost lease: the claim is replaced and its progress forgotten, except for files
    /// an earlier attempt already moved into the hotfolder, which are never moved
    /// again. Those are known by name and checksum, wherever they stand in the new
    /// claim. Returns the files as the journal now has them.
    pub fn restart(&self, delivery: &Delivery) -> Result<Vec<FileState>> {
        let claim = serde_json::to_string(delivery).unwrap_or_default();
        let now = now_text();
        self.with(|conn| {
            let tx = conn.transaction()?;
            let mut earlier = earlier_files(&tx, &delivery.id)?;
            // A ticket not placed by now never landed (a crash cut short is settled when
            // the drop resumes, before anything staged is discarded): it is written anew.
            tx.execute(
                "UPDATE deliveries SET claim = ?2, step = 'claimed', reason = NULL, updated_at = ?3,
                        queue = ?4, job = ?5, order_number = ?6,
                        ticket_path = CASE WHEN ticket_placed = 1 THEN ticket_path END
                 WHERE id = ?1",
                params![
                    delivery.id,
                    claim,
                    now,
                    delivery.queue,
                    delivery.job.id,
                    delivery.job.order_number
                ],
            )?;
            tx.execute("DELETE FROM files WHERE delivery = ?1", params![delivery.id])?;
            for (index, file) in delivery.files.iter().enumerate() {
                tx.execute(
                    "INSERT INTO files (delivery, idx, name, size) VALUES (?1, ?2, ?3, ?4)",
                    params![delivery.id, index as i64, file.name, file.size.max(0)],
                )?;
                let sha256 = file.sha256.to_ascii_lowercase();
                let Some(found) = earlier
                    .iter()
                    .position(|f| f.name == file.name && f.sha256 == sha256)
                else {
                    continue;
                };
                // Landed: never moved again. Staged before a stop: resumed from, the
                // ETag checking that the server's file is still the same.
                let was = earlier.remove(found);
                let landed = was.drop_name.is_some() && was.dropped;
                tx.execute(
                    "UPDATE files SET received = ?3, etag = ?4, drop_name = ?5, dropped = ?6, dropped_at = ?7
                     WHERE delivery = ?1 AND idx = ?2",
                    params![
                        delivery.id,
                        index as i64,
                        was.received as i64,
                        was.etag,
                        was.drop_name.filter(|_| landed),
                        landed,
                        was.dropped_at.filter(|_| landed)
                    ],
                )?;
            }
            tx.commit()?;
            load_files(conn, &delivery.id)
        })
    }

    /// Records the latest lease expiry the server granted, so that a restart judges the
    /// lease by it and not by the claim's first one.
    pub fn set_lease(&self, id: &str, expires_at: OffsetDateTime) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "UPDATE deliveries SET claim = json_set(claim, '$.lease_expires_at', ?2) WHERE id = ?1",
                params![id, time_text(expires_at)],
            )
        })
        .map(|_| ())
    }

    pub fn set_step(&self, id: &str, step: Step) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "UPDATE deliveries SET step = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, step.as_str(), now_text()],
            )
        })
        .map(|_| ())
    }

    /// Records how many bytes of a file are staged (for `tbot status`).
    pub fn set_received(&self, id: &str, index: usize, received: u64) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "UPDATE files SET received = ?3 WHERE delivery = ?1 AND idx = ?2",
                params![id, index as i64, received as i64],
            )
        })
        .map(|_| ())
    }

    /// Records the server's ETag of a file, for `If-Range` when the transfer resumes.
    pub fn set_etag(&self, id: &str, index: usize, etag: Option<&str>) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "UPDATE files SET etag = ?3 WHERE delivery = ?1 AND idx = ?2",
                params![id, index as i64, etag],
            )
        })
        .map(|_| ())
    }

    /// Records the names files are about to get in the hotfolder, and the step
    /// `dropping`, durably: this commit is synced to disk before it returns, because
    /// after a power cut it is what tells a finished move from one never made.
    pub fn record_drop_names(&self, id: &str, names: &[(usize, String)]) -> Result<()> {
        let now = now_text();
        self.with(|conn| {
            conn.pragma_update(None, "synchronous", "FULL")?;
            let written = (|| {
                let tx = conn.transaction()?;
                tx.execute(
                    "UPDATE deliveries SET step = 'dropping', updated_at = ?2 WHERE id = ?1",
                    params![id, now],
                )?;
                for (index, name) in names {
                    tx.execute(
                        "UPDATE files SET drop_name = ?3 WHERE delivery = ?1 AND idx = ?2",
                        params![id, *index as i64, name],
                    )?;
                }
                tx.commit()
            })();
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            written
        })
    }

    /// The job ticket's path in the hotfolder, recorded before it moves there, and
    /// whether it did; and whether the triggers were written.
    pub fn drop_extras(&self, id: &str) -> Result<DropExtras> {
        self.with(|conn| {
            conn.query_row(
                "SELECT ticket_path, ticket_placed, triggers_written FROM deliveries WHERE id = ?1",
                params![id],
                |row| {
                    Ok(DropExtras {
                        ticket_path: row.get(0)?,
                        ticket_placed: row.get::<_, i64>(1)? != 0,
                        triggers_written: row.get::<_, i64>(2)? != 0,
                    })
                },
            )
        })
    }

    /// Records the path the job ticket is about to get, durably, like the files' names
    /// (`record_drop_names`).
    pub fn record_ticket_path(&self, id: &str, path: &str) -> Result<()> {
        self.with(|conn| {
            conn.pragma_update(None, "synchronous", "FULL")?;
            let written = conn.execute(
                "UPDATE deliveries SET ticket_path = ?2, step = 'dropping' WHERE id = ?1",
                params![id, path],
            );
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            written.map(drop)
        })
    }

    /// Records that the job ticket is in the hotfolder.
    pub fn set_ticket_placed(&self, id: &str) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "UPDATE deliveries SET ticket_placed = 1 WHERE id = ?1",
                params![id],
            )
        })
        .map(drop)
    }

    /// Records that the delivery's trigger files are written.
    pub fn set_triggers_written(&self, id: &str) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "UPDATE deliveries SET triggers_written = 1 WHERE id = ?1",
                params![id],
            )
        })
        .map(drop)
    }

    /// Records that a file is in the hotfolder under its drop name.
    pub fn set_dropped(&self, id: &str, index: usize) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "UPDATE files SET dropped = 1, dropped_at = ?3 WHERE delivery = ?1 AND idx = ?2",
                params![id, index as i64, now_text()],
            )
        })
        .map(|_| ())
    }

    /// Ends a delivery's work here: its final step, a reason when it failed, and the
    /// report owed to the server, in one transaction so neither is lost without the
    /// other.
    pub fn finish(
        &self,
        id: &str,
        step: Step,
        reason: Option<&str>,
        report: Option<&Owed>,
    ) -> Result<()> {
        let now = now_text();
        self.with(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "UPDATE deliveries SET step = ?2, reason = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, step.as_str(), reason, now],
            )?;
            if let Some(owed) = report {
                reports::insert(&tx, id, owed, &now)?;
            }
            tx.commit()
        })
    }

    /// One delivery as journaled.
    pub fn entry(&self, id: &str) -> Result<Option<Entry>> {
        self.with(|conn| {
            let row = conn
                .query_row(
                    "SELECT claim, step FROM deliveries WHERE id = ?1",
                    params![id],
                    |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
                )
                .optional()?;
            let Some((claim, step)) = row else {
                return Ok(None);
            };
            let Ok(delivery) = serde_json::from_str::<Delivery>(&claim) else {
                return Ok(None);
            };
            let files = load_files(conn, id)?;
            Ok(Some(Entry {
                delivery,
                step: Step::parse(&step),
                files,
            }))
        })
    }

    /// Every delivery whose work here is unfinished, oldest claim first.
    pub fn unfinished(&self) -> Result<Vec<Entry>> {
        self.entries(
            "SELECT id FROM deliveries WHERE step IN ('claimed', 'transferring', 'dropping') ORDER BY claimed_at",
            [],
        )
    }

    /// Every delivery whose staged bytes may still be needed: unfinished ones, and
    /// those handed back at a stop within `handed_back_within`, which resume if the
    /// server hands them to this agent again.
    pub fn resumable(&self, handed_back_within: time::Duration) -> Result<Vec<Entry>> {
        let cutoff = time_text(OffsetDateTime::now_utc() - handed_back_within);
        self.entries(
            "SELECT id FROM deliveries WHERE step IN ('claimed', 'transferring', 'dropping')
             OR (step = 'handed_back' AND updated_at >= ?1)",
            params![cutoff],
        )
    }

    /// The deliveries whose ids `query` selects, as journaled.
    fn entries(&self, query: &str, values: impl rusqlite::Params) -> Result<Vec<Entry>> {
        let ids: Vec<String> = self.with(|conn| {
            let mut statement = conn.prepare(query)?;
            let rows = statement.query_map(values, |row| row.get(0))?;
            rows.collect()
        })?;
        let mut entries = Vec::new();
        for id in ids {
            if let Some(entry) = self.entry(&id)? {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    /// Forgets finished deliveries older than `keep_days`, so the journal stays small.
    pub fn prune(&self, keep_days: i64) -> Result<usize> {
        let cutoff = time_text(OffsetDateTime::now_utc() - time::Duration::days(keep_days));
        self.with(|conn| {
            conn.execute(
                "DELETE FROM deliveries WHERE step IN ('reported', 'failed', 'lease_lost', 'handed_back')
                 AND updated_at < ?1 AND id NOT IN (SELECT delivery FROM reports)",
                params![cutoff],
            )
        })
    }
}
