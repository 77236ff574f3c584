//! Orders and their jobs: creating them, their files, and the approval workflow a job
//! goes through before it may be sent.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::{refuse, unknown_job, ErrorKind, ModelError};
use super::store::StoreOrder;
use super::Model;
use crate::protocol;

/// The states a job goes through on the job side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    InProgress,
    AwaitingApproval,
    Approved,
    OnHold,
    Archived,
    SendingToProduction,
    SentToProduction,
    ProductionError,
    /// A store order's job whose deliveries are all complete: it waits for its order
    /// to be closed out (seed 002).
    WaitingForOrderCloseout,
    /// Done: its order is closed out.
    Completed,
    /// Kept for later: its order is closed out.
    Retained,
}

impl JobState {
    /// The state as a person reads it in a message.
    pub fn label(self) -> &'static str {
        match self {
            JobState::InProgress => "in progress",
            JobState::AwaitingApproval => "awaiting approval",
            JobState::Approved => "approved",
            JobState::OnHold => "on hold",
            JobState::Archived => "archived",
            JobState::SendingToProduction => "sending to production",
            JobState::SentToProduction => "sent to production",
            JobState::ProductionError => "in production error",
            JobState::WaitingForOrderCloseout => "waiting for order closeout",
            JobState::Completed => "completed",
            JobState::Retained => "retained",
        }
    }

    /// The state as it travels on the wire (`sent_to_production`).
    pub fn code(self) -> String {
        protocol::wire_name(&self)
    }
}

/// Where a job file's bytes are: on this server, or behind an absolute URL elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "url")]
pub enum FileLocation {
    Stored,
    External(String),
}

/// One production file of a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobFile {
    pub id: String,
    pub name: String,
    pub size: i64,
    pub sha256: String,
    pub location: FileLocation,
    #[serde(default)]
    pub role: protocol::FileRole,
}

/// A job: one printable item of an order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub name: String,
    pub order_number: Option<String>,
    pub state: JobState,
    /// Queues chosen in the job's configuration, preselected when sending.
    pub queues: Vec<String>,
    pub files: Vec<JobFile>,
    pub send_count: u32,
    /// Why the job is in production error.
    pub error: Option<String>,
    /// AutoSend approved the job but it has no queue yet.
    pub awaiting_queue: bool,
    /// Who ordered it (protocol 1.1).
    #[serde(default)]
    pub customer: Option<String>,
    /// What the device needs to produce it (protocol 1.1).
    #[serde(default)]
    pub ticket: Option<protocol::JobTicket>,
}

/// An order: a customer's purchase of one or more jobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub number: String,
    /// Queues chosen in the order's configuration, preselected for its jobs.
    pub queues: Vec<String>,
    pub jobs: Vec<String>,
    /// What the store sent, for an order that came from one.
    #[serde(default)]
    pub store: Option<StoreOrder>,
}

/// A file to attach to a new job.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub name: String,
    pub size: i64,
    pub sha256: String,
    pub location: FileLocation,
    pub role: protocol::FileRole,
}

/// The numeric part of a job id, so J-999 sorts before J-1000.
pub(super) fn job_number(id: &str) -> u64 {
    id.trim_start_matches("J-").parse().unwrap_or(u64::MAX)
}

/// Refuses an order number a person could not use: empty, with control characters, or
/// `.` and `..`, which a browser would read as a step in the page's path.
pub fn check_order_number(number: &str) -> Result<(), ModelError> {
    if number.trim().is_empty()
        || matches!(number, "." | "..")
        || number.chars().any(char::is_control)
    {
        return Err(refuse(
            ErrorKind::Invalid,
            "invalid_order_number",
            format!(
                "{number:?} cannot be an order number: give letters or digits, such as MC-5521"
            ),
        ));
    }
    Ok(())
}

impl Model {
    pub(super) fn job(&self, id: &str) -> Result<&Job, ModelError> {
        self.jobs.get(id).ok_or_else(|| unknown_job(id))
    }

    pub(super) fn job_mut(&mut self, id: &str) -> Result<&mut Job, ModelError> {
        self.jobs.get_mut(id).ok_or_else(|| unknown_job(id))
    }

    /// Creates an order, or sets the preselected queues of an existing one.
    pub fn upsert_order(&mut self, number: &str, queues: Option<Vec<String>>) -> &Order {
        let order = self.order_entry(number);
        if let Some(queues) = queues {
            order.queues = queues;
        }
        order
    }

    pub(super) fn order_entry(&mut self, number: &str) -> &mut Order {
        self.orders
            .entry(number.to_string())
            .or_insert_with(|| Order {
                number: number.to_string(),
                queues: Vec::new(),
                jobs: Vec::new(),
                store: None,
            })
    }

    /// Creates a job in progress, in `order_number`'s order (made if needed).
    pub fn create_job(
        &mut self,
        name: &str,
        order_number: Option<&str>,
        queues: Vec<String>,
        files: Vec<NewFile>,
    ) -> Result<&Job, ModelError> {
        if name.trim().is_empty() {
            return Err(refuse(
                ErrorKind::Invalid,
                "invalid_job",
                "a job needs a name",
            ));
        }
        if let Some(number) = order_number {
            check_order_number(number)?;
        }
        let id = format!("J-{}", self.next_job);
        self.next_job += 1;
        if let Some(number) = order_number {
            self.order_entry(number).jobs.push(id.clone());
        }
        let files = files
            .into_iter()
            .map(|file| {
                let file_id = format!("F-{}", self.next_file);
                self.next_file += 1;
                JobFile {
                    id: file_id,
                    name: file.name,
                    size: file.size,
                    sha256: file.sha256,
                    location: file.location,
                    role: file.role,
                }
            })
            .collect();
        let job = Job {
            id: id.clone(),
            name: name.to_string(),
            order_number: order_number.map(String::from),
            state: JobState::InProgress,
            queues,
            files,
            send_count: 0,
            error: None,
            awaiting_queue: false,
            customer: None,
            ticket: None,
        };
        Ok(self.jobs.entry(id).or_insert(job))
    }

    /// Attaches one more file to a job that has not gone to production yet.
    pub fn add_file(&mut self, job_id: &str, file: NewFile) -> Result<JobFile, ModelError> {
        let file_id = format!("F-{}", self.next_file);
        let job = self.job_mut(job_id)?;
        if !matches!(
            job.state,
            JobState::InProgress | JobState::AwaitingApproval | JobState::OnHold
        ) {
            return Err(refuse(
                ErrorKind::Conflict,
                "invalid_state",
                format!(
                    "job {job_id} is {}; files can only be added before approval",
                    job.state.label()
                ),
            ));
        }
        let file = JobFile {
            id: file_id,
            name: file.name,
            size: file.size,
            sha256: file.sha256,
            location: file.location,
            role: file.role,
        };
        job.files.push(file.clone());
        self.next_file += 1;
        Ok(file)
    }

    /// Sets who ordered a job and what its device needs (protocol 1.1), until it goes
    /// to production: a send carries what the job had then.
    pub fn set_job_ticket(
        &mut self,
        job_id: &str,
        customer: Option<String>,
        ticket: Option<protocol::JobTicket>,
    ) -> Result<(), ModelError> {
        let job = self.job_mut(job_id)?;
        job.customer = customer.filter(|name| !name.trim().is_empty());
        job.ticket = ticket;
        Ok(())
    }

    /// Moves a job in progress to awaiting approval.
    pub fn request_approval(&mut self, job_id: &str) -> Result<(), ModelError> {
        self.transition(
            job_id,
            &[JobState::InProgress],
            JobState::AwaitingApproval,
            "requested for approval",
        )
    }

    /// Approves a job; with AutoSend on it goes to production at once.
    pub fn approve(&mut self, job_id: &str, now: OffsetDateTime) -> Result<(), ModelError> {
        self.transition(
            job_id,
            &[
                JobState::InProgress,
                JobState::AwaitingApproval,
                JobState::OnHold,
            ],
            JobState::Approved,
            "approved",
        )?;
        if self.settings.autosend {
            self.autosend(job_id, now);
        }
        Ok(())
    }

    /// Puts a job on hold.
    pub fn hold(&mut self, job_id: &str) -> Result<(), ModelError> {
        self.transition(
            job_id,
            &[
                JobState::InProgress,
                JobState::AwaitingApproval,
                JobState::Approved,
            ],
            JobState::OnHold,
            "put on hold",
        )
    }

    /// Archives a job that is not on its way to production.
    pub fn archive(&mut self, job_id: &str) -> Result<(), ModelError> {
        self.transition(
            job_id,
            &[
                JobState::InProgress,
                JobState::AwaitingApproval,
                JobState::Approved,
                JobState::OnHold,
                JobState::SentToProduction,
                JobState::ProductionError,
            ],
            JobState::Archived,
            "archived",
        )
    }

    pub(super) fn transition(
        &mut self,
        job_id: &str,
        from: &[JobState],
        to: JobState,
        verb: &str,
    ) -> Result<(), ModelError> {
        let job = self.job_mut(job_id)?;
        if !from.contains(&job.state) {
            return Err(refuse(
                ErrorKind::Conflict,
                "invalid_state",
                format!("job {job_id} is {} and cannot be {verb}", job.state.label()),
            ));
        }
        job.state = to;
        Ok(())
    }

    /// Sets the queues preselected for a job. A job that AutoSend holds for lack of a
    /// queue goes now.
    pub fn set_job_queues(
        &mut self,
        job_id: &str,
        queues: Vec<String>,
        now: OffsetDateTime,
    ) -> Result<(), ModelError> {
        self.job_mut(job_id)?.queues = queues;
        self.release_awaiting(now);
        Ok(())
    }

    /// Sets the queues preselected for an order's jobs, releasing jobs held by AutoSend.
    pub fn set_order_queues(&mut self, number: &str, queues: Vec<String>, now: OffsetDateTime) {
        self.upsert_order(number, Some(queues));
        self.release_awaiting(now);
    }

    /// The queues a send without an explicit choice would use: the job's, else its order's.
    pub fn preselected_queues(&self, job: &Job) -> Vec<String> {
        if !job.queues.is_empty() {
            return job.queues.clone();
        }
        job.order_number
            .as_ref()
            .and_then(|number| self.orders.get(number))
            .map(|order| order.queues.clone())
            .unwrap_or_default()
    }

    /// Jobs sorted by order number (jobs without one last), then by id.
    pub fn jobs_by_order(&self) -> Vec<&Job> {
        let mut jobs: Vec<&Job> = self.jobs.values().collect();
        jobs.sort_by(|a, b| {
            (a.order_number.is_none(), &a.order_number, job_number(&a.id)).cmp(&(
                b.order_number.is_none(),
                &b.order_number,
                job_number(&b.id),
            ))
        });
        jobs
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{announce, approved_job, at, model};
    use crate::mockserver::model::SettingsChange;

    #[test]
    fn a_job_on_its_way_to_production_can_neither_be_held_nor_archived() {
        let mut model = model();
        announce(&mut model, "agent-1", &["indigo"], at(0));
        let job = approved_job(&mut model, &["indigo"], at(0));
        model
            .send("owner", std::slice::from_ref(&job), None, at(1))
            .unwrap();
        assert_eq!(model.hold(&job).unwrap_err().code, "invalid_state");
        let refused = model.archive(&job).unwrap_err();
        assert!(
            refused.message.contains("sending to production"),
            "{refused:?}"
        );
    }

    #[test]
    fn an_archived_job_is_never_approved_again() {
        let mut model = model();
        let job = model
            .create_job("Flyer", None, Vec::new(), Vec::new())
            .unwrap()
            .id
            .clone();
        model.archive(&job).unwrap();
        assert_eq!(
            model.approve(&job, at(0)).unwrap_err().code,
            "invalid_state"
        );
    }

    #[test]
    fn autosend_waits_for_a_queue_and_sends_once_the_order_has_one() {
        let mut model = model();
        model.change_settings(
            &SettingsChange {
                autosend: Some(true),
                ..SettingsChange::default()
            },
            at(0),
        );
        announce(&mut model, "agent-1", &["indigo"], at(0));
        let job = approved_job(&mut model, &[], at(1));
        assert!(model.jobs[&job].awaiting_queue);
        assert!(model.deliveries.is_empty());
        model.set_order_queues("MC-1", vec!["indigo".into()], at(2));
        assert!(!model.jobs[&job].awaiting_queue);
        assert_eq!(model.deliveries.len(), 1);
    }
}
