//! `tbot status`: what the agent is doing and has done, per queue, read from the
//! journal. It opens the journal read-only, so it works beside a running daemon.

use bytesize::ByteSize;
use serde::Serialize;
use time::OffsetDateTime;

use crate::agent::journal::{
    Drop, Failure, InFlight, Journal, ServerContact, WaitingReport, JOURNAL_FILE,
};
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
    let mut queues = Vec::new();
    for queue in &config.queues {
        let (status, detail) = journal.announced_status(&queue.name)?;
        queues.push(QueueStatus {
            name: queue.name.clone(),
            kind: wire_name(&queue.kind),
            hotfolder: queue.hotfolder.display().to_string(),
            status,
            detail,
            in_flight: journal.in_flight(&queue.name)?,
            waiting_reports: journal.waiting_reports(Some(&queue.name))?,
            recent_drops: journal.recent_drops(&queue.name, RECENT)?,
            failures: journal.recent_failures(&queue.name, RECENT)?,
        });
    }
    let status = Status {
        health: Health {
            state: State::Ok,
            reasons: Vec::new(),
        },
        agent: config.agent.name.clone(),
        journal: path.display().to_string(),
        running_pid: running_agent(&config.agent.state_dir),
        server: ServerContact::default(),
        queues,
        other_reports: journal.waiting_reports(None)?,
    };
    let mut status = status;
    status.server = journal.server_contact()?;
    status.health = judge(
        &status,
        OffsetDateTime::now_utc(),
        config.server.check_interval,
    );
    Ok(status)
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
