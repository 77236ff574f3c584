//! What `tbot status` shows, read from the journal: each queue's deliveries in
//! flight, reports waiting, recent drops and failures.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{Journal, Result, STUCK_AFTER};

/// A delivery being worked on.
#[derive(Debug, Serialize)]
pub struct InFlight {
    pub delivery: String,
    pub job: String,
    pub order_number: Option<String>,
    pub step: String,
    pub received: u64,
    pub size: u64,
    pub files: u32,
    pub since: String,
}

/// A report the server has not taken yet.
#[derive(Debug, Clone, Serialize)]
pub struct WaitingReport {
    pub delivery: String,
    pub kind: String,
    pub since: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Tried [`STUCK_AFTER`] times or more without the server taking it.
    pub stuck: bool,
}

/// A delivery dropped into its hotfolder.
#[derive(Debug, Serialize)]
pub struct Drop {
    pub delivery: String,
    pub job: String,
    pub order_number: Option<String>,
    pub at: String,
    pub reported: bool,
    pub paths: Vec<String>,
}

/// A delivery that failed here or whose lease was lost.
#[derive(Debug, Serialize)]
pub struct Failure {
    pub delivery: String,
    pub job: String,
    pub at: String,
    pub step: String,
    pub reason: String,
}

impl Journal {
    /// A queue's status and detail as the agent last announced them; `None` before it
    /// was announced.
    pub fn announced_status(&self, queue: &str) -> Result<(Option<String>, Option<String>)> {
        self.with(|conn| {
            conn.query_row(
                "SELECT status, detail FROM queues WHERE name = ?1",
                params![queue],
                |row| Ok((Some(row.get(0)?), row.get(1)?)),
            )
            .optional()
            .map(|found| found.unwrap_or((None, None)))
        })
    }

    /// The deliveries of `queue` being worked on, oldest first.
    pub fn in_flight(&self, queue: &str) -> Result<Vec<InFlight>> {
        self.with(|conn| {
    let mut statement = conn.prepare(
        "SELECT d.id, d.job, d.order_number, d.step, COALESCE(SUM(f.received), 0), COALESCE(SUM(f.size), 0), COUNT(f.idx), d.updated_at
         FROM deliveries d LEFT JOIN files f ON f.delivery = d.id
         WHERE d.queue = ?1 AND d.step IN ('claimed', 'transferring', 'dropping')
         GROUP BY d.id ORDER BY d.claimed_at",
    )?;
    let rows = statement.query_map(params![queue], |row| {
        Ok(InFlight {
            delivery: row.get(0)?,
            job: row.get(1)?,
            order_number: row.get(2)?,
            step: row.get(3)?,
            received: row.get::<_, i64>(4)? as u64,
            size: row.get::<_, i64>(5)? as u64,
            files: row.get(6)?,
            since: row.get(7)?,
        })
    })?;
    rows.collect()
        })
    }

    /// The reports owed for `queue`'s deliveries, or with `None` for deliveries too
    /// malformed to belong to a queue.
    pub fn waiting_reports(&self, queue: Option<&str>) -> Result<Vec<WaitingReport>> {
        self.with(|conn| {
            let mut statement = conn.prepare(
                "SELECT r.delivery, r.kind, r.created_at, r.attempts, r.last_error
         FROM reports r LEFT JOIN deliveries d ON d.id = r.delivery
         WHERE (?1 IS NULL AND d.queue IS NULL) OR d.queue = ?1 ORDER BY r.seq",
            )?;
            let rows = statement.query_map(params![queue], |row| {
                Ok(WaitingReport {
                    delivery: row.get(0)?,
                    kind: row.get(1)?,
                    since: row.get(2)?,
                    attempts: row.get(3)?,
                    last_error: row.get(4)?,
                    stuck: row.get::<_, u32>(3)? >= STUCK_AFTER,
                })
            })?;
            rows.collect()
        })
    }

    /// The last `limit` deliveries dropped into `queue`, newest first.
    pub fn recent_drops(&self, queue: &str, limit: usize) -> Result<Vec<Drop>> {
        self.with(|conn| {
    let mut statement = conn.prepare(
        "SELECT d.id, d.job, d.order_number, d.updated_at, d.step,
                (SELECT group_concat(f.drop_name, char(10)) FROM files f WHERE f.delivery = d.id AND f.dropped = 1)
         FROM deliveries d WHERE d.queue = ?1 AND d.step IN ('dropped', 'reported')
         ORDER BY d.updated_at DESC LIMIT ?2",
    )?;
    let rows = statement.query_map(params![queue, limit as i64], |row| {
        Ok(Drop {
            delivery: row.get(0)?,
            job: row.get(1)?,
            order_number: row.get(2)?,
            at: row.get(3)?,
            reported: row.get::<_, String>(4)? == "reported",
            paths: row
                .get::<_, Option<String>>(5)?
                .map(|p| p.lines().map(String::from).collect())
                .unwrap_or_default(),
        })
    })?;
    rows.collect()
        })
    }

    /// The last `limit` deliveries of `queue` that failed or were lost, newest first.
    pub fn recent_failures(&self, queue: &str, limit: usize) -> Result<Vec<Failure>> {
        self.with(|conn| {
            let mut statement = conn.prepare(
                "SELECT id, job, updated_at, step, COALESCE(reason, '') FROM deliveries
         WHERE queue = ?1 AND step IN ('failed', 'lease_lost') ORDER BY updated_at DESC LIMIT ?2",
            )?;
            let rows = statement.query_map(params![queue, limit as i64], |row| {
                Ok(Failure {
                    delivery: row.get(0)?,
                    job: row.get(1)?,
                    at: row.get(2)?,
                    step: row.get(3)?,
                    reason: row.get(4)?,
                })
            })?;
            rows.collect()
        })
    }
}
