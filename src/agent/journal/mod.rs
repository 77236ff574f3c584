//! The agent's durable memory: every delivery's progress, written to SQLite in
//! `state_dir` before each step takes effect, and the reports still owed to the server.
//! After a crash or power cut the agent reads it to carry on where it was: resume
//! transfers, finish drops, resend reports, and never drop a delivery twice.
//!
//! An operator can read it too: `tbot status`, or `sqlite3 journal.sqlite3`.

mod deliveries;
mod overview;
mod pickups;
mod reports;
mod server_contact;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OpenFlags};
use time::OffsetDateTime;

pub use deliveries::{DropExtras, Entry, FileState, Step};
pub use overview::{Drop, Failure, InFlight, WaitingReport};
pub use pickups::AwaitingPickup;
pub use reports::{Owed, Report, STUCK_AFTER};
pub use server_contact::ServerContact;

/// The journal's file name inside `state_dir`.
pub const JOURNAL_FILE: &str = "journal.sqlite3";

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

    /// Whether the journal takes a write now: a full or read-only state folder would
    /// make the agent take work it cannot record.
    pub fn check_writable(&self) -> Result<()> {
        self.with(|conn| set_meta(conn, "checked_at", &now_text()))
    }

    /// The journal's file.
    pub fn path(&self) -> &Path {
        &self.path
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
    if version < 2 {
        // The device's verdict on a dropped file, and the job ticket and trigger files
        // a queue's delivery profile writes after the files.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE files ADD COLUMN verdict TEXT;
             ALTER TABLE deliveries ADD COLUMN ticket_path TEXT;
             ALTER TABLE deliveries ADD COLUMN ticket_placed INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE deliveries ADD COLUMN triggers_written INTEGER NOT NULL DEFAULT 0;
             PRAGMA user_version = 2;
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
