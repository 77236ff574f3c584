//! Dropped files the device has not taken yet (or has taken without a verdict yet),
//! and the events that say what it did.

use rusqlite::params;
use time::OffsetDateTime;

use super::reports::{self, Owed};
use super::{now_text, parse_time, time_text, Journal, Result};
use crate::protocol::{EventRequest, FileEvent};

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
    /// Already reported as picked up: only its verdict is still awaited.
    pub picked_up: bool,
}

impl Journal {
    /// Dropped files the device has not taken yet, and those of `verdict_queues` it
    /// took without a verdict yet, dropped within `since`, for the pick-up watch.
    pub fn awaiting_pickup(
        &self,
        since: time::Duration,
        verdict_queues: &[&str],
    ) -> Result<Vec<AwaitingPickup>> {
        let cutoff = time_text(OffsetDateTime::now_utc() - since);
        let verdict_queues = serde_json::to_string(verdict_queues).unwrap_or_default();
        self.with(|conn| {
            let mut statement = conn.prepare(
                "SELECT f.delivery, f.idx, d.queue, f.drop_name, f.dropped_at, f.stalled, f.picked_up
                 FROM files f JOIN deliveries d ON d.id = f.delivery
                 WHERE f.dropped = 1 AND f.verdict IS NULL AND f.drop_name IS NOT NULL
                   AND f.dropped_at IS NOT NULL AND f.dropped_at >= ?1
                   AND (f.picked_up = 0 OR d.queue IN (SELECT value FROM json_each(?2)))",
            )?;
            let rows = statement.query_map(params![cutoff, verdict_queues], |row| {
                Ok(AwaitingPickup {
                    delivery: row.get(0)?,
                    index: row.get::<_, i64>(1)? as usize,
                    queue: row.get(2)?,
                    path: row.get(3)?,
                    dropped_at: parse_time(&row.get::<_, String>(4)?),
                    stalled: row.get::<_, i64>(5)? != 0,
                    picked_up: row.get::<_, i64>(6)? != 0,
                })
            })?;
            rows.collect()
        })
    }

    /// Records that the device took a file, or that it has sat too long, with the event
    /// report the server is owed, in one transaction.
    pub fn record_pickup_event(&self, file: &AwaitingPickup, event: EventRequest) -> Result<()> {
        let change = match event.event {
            FileEvent::PickedUp => "picked_up = 1",
            FileEvent::Stalled => "stalled = 1",
            FileEvent::Accepted => "picked_up = 1, verdict = 'accepted'",
            FileEvent::Rejected => "picked_up = 1, verdict = 'rejected'",
        };
        let now = now_text();
        self.with(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                &format!("UPDATE files SET {change} WHERE delivery = ?1 AND idx = ?2"),
                params![file.delivery, file.index as i64],
            )?;
            reports::insert(&tx, &file.delivery, &Owed::Event(event), &now)?;
            tx.commit()
        })
    }
}
