//! Dropped files the device has not taken yet, and the events that say it did.

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
}

impl Journal {
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
    pub fn record_pickup_event(&self, file: &AwaitingPickup, event: EventRequest) -> Result<()> {
        let column = match event.event {
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
            reports::insert(&tx, &file.delivery, &Owed::Event(event), &now)?;
            tx.commit()
        })
    }
}
