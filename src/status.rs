//! `tbot status`: what the agent is doing and has done, per queue, read from the
//! journal. It opens the journal read-only, so it works beside a running daemon.

use bytesize::ByteSize;
use rusqlite::{params, Connection};
use serde::Serialize;

use time::OffsetDateTime;

use crate::agent::journal::{Journal, ServerContact, JOURNAL_FILE, STUCK_AFTER};
use crate::agent::journal_lock::running_agent;
use crate::config::Config;
use crate::health::{judge, Health, State};
use crate::logging::{printable, Escape};
use crate::protocol::wire_name;

/// How many recent drops and failures are shown per queue.
const RECENT: usize = 10;

/// The whole picture, as `tbot status --json` prints it.
#[derive(Debug, Serialize)]
pub struct Status {
    /// All well or not, for monitoring: `tbot status` exits with its state.
    pub health: Health,
    pub agent: String,
    pub journal: String,
    /// The process id of the agent running with this journal, if one is.
    pub running_pid: Option<u32>,
    /// When the agent last reached the server, or since when it cannot.
    pub server: ServerContact,
    pub queues: Vec<QueueStatus>,
    /// Reports owed for deliveries too malformed to belong to a queue.
    pub other_reports: Vec<WaitingReport>,
}

/// One queue's part.
#[derive(Debug, Serialize)]
pub struct QueueStatus {
    pub name: String,
    pub kind: String,
    pub hotfolder: String,
    /// As last announced by the agent: ready, unavailable or stalled.
    pub status: Option<String>,
    pub detail: Option<String>,
    pub in_flight: Vec<InFlight>,
    pub waiting_reports: Vec<WaitingReport>,
    pub recent_drops: Vec<Drop>,
    pub failures: Vec<Failure>,
}

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

#[derive(Debug, Serialize)]
pub struct Drop {
    pub delivery: String,
    pub job: String,
    pub order_number: Option<String>,
    pub at: String,
    pub reported: bool,
    pub paths: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Failure {
    pub delivery: String,
    pub job: String,
    pub at: String,
    pub step: String,
    pub reason: String,
}

/// Reads the status of every configured queue from the journal in `state_dir`.
pub fn read(config: &Config) -> anyhow::Result<Status> {
    let path = config.agent.state_dir.join(JOURNAL_FILE);
    if !path.exists() {
        anyhow::bail!(
            "no journal at {}: the agent has not run with this configuration yet (agent.state_dir)",
            path.display()
        );
    }
    let journal = Journal::open_read_only(&config.agent.state_dir)?;
    let status = journal.read(|conn| {
        let mut queues = Vec::new();
        for queue in &config.queues {
            let (status, detail) = conn
                .query_row(
                    "SELECT status, detail FROM queues WHERE name = ?1",
                    params![queue.name],
                    |row| Ok((Some(row.get(0)?), row.get(1)?)),
                )
                .unwrap_or((None, None));
            queues.push(QueueStatus {
                name: queue.name.clone(),
                kind: wire_name(&queue.kind),
                hotfolder: queue.hotfolder.display().to_string(),
                status,
                detail,
                in_flight: in_flight(conn, &queue.name)?,
                waiting_reports: waiting_reports(conn, Some(&queue.name))?,
                recent_drops: recent_drops(conn, &queue.name)?,
                failures: failures(conn, &queue.name)?,
            });
        }
        Ok(Status {
            health: Health {
                state: State::Ok,
                reasons: Vec::new(),
            },
            agent: config.agent.name.clone(),
            journal: path.display().to_string(),
            running_pid: running_agent(&config.agent.state_dir),
            server: ServerContact::default(),
            queues,
            other_reports: waiting_reports(conn, None)?,
        })
    })?;
    let mut status = status;
    status.server = journal.server_contact()?;
    status.health = judge(
        &status,
        OffsetDateTime::now_utc(),
        config.server.check_interval,
    );
    Ok(status)
}

fn in_flight(conn: &Connection, queue: &str) -> rusqlite::Result<Vec<InFlight>> {
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
}

fn waiting_reports(conn: &Connection, queue: Option<&str>) -> rusqlite::Result<Vec<WaitingReport>> {
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
}

fn recent_drops(conn: &Connection, queue: &str) -> rusqlite::Result<Vec<Drop>> {
    let mut statement = conn.prepare(
        "SELECT d.id, d.job, d.order_number, d.updated_at, d.step,
                (SELECT group_concat(f.drop_name, char(10)) FROM files f WHERE f.delivery = d.id AND f.dropped = 1)
         FROM deliveries d WHERE d.queue = ?1 AND d.step IN ('dropped', 'reported')
         ORDER BY d.updated_at DESC LIMIT ?2",
    )?;
    let rows = statement.query_map(params![queue, RECENT as i64], |row| {
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
}

fn failures(conn: &Connection, queue: &str) -> rusqlite::Result<Vec<Failure>> {
    let mut statement = conn.prepare(
        "SELECT id, job, updated_at, step, COALESCE(reason, '') FROM deliveries
         WHERE queue = ?1 AND step IN ('failed', 'lease_lost') ORDER BY updated_at DESC LIMIT ?2",
    )?;
    let rows = statement.query_map(params![queue, RECENT as i64], |row| {
        Ok(Failure {
            delivery: row.get(0)?,
            job: row.get(1)?,
            at: row.get(2)?,
            step: row.get(3)?,
            reason: row.get(4)?,
        })
    })?;
    rows.collect()
}

/// The status as a person reads it, one line per line.
pub fn render(status: &Status) -> String {
    let mut out: Vec<String> = Vec::new();
    out.push(status.health.line(status));
    out.push(String::new());
    let running = match status.running_pid {
        Some(pid) => format!("running, process {pid}"),
        None => "not running".into(),
    };
    out.push(format!(
        "tbot agent {} ({running}; journal {})",
        status.agent, status.journal
    ));
    let server = &status.server;
    match (&server.error, &server.error_since, &server.reached_at) {
        (Some(error), Some(since), _) => out.push(format!(
            "server: cannot be reached since {}: {error}",
            short_time(since)
        )),
        (_, _, Some(reached)) => out.push(format!("server: last reached {}", short_time(reached))),
        _ => out.push("server: not reached yet".into()),
    }
    for queue in &status.queues {
        let state = match (&queue.status, &queue.detail) {
            (Some(status), Some(detail)) => format!("{status}: {detail}"),
            (Some(status), None) => status.clone(),
            (None, _) => "not yet announced".into(),
        };
        out.push(String::new());
        out.push(format!(
            "queue {} ({}, {}) - {state}",
            queue.name, queue.kind, queue.hotfolder
        ));
        if queue.in_flight.is_empty()
            && queue.waiting_reports.is_empty()
            && queue.recent_drops.is_empty()
            && queue.failures.is_empty()
        {
            out.push("  nothing yet".to_string());
        }
        if !queue.in_flight.is_empty() {
            out.push("  in flight:".to_string());
            for item in &queue.in_flight {
                let percent = (item.received * 100).checked_div(item.size).unwrap_or(100);
                out.push(format!(
                    "    {}  job {}{}  {}  {} of {} ({percent}%), {} file(s)",
                    item.delivery,
                    item.job,
                    order_suffix(&item.order_number),
                    item.step,
                    ByteSize(item.received),
                    ByteSize(item.size),
                    item.files
                ));
            }
        }
        print_reports(
            &mut out,
            "  waiting to be reported:",
            &queue.waiting_reports,
        );
        if !queue.recent_drops.is_empty() {
            out.push("  recent drops:".to_string());
            for drop in &queue.recent_drops {
                out.push(format!(
                    "    {}  {}  job {}{}{}  {}",
                    short_time(&drop.at),
                    drop.delivery,
                    drop.job,
                    order_suffix(&drop.order_number),
                    if drop.reported {
                        ""
                    } else {
                        "  (report pending)"
                    },
                    drop.paths.join(", ")
                ));
            }
        }
        if !queue.failures.is_empty() {
            out.push("  failures:".to_string());
            for failure in &queue.failures {
                out.push(format!(
                    "    {}  {}  job {}  {}: {}",
                    short_time(&failure.at),
                    failure.delivery,
                    failure.job,
                    failure.step,
                    failure.reason
                ));
            }
        }
    }
    if !status.other_reports.is_empty() {
        out.push(String::new());
        print_reports(
            &mut out,
            "reports waiting for deliveries the server sent malformed:",
            &status.other_reports,
        );
    }
    // Ids, names and reasons come from the server and hotfolders: shown as what they
    // are, never as terminal controls or extra lines.
    out.iter()
        .map(|line| printable(line, Escape::Text { keep_colour: false }) + "\n")
        .collect()
}

fn print_reports(out: &mut Vec<String>, title: &str, reports: &[WaitingReport]) {
    if reports.is_empty() {
        return;
    }
    out.push(title.to_string());
    for report in reports {
        let error = report
            .last_error
            .as_deref()
            .map(|e| format!(", last error: {e}"))
            .unwrap_or_default();
        out.push(format!(
            "    {}  {} since {}, {} attempt(s){}{error}",
            report.delivery,
            report.kind,
            short_time(&report.since),
            report.attempts,
            if report.stuck { ", STUCK" } else { "" }
        ));
    }
}

/// `2026-11-21T10:07:12.123Z` as `2026-11-21 10:07:12`, for reading at a glance.
fn short_time(rfc3339: &str) -> String {
    rfc3339.get(..19).unwrap_or(rfc3339).replace('T', " ")
}

fn order_suffix(order: &Option<String>) -> String {
    order
        .as_ref()
        .map(|o| format!(" (order {o})"))
        .unwrap_or_default()
}
