//! What the journal knows of the agent beside its deliveries: its id, the job side it
//! belongs to, how the server was last reached, each queue's last status.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{now_text, set_meta, Journal, Result};

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

impl Journal {
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
}
