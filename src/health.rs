//! Whether all is well with the agent of one journal, judged the way monitoring checks
//! on a print floor expect it (Nagios, Icinga, Zabbix): OK, WARNING, CRITICAL or
//! UNKNOWN, with the reasons in words. `tbot status` prints it first and exits with it.

use std::time::Duration;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::status::Status;

/// Reports waiting longer than this are worth a warning: the job side does not know
/// what reached the floor.
const REPORTS_LATE_AFTER: time::Duration = time::Duration::hours(1);

/// A server unreachable for this many check intervals is critical: nothing new can
/// reach the floor.
const UNREACHABLE_CHECKS: u32 = 3;

/// The monitoring-plugin states, worst last; each is the exit code of `tbot status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl State {
    /// The word monitoring checks start their line with.
    pub fn word(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Critical => "CRITICAL",
            State::Unknown => "UNKNOWN",
        }
    }
}

/// The verdict and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub state: State,
    /// What is wrong, worst first; empty when all is well.
    pub reasons: Vec<String>,
}

impl Health {
    /// One line for a monitoring check: `CRITICAL: no agent is running ...`.
    pub fn line(&self, status: &Status) -> String {
        if self.reasons.is_empty() {
            let ready = status.queues.len();
            return format!(
                "OK: agent {} running (process {}), {ready} queue(s) ready",
                status.agent,
                status.running_pid.unwrap_or_default()
            );
        }
        format!("{}: {}", self.state.word(), self.reasons.join("; "))
    }
}

/// Judges `status` at `now`, for an agent checking in every `check_interval`.
pub fn judge(status: &Status, now: OffsetDateTime, check_interval: Duration) -> Health {
    let mut found: Vec<(State, String)> = Vec::new();
    if status.running_pid.is_none() {
        found.push((
            State::Critical,
            format!(
                "no tbot agent is running with the journal {}",
                status.journal
            ),
        ));
    }
    if let (Some(error), Some(since)) = (&status.server.error, &status.server.error_since) {
        let limit = check_interval.saturating_mul(UNREACHABLE_CHECKS);
        let failing_for = parse(since).map(|since| now - since);
        if failing_for.is_some_and(|failing| failing > limit) {
            found.push((
                State::Critical,
                format!("cannot reach the server since {since}: {error}"),
            ));
        }
    }
    for queue in &status.queues {
        let detail = queue.detail.as_deref().unwrap_or("");
        match queue.status.as_deref() {
            Some("unavailable") => found.push((
                State::Critical,
                format!("queue {} unavailable: {detail}", queue.name),
            )),
            Some("stalled") => found.push((
                State::Warning,
                format!("queue {} stalled: {detail}", queue.name),
            )),
            _ => {}
        }
    }
    let waiting = status
        .queues
        .iter()
        .flat_map(|queue| &queue.waiting_reports)
        .chain(&status.other_reports);
    let (mut late, mut stuck) = (0, 0);
    for report in waiting {
        if parse(&report.since).is_some_and(|since| now - since > REPORTS_LATE_AFTER) {
            late += 1;
        }
        if report.stuck {
            stuck += 1;
        }
    }
    if late > 0 {
        found.push((
            State::Warning,
            format!("{late} report(s) waiting for the server for more than an hour"),
        ));
    }
    if stuck > 0 {
        found.push((
            State::Warning,
            format!("{stuck} report(s) stuck: the server's answers cannot be read"),
        ));
    }
    found.sort_by_key(|(state, _)| std::cmp::Reverse(*state));
    Health {
        state: found.first().map_or(State::Ok, |(state, _)| *state),
        reasons: found.into_iter().map(|(_, reason)| reason).collect(),
    }
}

fn parse(rfc3339: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(rfc3339, &Rfc3339).ok()
}
