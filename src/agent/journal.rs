//! The agent's durable memory: every delivery's progress, written to SQLite in
//! `state_dir` before each step takes effect, and the reports still owed to the server.
//! After a crash or power cut the agent reads it to carry on where it was: resume
//! transfers, finish drops, resend reports, and never drop a delivery twice.
//!
//! An operator can read it too: `tbot status`, or `sqlite3 journal.sqlite3`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use time::OffsetDateTime;

use crate::protocol::{Delivery, DroppedFile, FileEvent};

/// The journal's file name inside `state_dir`.
pub const JOURNAL_FILE: &str = "journal.sqlite3";

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

/// A dropped file the device has not taken yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwaitingPickup {
    pub delivery: String,
    pub index: usize,
    pub queue: String,
    /// The file's name in the hotfolder.
    pub path: String,
    pub dropped_at: OffsetDateTime,
    /// Already reported as stalled.
    pub stalled: bool,
}

/// What a report owed to the server is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    Complete,
    Fail,
    Event,
}

impl ReportKind {
    fn as_str(self) -> &'static str {
        match self {
            ReportKind::Complete => "complete",
            ReportKind::Fail => "fail",
            ReportKind::Event => "event",
        }
    }

    fn parse(text: &str) -> ReportKind {
        match text {
            "complete" => ReportKind::Complete,
            "fail" => ReportKind::Fail,
            _ => ReportKind::Event,
        }
    }
}

/// A report waiting to be sent: the request body, kept as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub seq: i64,
    pub delivery: String,
    pub kind: ReportKind,
    pub body: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub attempts: u32,
    pub last_error: Option<String>,
}

impl Report {
    /// What the report says, as the protocol names it: `complete`, `fail`, or the event
    /// (`picked_up`, `stalled`), for log lines.
    pub fn label(&self) -> &str {
        match self.kind {
            ReportKind::Complete => "complete",
            ReportKind::Fail => "fail",
            ReportKind::Event => self.body["event"].as_str().unwrap_or("event"),
        }
    }
}

/// How the agent last got on with the server, as journaled at each heartbeat. Times
/// are RFC 3339.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServerContact {
    /// When a call last succeeded.
    pub reached_at: Option<String>,
    /// Why calls fail, when the last one did.
    pub error: Option<String>,
    /// Since when calls have failed.
    pub error_since: Option<String>,
}

/// After this many failed attempts a waiting report is shown as stuck.
pub const STUCK_AFTER: u32 = 3;

/// The journal: one SQLite database, one connection, used from every delivery task.
pub struct Journal {
    conn: Mutex<Connection>,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deliveries (
    id          TEXT PRIMARY KEY,
    queue       TEXT NOT NULL,
    job         TEXT NOT NULL,
    order_number TEXT,
    claim       TEXT NOT NULL,
    step        TEXT NOT NULL,
    reason      TEXT,
    claimed_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_step ON deliveries(step, updated_at);
CREATE TABLE IF NOT EXISTS files (
    delivery    TEXT NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    name        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    received    INTEGER NOT NULL DEFAULT 0,
    etag        TEXT,
    drop_name   TEXT,
    dropped     INTEGER NOT NULL DEFAULT 0,
    dropped_at  TEXT,
    picked_up   INTEGER NOT NULL DEFAULT 0,
    stalled     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (delivery, idx)
);
CREATE TABLE IF NOT EXISTS reports (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT
);
CREATE TABLE IF NOT EXISTS meta (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS queues (
    name        TEXT PRIMARY KEY,
    status      TEXT NOT NULL,
    detail      TEXT,
    updated_at  TEXT NOT NULL
);
";

/// Why the journal could not be used; names the file.
#[derive(Debug, thiserror::Error)]
#[error("journal {path}: {source}")]
pub struct JournalError {
    path: PathBuf,
    source: Box<dyn std::error::Error + Send + Sync>,
}

type Result<T> = std::result::Result<T, JournalError>;

/// A time as the journal stores it (RFC 3339, which sorts as text).
fn time_text(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn now_text() -> String {
    time_text(OffsetDateTime::now_utc())
}

fn parse_time(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl Journal {
    /// Opens (or creates) the journal in `state_dir`, for the daemon.
    pub fn open(state_dir: &Path) -> Result<Journal> {
        let path = state_dir.join(JOURNAL_FILE);
        let wrap = |source: rusqlite::Error| JournalError {
            path: path.clone(),
            source: Box::new(source),
        };
        create_private_file(&path).map_err(|err| JournalError {
            path: path.clone(),
            source: Box::new(err),
        })?;
        let conn = Connection::open(&path).map_err(wrap)?;
        // WAL lets `tbot status` read while the daemon writes. NORMAL syncs the WAL only
        // at checkpoints: every commit survives the process being killed, and after a
        // power cut the journal can only be behind, never torn. The one record that must
        // be on disk before it takes effect, the names given to files before they move,
        // is committed with FULL (`record_drop_names`), which also syncs all before it.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")
            .map_err(wrap)?;
        conn.execute_batch(SCHEMA).map_err(wrap)?;
        migrate(&conn).map_err(wrap)?;
        Ok(Journal {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// Opens an existing journal read-only, for `tbot status` beside a running daemon.
    pub fn open_read_only(state_dir: &Path) -> Result<Journal> {
        let path = state_dir.join(JOURNAL_FILE);
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|conn| {
                conn.busy_timeout(std::time::Duration::from_secs(5))
                    .map(|()| conn)
            })
            .map_err(|source| JournalError {
                path: path.clone(),
                source: Box::new(source),
            })?;
        Ok(Journal {
            conn: Mutex::new(conn),
            path,
        })
    }

    fn with<T>(&self, work: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        work(&mut conn).map_err(|source| JournalError {
            path: self.path.clone(),
            source: Box::new(source),
        })
    }

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
            tx.execute(
                "UPDATE deliveries SET claim = ?2, step = 'claimed', reason = NULL, updated_at = ?3,
                        queue = ?4, job = ?5, order_number = ?6 WHERE id = ?1",
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
        report: Option<(ReportKind, serde_json::Value)>,
    ) -> Result<()> {
        let now = now_text();
        self.with(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "UPDATE deliveries SET step = ?2, reason = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, step.as_str(), reason, now],
            )?;
            if let Some((kind, body)) = report {
                tx.execute(
                    "INSERT INTO reports (delivery, kind, body, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![id, kind.as_str(), body.to_string(), now],
                )?;
            }
            tx.commit()
        })
    }

    /// Queues a report that belongs to no journaled step: an event for a dropped file,
    /// or the failure of a delivery too malformed to journal.
    pub fn queue_report(&self, id: &str, kind: ReportKind, body: serde_json::Value) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO reports (delivery, kind, body, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![id, kind.as_str(), body.to_string(), now_text()],
            )
        })
        .map(|_| ())
    }

    /// Reports still owed and due now, oldest first, at most `limit` of them. A report
    /// waiting for its next try holds back the later ones of its delivery.
    pub fn reports(&self, limit: usize) -> Result<Vec<Report>> {
        self.with(|conn| {
            // Read after every delivery: parsed once, kept in the connection's cache.
            let mut statement = conn.prepare_cached(
                "SELECT seq, delivery, kind, body, created_at, attempts, last_error FROM reports r
                 WHERE NOT EXISTS (SELECT 1 FROM reports w WHERE w.next_at > ?2
                                   AND w.delivery = r.delivery AND w.seq <= r.seq)
                 ORDER BY seq LIMIT ?1",
            )?;
            let rows = statement.query_map(params![limit as i64, now_text()], |row| {
                Ok(Report {
                    seq: row.get(0)?,
                    delivery: row.get(1)?,
                    kind: ReportKind::parse(&row.get::<_, String>(2)?),
                    body: serde_json::from_str(&row.get::<_, String>(3)?).unwrap_or_default(),
                    created_at: parse_time(&row.get::<_, String>(4)?),
                    attempts: row.get(5)?,
                    last_error: row.get(6)?,
                })
            })?;
            rows.collect()
        })
    }

    /// How many reports and events the server has not taken yet.
    pub fn reports_waiting(&self) -> Result<i64> {
        self.with(|conn| conn.query_row("SELECT COUNT(*) FROM reports", [], |row| row.get(0)))
    }

    /// When the first report held back after an unreadable answer is due again.
    pub fn next_report_due(&self) -> Result<Option<OffsetDateTime>> {
        self.with(|conn| {
            conn.query_row(
                "SELECT MIN(next_at) FROM reports WHERE next_at > ?1",
                params![now_text()],
                |row| row.get::<_, Option<String>>(0),
            )
        })
        .map(|due| due.as_deref().map(parse_time))
    }

    /// Reports that went out (or are to be forgotten): removed in one transaction, and
    /// completed deliveries marked as reported.
    pub fn reports_done(&self, reports: &[Report]) -> Result<()> {
        if reports.is_empty() {
            return Ok(());
        }
        let now = now_text();
        self.with(|conn| {
            let tx = conn.transaction()?;
            for report in reports {
                tx.execute("DELETE FROM reports WHERE seq = ?1", params![report.seq])?;
                if report.kind == ReportKind::Complete {
                    tx.execute(
                        "UPDATE deliveries SET step = 'reported', updated_at = ?2 WHERE id = ?1 AND step = 'dropped'",
                        params![report.delivery, now],
                    )?;
                }
            }
            tx.commit()
        })
    }

    /// Notes a failed attempt to send a report, for `tbot status`; with `retry_at`, the
    /// report (and the later ones of its delivery) waits until then.
    pub fn report_failed(
        &self,
        report: &Report,
        error: &str,
        retry_at: Option<OffsetDateTime>,
    ) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "UPDATE reports SET attempts = attempts + 1, last_error = ?2, next_at = ?3 WHERE seq = ?1",
                params![report.seq, error, retry_at.map(time_text)],
            )
        })
        .map(|_| ())
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

    /// The journal's own random id, made when it was created. It names what this agent
    /// stages, so agents with their own journals never share a staged file.
    pub fn instance(&self) -> Result<String> {
        self.with(|conn| {
            let known: Option<String> = conn
                .query_row("SELECT value FROM meta WHERE key = 'instance'", [], |row| {
                    row.get(0)
                })
                .optional()?;
            if let Some(known) = known {
                return Ok(known);
            }
            // std's hasher keys are drawn from the system's randomness.
            let random = std::hash::BuildHasher::hash_one(
                &std::collections::hash_map::RandomState::new(),
                std::process::id(),
            );
            let fresh = format!("{random:016x}");
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('instance', ?1)",
                params![fresh],
            )?;
            Ok(fresh)
        })
    }

    /// Whether the journal takes a write now: a full or read-only state folder would
    /// make the agent take work it cannot record.
    pub fn check_writable(&self) -> Result<()> {
        self.with(|conn| set_meta(conn, "checked_at", &now_text()))
    }

    /// Records how the last call to the server went, for `tbot status` and monitoring:
    /// when it was last reached, or since when it has failed and why.
    pub fn record_server_contact(&self, failure: Option<&str>) -> Result<()> {
        let now = now_text();
        self.with(|conn| {
            let tx = conn.transaction()?;
            match failure {
                None => {
                    set_meta(&tx, "server_reached_at", &now)?;
                    tx.execute(
                        "DELETE FROM meta WHERE key IN ('server_error', 'server_error_since')",
                        [],
                    )?;
                }
                Some(error) => {
                    set_meta(&tx, "server_error", error)?;
                    tx.execute(
                        "INSERT OR IGNORE INTO meta (key, value) VALUES ('server_error_since', ?1)",
                        params![now],
                    )?;
                }
            }
            tx.commit()
        })
    }

    /// How the server was last reached: when, and the failure since then, if any.
    pub fn server_contact(&self) -> Result<ServerContact> {
        self.with(|conn| {
            let meta = |key: &str| -> rusqlite::Result<Option<String>> {
                conn.query_row(
                    "SELECT value FROM meta WHERE key = ?1",
                    params![key],
                    |row| row.get(0),
                )
                .optional()
            };
            Ok(ServerContact {
                reached_at: meta("server_reached_at")?,
                error: meta("server_error")?,
                error_since: meta("server_error_since")?,
            })
        })
    }

    /// The journal's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Ties the journal to the job side at `server`, or checks that it is tied to it:
    /// deliveries are known by the server's ids, which another server may reuse. Returns
    /// the server the journal belongs to when that is another one.
    pub fn bind_server(&self, server: &str) -> Result<Option<String>> {
        self.with(|conn| {
            let bound: Option<String> = conn
                .query_row("SELECT value FROM meta WHERE key = 'server'", [], |row| {
                    row.get(0)
                })
                .optional()?;
            match bound {
                Some(bound) if bound != server => Ok(Some(bound)),
                Some(_) => Ok(None),
                None => {
                    conn.execute(
                        "INSERT INTO meta (key, value) VALUES ('server', ?1)",
                        params![server],
                    )?;
                    Ok(None)
                }
            }
        })
    }

    /// Dropped files the device has not taken yet, dropped within `since`, for the
    /// pick-up watch.
    pub fn awaiting_pickup(&self, since: time::Duration) -> Result<Vec<AwaitingPickup>> {
        let cutoff = time_text(OffsetDateTime::now_utc() - since);
        self.with(|conn| {
            let mut statement = conn.prepare(
                "SELECT f.delivery, f.idx, d.queue, f.drop_name, f.dropped_at, f.stalled
                 FROM files f JOIN deliveries d ON d.id = f.delivery
                 WHERE f.dropped = 1 AND f.picked_up = 0 AND f.drop_name IS NOT NULL
                   AND f.dropped_at IS NOT NULL AND f.dropped_at >= ?1",
            )?;
            let rows = statement.query_map(params![cutoff], |row| {
                Ok(AwaitingPickup {
                    delivery: row.get(0)?,
                    index: row.get::<_, i64>(1)? as usize,
                    queue: row.get(2)?,
                    path: row.get(3)?,
                    dropped_at: parse_time(&row.get::<_, String>(4)?),
                    stalled: row.get::<_, i64>(5)? != 0,
                })
            })?;
            rows.collect()
        })
    }

    /// Records that the device took a file, or that it has sat too long, with the event
    /// report the server is owed, in one transaction.
    pub fn record_pickup_event(
        &self,
        file: &AwaitingPickup,
        event: FileEvent,
        body: serde_json::Value,
    ) -> Result<()> {
        let column = match event {
            FileEvent::PickedUp => "picked_up",
            FileEvent::Stalled => "stalled",
        };
        let now = now_text();
        self.with(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                &format!("UPDATE files SET {column} = 1 WHERE delivery = ?1 AND idx = ?2"),
                params![file.delivery, file.index as i64],
            )?;
            tx.execute(
                "INSERT INTO reports (delivery, kind, body, created_at) VALUES (?1, 'event', ?2, ?3)",
                params![file.delivery, body.to_string(), now],
            )?;
            tx.commit()
        })
    }

    /// Records a queue's status as last announced, for `tbot status`.
    pub fn set_queue_status(&self, name: &str, status: &str, detail: Option<&str>) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO queues (name, status, detail, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET status = ?2, detail = ?3, updated_at = ?4",
                params![name, status, detail, now_text()],
            )
        })
        .map(|_| ())
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

    /// Runs a read-only query for `tbot status`.
    pub fn read<T>(&self, work: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        self.with(|conn| work(conn))
    }
}

/// Sets `key` in the journal's `meta` table to `value`.
fn set_meta(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
        params![key, value],
    )
    .map(drop)
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

/// Brings a journal written by an earlier version up to this one's schema.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version < 1 {
        // When a report may next be tried, after an answer that could not be read.
        // One transaction: a crash half-way must not leave the column without the
        // version that says it is there.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE reports ADD COLUMN next_at TEXT;
             CREATE INDEX reports_next_at ON reports(next_at);
             PRAGMA user_version = 1;
             COMMIT;",
        )?;
    }
    Ok(())
}

/// Creates the journal file readable by tbot's user only, or makes an existing one so:
/// it names every job and file the print floor handled.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
    }
    #[cfg(not(unix))]
    options.open(path).map(drop)
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
