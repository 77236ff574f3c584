//! The reports still owed to the server, kept until it has taken them.

use rusqlite::{params, Connection};
use time::OffsetDateTime;

use super::{now_text, parse_time, time_text, Journal, Result};
use crate::protocol::{CompleteRequest, EventRequest, FailRequest, FileEvent};

/// After this many failed attempts a waiting report is shown as stuck.
pub const STUCK_AFTER: u32 = 3;

/// What the server is owed about a delivery: the protocol's own request, typed from
/// the step that decides it to the call that sends it. The journal keeps it as JSON.
#[derive(Debug, Clone)]
pub enum Owed {
    Complete(CompleteRequest),
    Fail(FailRequest),
    Event(EventRequest),
}

impl Owed {
    /// The journal's `kind` column.
    fn kind(&self) -> &'static str {
        match self {
            Owed::Complete(_) => "complete",
            Owed::Fail(_) => "fail",
            Owed::Event(_) => "event",
        }
    }

    /// The journal's `body` column.
    fn body(&self) -> String {
        let body = match self {
            Owed::Complete(request) => serde_json::to_string(request),
            Owed::Fail(request) => serde_json::to_string(request),
            Owed::Event(request) => serde_json::to_string(request),
        };
        // These types hold strings, numbers and times only: they always serialise.
        body.unwrap_or_default()
    }

    /// Reads back what [`Owed::kind`] and [`Owed::body`] wrote.
    fn read(kind: &str, body: &str) -> std::result::Result<Owed, String> {
        let owed = match kind {
            "complete" => serde_json::from_str(body).map(Owed::Complete),
            "fail" => serde_json::from_str(body).map(Owed::Fail),
            "event" => serde_json::from_str(body).map(Owed::Event),
            other => return Err(format!("unknown report kind {other:?}")),
        };
        owed.map_err(|err| err.to_string())
    }

    /// What it says, as the protocol names it, for log lines and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Owed::Complete(_) => "complete",
            Owed::Fail(_) => "fail",
            Owed::Event(event) => match event.event {
                FileEvent::PickedUp => "picked_up",
                FileEvent::Stalled => "stalled",
                FileEvent::Accepted => "accepted",
                FileEvent::Rejected => "rejected",
            },
        }
    }
}

/// A report waiting to be sent.
#[derive(Debug, Clone)]
pub struct Report {
    pub seq: i64,
    pub delivery: String,
    /// What is owed, or why the journaled text cannot be read back.
    pub owed: std::result::Result<Owed, String>,
    pub created_at: OffsetDateTime,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// Adds `owed` for delivery `id` to the reports in `conn`, in the caller's transaction.
pub(super) fn insert(conn: &Connection, id: &str, owed: &Owed, now: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO reports (delivery, kind, body, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![id, owed.kind(), owed.body(), now],
    )
    .map(drop)
}

impl Journal {
    /// Queues a report that belongs to no journaled step: an event for a dropped file,
    /// or the failure of a delivery too malformed to journal.
    pub fn queue_report(&self, id: &str, owed: &Owed) -> Result<()> {
        self.with(|conn| insert(conn, id, owed, &now_text()))
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
                    owed: Owed::read(&row.get::<_, String>(2)?, &row.get::<_, String>(3)?),
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
                if matches!(report.owed, Ok(Owed::Complete(_))) {
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
}
