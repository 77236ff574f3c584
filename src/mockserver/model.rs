//! The bundled job side's state: users, orders, jobs, queues and deliveries, and the
//! rules that move them. Plain data and plain functions: no I/O, and the time is always
//! passed in, so tests move the clock instead of waiting 48 hours.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::protocol::{self, DroppedFile, FileEvent, HeartbeatRequest, QueueKind, QueueStatus};

/// Server settings a person can change.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// A queue with no heartbeat for this long is not connected and cannot be chosen.
    #[serde(with = "humantime_serde")]
    pub queue_ttl: Duration,
    /// How long a claim leases a delivery to one agent.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How long a delivery failed as retryable waits before it can be claimed again.
    #[serde(with = "humantime_serde")]
    pub retry_hold: Duration,
    /// Every approved job goes to production without anyone sending it.
    pub autosend: bool,
    /// Claims with `wait_s` are held open until work comes (long polling); off, the
    /// server answers every claim at once, as a server without long polling would.
    pub hold_claims: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            queue_ttl: Duration::from_secs(48 * 3600),
            lease: Duration::from_secs(300),
            retry_hold: Duration::from_secs(60),
            autosend: false,
            hold_claims: true,
        }
    }
}

/// A change to some settings; what is not given stays as it is. Read from the mock
/// server's settings file, the operator API and the command line alike.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsChange {
    pub autosend: Option<bool>,
    pub hold_claims: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    pub queue_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub lease: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub retry_hold: Option<Duration>,
}

impl Settings {
    /// Applies the durations and the AutoSend switch of `change`. Turning AutoSend on
    /// for a running server also sends approved jobs: use [`Model::change_settings`].
    pub fn apply(&mut self, change: &SettingsChange) {
        if let Some(ttl) = change.queue_ttl {
            self.queue_ttl = ttl;
        }
        if let Some(lease) = change.lease {
            self.lease = lease;
        }
        if let Some(hold) = change.retry_hold {
            self.retry_hold = hold;
        }
        if let Some(on) = change.autosend {
            self.autosend = on;
        }
        if let Some(hold) = change.hold_claims {
            self.hold_claims = hold;
        }
    }
}

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
        }
    }

    /// The state as it travels on the wire (`sent_to_production`).
    pub fn code(self) -> String {
        protocol::wire_name(&self)
    }
}

/// A user profile: what the people who have it may do.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub send_to_production: bool,
}

/// The profiles every server starts with. Only site owners may send to production.
pub fn default_profiles() -> BTreeMap<String, Profile> {
    [
        ("site_owner", true),
        ("administrator", false),
        ("designer", false),
        ("customer_service", false),
    ]
    .into_iter()
    .map(|(name, send)| {
        (
            name.to_string(),
            Profile {
                send_to_production: send,
            },
        )
    })
    .collect()
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
}

/// An order: a customer's purchase of one or more jobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub number: String,
    /// Queues chosen in the order's configuration, preselected for its jobs.
    pub queues: Vec<String>,
    pub jobs: Vec<String>,
}

/// Where a delivery is in its life on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum DeliveryState {
    Pending {
        #[serde(with = "time::serde::rfc3339::option")]
        not_before: Option<OffsetDateTime>,
    },
    Leased {
        agent: String,
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
    },
    Completed {
        agent: String,
        files: Vec<DroppedFile>,
    },
    Failed {
        agent: String,
        reason: String,
    },
}

/// What an agent told the server about a dropped file afterwards.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub event: FileEvent,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub path: String,
}

/// One job's files going to one queue, once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub job: String,
    pub queue: String,
    pub send_count: u32,
    #[serde(flatten)]
    pub state: DeliveryState,
    /// Times this delivery was leased, so tests can see hand-outs after an expiry.
    pub leases: u32,
    /// The reason an agent gave the last time it failed this delivery.
    pub last_failure: Option<String>,
    pub events: Vec<RecordedEvent>,
}

/// A queue as the server knows it from heartbeats.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Queue {
    pub name: String,
    pub kind: QueueKind,
    pub status: QueueStatus,
    pub detail: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub last_heartbeat: OffsetDateTime,
    /// The agents serving it, by the names their tokens have here: they decide leases.
    pub agents: BTreeSet<String>,
    /// The same agents by the names they are configured with, for a person.
    #[serde(default)]
    pub agent_names: BTreeSet<String>,
}

/// An agent as its last heartbeat showed it: the name it is configured with (its
/// `[agent] name`, which a person recognises), its token's name here, its version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentSeen {
    pub name: String,
    pub token_name: String,
    pub version: String,
    #[serde(with = "time::serde::rfc3339")]
    pub last_heartbeat: OffsetDateTime,
}

/// What kind of refusal an error is, so the HTTP edge can pick a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Forbidden,
    Conflict,
    Invalid,
}

/// A refused action: a kind, a stable code and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub message: String,
}

fn refuse(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> ModelError {
    ModelError {
        kind,
        code,
        message: message.into(),
    }
}

fn unknown_job(id: &str) -> ModelError {
    refuse(
        ErrorKind::NotFound,
        "unknown_job",
        format!("there is no job {id}"),
    )
}

/// The outcome of sending one job, in a multi-job send.
#[derive(Debug, Clone, Serialize)]
pub struct SendResult {
    pub job: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A file to attach to a new job.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub name: String,
    pub size: i64,
    pub sha256: String,
    pub location: FileLocation,
}

/// The whole state of the job side. What is serialized is the work (orders, jobs,
/// deliveries, queues and the next ids), which a restarted server can take back with
/// [`Model::restore_work`]; settings, profiles and users come from start-up.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Model {
    #[serde(skip)]
    pub settings: Settings,
    #[serde(skip)]
    pub profiles: BTreeMap<String, Profile>,
    /// User name to profile name.
    #[serde(skip)]
    pub users: BTreeMap<String, String>,
    pub orders: BTreeMap<String, Order>,
    pub jobs: BTreeMap<String, Job>,
    pub deliveries: BTreeMap<String, Delivery>,
    pub queues: BTreeMap<String, Queue>,
    /// The agents heard from: one per token and configured name, since agents may
    /// share a token.
    #[serde(default)]
    pub agents: Vec<AgentSeen>,
    /// Deliveries in the order they were made, oldest first, for fair claims.
    delivery_order: Vec<String>,
    next_job: u64,
    next_file: u64,
    next_delivery: u64,
}

impl Model {
    pub fn new(settings: Settings) -> Model {
        Model {
            settings,
            profiles: default_profiles(),
            next_job: 1001,
            next_file: 1,
            next_delivery: 1,
            ..Model::default()
        }
    }

    /// Takes the work of a saved model, keeping this one's settings, profiles and users.
    pub fn restore_work(&mut self, saved: Model) {
        *self = Model {
            settings: std::mem::take(&mut self.settings),
            profiles: std::mem::take(&mut self.profiles),
            users: std::mem::take(&mut self.users),
            ..saved
        };
    }

    /// Adds a user with a profile; the profile must exist.
    pub fn add_user(&mut self, name: &str, profile: &str) -> Result<(), ModelError> {
        if !self.profiles.contains_key(profile) {
            return Err(refuse(
                ErrorKind::Invalid,
                "unknown_profile",
                format!(
                    "user {name}: there is no profile {profile:?} (profiles: {})",
                    self.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        self.users.insert(name.to_string(), profile.to_string());
        Ok(())
    }

    fn job(&self, id: &str) -> Result<&Job, ModelError> {
        self.jobs.get(id).ok_or_else(|| unknown_job(id))
    }

    fn job_mut(&mut self, id: &str) -> Result<&mut Job, ModelError> {
        self.jobs.get_mut(id).ok_or_else(|| unknown_job(id))
    }

    // ----- what a person does -------------------------------------------------------

    /// Creates an order, or sets the preselected queues of an existing one.
    pub fn upsert_order(&mut self, number: &str, queues: Option<Vec<String>>) -> &Order {
        let order = self.order_entry(number);
        if let Some(queues) = queues {
            order.queues = queues;
        }
        order
    }

    fn order_entry(&mut self, number: &str) -> &mut Order {
        self.orders
            .entry(number.to_string())
            .or_insert_with(|| Order {
                number: number.to_string(),
                queues: Vec::new(),
                jobs: Vec::new(),
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
        };
        job.files.push(file.clone());
        self.next_file += 1;
        Ok(file)
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

    fn transition(
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

    /// Changes settings on a running server. Turning AutoSend on sends every job
    /// already approved.
    pub fn change_settings(&mut self, change: &SettingsChange, now: OffsetDateTime) {
        let was_on = self.settings.autosend;
        self.settings.apply(change);
        if self.settings.autosend && !was_on {
            let approved: Vec<String> = self
                .jobs
                .values()
                .filter(|job| job.state == JobState::Approved)
                .map(|job| job.id.clone())
                .collect();
            for id in approved {
                self.autosend(&id, now);
            }
        }
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

    fn autosend(&mut self, job_id: &str, now: OffsetDateTime) {
        let Some(job) = self.jobs.get(job_id) else {
            return;
        };
        let queues = self.preselected_queues(job);
        if queues.is_empty() {
            let job = self.jobs.get_mut(job_id).expect("job exists");
            job.state = JobState::SendingToProduction;
            job.awaiting_queue = true;
        } else {
            self.make_deliveries(job_id, &queues, now);
        }
    }

    fn release_awaiting(&mut self, now: OffsetDateTime) {
        let waiting: Vec<(String, Vec<String>)> = self
            .jobs
            .values()
            .filter(|job| job.awaiting_queue)
            .map(|job| (job.id.clone(), self.preselected_queues(job)))
            .filter(|(_, queues)| !queues.is_empty())
            .collect();
        for (id, queues) in waiting {
            self.make_deliveries(&id, &queues, now);
        }
    }

    /// Whether a queue has sent a heartbeat within `queue_ttl`.
    pub fn is_connected(&self, queue: &Queue, now: OffsetDateTime) -> bool {
        now - queue.last_heartbeat <= self.settings.queue_ttl
    }

    /// The queues a person can choose when sending: those connected now.
    pub fn connected_queues(&self, now: OffsetDateTime) -> Vec<&Queue> {
        self.queues
            .values()
            .filter(|queue| self.is_connected(queue, now))
            .collect()
    }

    /// Send to Production (or Send Again) for several jobs at once. `queues: None` uses
    /// each job's preselection. The user's permission is checked once for the request;
    /// every other rule is checked per job and reported per job.
    pub fn send(
        &mut self,
        user: &str,
        job_ids: &[String],
        queues: Option<&[String]>,
        now: OffsetDateTime,
    ) -> Result<Vec<SendResult>, ModelError> {
        self.check_send_permission(user)?;
        if job_ids.is_empty() {
            return Err(refuse(
                ErrorKind::Invalid,
                "no_jobs",
                "choose at least one job to send",
            ));
        }
        Ok(job_ids
            .iter()
            .map(|id| match self.send_one(id, queues, now) {
                Ok(deliveries) => SendResult {
                    job: id.clone(),
                    ok: true,
                    deliveries,
                    error: None,
                },
                Err(err) => SendResult {
                    job: id.clone(),
                    ok: false,
                    deliveries: Vec::new(),
                    error: Some(err.message),
                },
            })
            .collect())
    }

    fn check_send_permission(&self, user: &str) -> Result<(), ModelError> {
        let profile = self.users.get(user).ok_or_else(|| {
            refuse(
                ErrorKind::Forbidden,
                "unknown_user",
                format!("there is no user {user:?}"),
            )
        })?;
        let allowed = self
            .profiles
            .get(profile)
            .is_some_and(|p| p.send_to_production);
        if !allowed {
            return Err(refuse(
                ErrorKind::Forbidden,
                "permission_denied",
                format!(
                    "user {user} has profile {profile}, which does not have the send-to-production permission"
                ),
            ));
        }
        Ok(())
    }

    fn send_one(
        &mut self,
        job_id: &str,
        chosen: Option<&[String]>,
        now: OffsetDateTime,
    ) -> Result<Vec<String>, ModelError> {
        let job = self.job(job_id)?;
        if !matches!(
            job.state,
            JobState::Approved | JobState::SentToProduction | JobState::ProductionError
        ) {
            return Err(refuse(
                ErrorKind::Conflict,
                "invalid_state",
                format!(
                    "job {job_id} is {}; only an approved job can be sent to production",
                    job.state.label()
                ),
            ));
        }
        if job.files.is_empty() {
            return Err(refuse(
                ErrorKind::Conflict,
                "no_files",
                format!("job {job_id} has no files to send"),
            ));
        }
        let queues = match chosen {
            Some(queues) => queues.to_vec(),
            None => self.preselected_queues(job),
        };
        if queues.is_empty() {
            return Err(refuse(
                ErrorKind::Invalid,
                "no_queue",
                format!("job {job_id}: choose at least one queue to send to"),
            ));
        }
        for name in &queues {
            match self.queues.get(name) {
                Some(queue) if self.is_connected(queue, now) => {}
                Some(_) => {
                    return Err(refuse(
                        ErrorKind::Conflict,
                        "queue_not_connected",
                        format!(
                            "queue {name} is not connected: no agent has announced it for {}",
                            humantime::format_duration(self.settings.queue_ttl)
                        ),
                    ))
                }
                None => {
                    return Err(refuse(
                        ErrorKind::Conflict,
                        "unknown_queue",
                        format!("queue {name} is not known: no agent has announced it"),
                    ))
                }
            }
        }
        Ok(self.make_deliveries(job_id, &queues, now))
    }

    /// Marks a job for download: one new pending delivery per queue, one send higher.
    fn make_deliveries(
        &mut self,
        job_id: &str,
        queues: &[String],
        _now: OffsetDateTime,
    ) -> Vec<String> {
        let job = self.jobs.get_mut(job_id).expect("caller checked the job");
        job.send_count += 1;
        job.state = JobState::SendingToProduction;
        job.error = None;
        job.awaiting_queue = false;
        let send_count = job.send_count;
        let mut unique: Vec<&String> = Vec::new();
        for queue in queues {
            if !unique.contains(&queue) {
                unique.push(queue);
            }
        }
        let mut ids = Vec::new();
        for queue in unique {
            let id = format!("d-{}", self.next_delivery);
            self.next_delivery += 1;
            self.deliveries.insert(
                id.clone(),
                Delivery {
                    id: id.clone(),
                    job: job_id.to_string(),
                    queue: queue.clone(),
                    send_count,
                    state: DeliveryState::Pending { not_before: None },
                    leases: 0,
                    last_failure: None,
                    events: Vec::new(),
                },
            );
            self.delivery_order.push(id.clone());
            ids.push(id);
        }
        ids
    }

    /// Refuses sending an order as such: only jobs go to production.
    pub fn send_order(&self, number: &str) -> Result<(), ModelError> {
        let order = self.orders.get(number).ok_or_else(|| {
            refuse(
                ErrorKind::NotFound,
                "unknown_order",
                format!("there is no order {number}"),
            )
        })?;
        Err(refuse(
            ErrorKind::Invalid,
            "orders_cannot_be_sent",
            format!(
                "an order cannot be sent to production; send its jobs instead ({})",
                order.jobs.join(", ")
            ),
        ))
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

    // ----- what an agent does ----------------------------------------------------------

    /// Records a heartbeat of `agent` (the name its token gives it): the queues it
    /// names are connected from now on.
    pub fn heartbeat(&mut self, agent: &str, request: &HeartbeatRequest, now: OffsetDateTime) {
        let seen = AgentSeen {
            name: request.agent.clone(),
            token_name: agent.to_string(),
            version: request.version.clone(),
            last_heartbeat: now,
        };
        match self
            .agents
            .iter_mut()
            .find(|known| known.token_name == seen.token_name && known.name == seen.name)
        {
            Some(known) => *known = seen,
            None => self.agents.push(seen),
        }
        for announced in &request.queues {
            let queue = self
                .queues
                .entry(announced.name.clone())
                .or_insert_with(|| Queue {
                    name: announced.name.clone(),
                    kind: announced.kind,
                    status: announced.status,
                    detail: None,
                    last_heartbeat: now,
                    agents: BTreeSet::new(),
                    agent_names: BTreeSet::new(),
                });
            queue.kind = announced.kind;
            queue.status = announced.status;
            queue.detail = announced.detail.clone();
            queue.last_heartbeat = now;
            queue.agents.insert(agent.to_string());
            queue.agent_names.insert(request.agent.clone());
        }
    }

    /// Returns expired leases to pending.
    fn expire_leases(&mut self, now: OffsetDateTime) {
        for delivery in self.deliveries.values_mut() {
            if let DeliveryState::Leased { expires_at, .. } = delivery.state {
                if expires_at < now {
                    delivery.state = DeliveryState::Pending { not_before: None };
                }
            }
        }
    }

    /// Leases up to `max` pending deliveries, oldest first, for the named queues this
    /// agent has announced.
    pub fn claim(
        &mut self,
        agent: &str,
        queues: &[String],
        max: usize,
        now: OffsetDateTime,
    ) -> Vec<protocol::Delivery> {
        self.expire_leases(now);
        let served: BTreeSet<&String> = queues
            .iter()
            .filter(|name| {
                self.queues
                    .get(*name)
                    .is_some_and(|queue| queue.agents.contains(agent))
            })
            .collect();
        let expires_at = now + self.settings.lease;
        let mut claimed = Vec::new();
        for id in &self.delivery_order {
            if claimed.len() >= max {
                break;
            }
            let delivery = self.deliveries.get_mut(id).expect("ordered ids exist");
            let ready = match delivery.state {
                DeliveryState::Pending { not_before } => not_before.is_none_or(|t| t <= now),
                _ => false,
            };
            if ready && served.contains(&delivery.queue) {
                delivery.state = DeliveryState::Leased {
                    agent: agent.to_string(),
                    expires_at,
                };
                delivery.leases += 1;
                claimed.push(id.clone());
            }
        }
        claimed
            .iter()
            .filter_map(|id| self.wire_delivery(id))
            .collect()
    }

    /// Whether any delivery for these queues could be claimed now (for long polls).
    pub fn has_claimable(&self, queues: &[String], now: OffsetDateTime) -> bool {
        self.deliveries.values().any(|d| {
            queues.contains(&d.queue)
                && match &d.state {
                    DeliveryState::Pending { not_before } => not_before.is_none_or(|t| t <= now),
                    DeliveryState::Leased { expires_at, .. } => *expires_at < now,
                    _ => false,
                }
        })
    }

    /// A delivery as the agent sees it in a claim answer.
    fn wire_delivery(&self, id: &str) -> Option<protocol::Delivery> {
        let delivery = self.deliveries.get(id)?;
        let job = self.jobs.get(&delivery.job)?;
        let DeliveryState::Leased { expires_at, .. } = delivery.state else {
            return None;
        };
        Some(protocol::Delivery {
            id: delivery.id.clone(),
            queue: delivery.queue.clone(),
            lease_expires_at: expires_at,
            job: protocol::DeliveryJob {
                id: job.id.clone(),
                name: job.name.clone(),
                order_number: job.order_number.clone(),
                send_count: delivery.send_count,
            },
            files: job
                .files
                .iter()
                .map(|file| protocol::DeliveryFile {
                    name: file.name.clone(),
                    size: file.size,
                    sha256: file.sha256.clone(),
                    url: match &file.location {
                        FileLocation::Stored => {
                            format!("{}/files/{}", protocol::AGENT_API, file.id)
                        }
                        FileLocation::External(url) => url.clone(),
                    },
                })
                .collect(),
        })
    }

    fn delivery_mut(&mut self, id: &str) -> Result<&mut Delivery, ModelError> {
        self.deliveries.get_mut(id).ok_or_else(|| {
            refuse(
                ErrorKind::NotFound,
                "unknown_delivery",
                format!("there is no delivery {id}"),
            )
        })
    }

    /// Makes sure `agent` may act on delivery `id` now, taking a lapsed lease back if
    /// nobody else has it. Returns the delivery's current state for the caller to judge.
    fn hold_lease(
        &mut self,
        agent: &str,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<&mut Delivery, ModelError> {
        self.expire_leases(now);
        let lease = self.settings.lease;
        let delivery = self.delivery_mut(id)?;
        match &delivery.state {
            DeliveryState::Leased { agent: holder, .. } if holder == agent => {}
            DeliveryState::Pending { .. } => {}
            DeliveryState::Leased { .. } => {
                return Err(refuse(
                    ErrorKind::Conflict,
                    "lease_lost",
                    format!("delivery {id} is leased to another agent"),
                ))
            }
            DeliveryState::Completed { agent: holder, .. } if holder == agent => {
                return Ok(delivery)
            }
            DeliveryState::Completed { .. } => {
                return Err(refuse(
                    ErrorKind::Conflict,
                    "already_completed",
                    format!("delivery {id} was completed by another agent"),
                ))
            }
            DeliveryState::Failed { .. } => {
                return Err(refuse(
                    ErrorKind::Conflict,
                    "lease_lost",
                    format!("delivery {id} has failed"),
                ))
            }
        }
        delivery.state = DeliveryState::Leased {
            agent: agent.to_string(),
            expires_at: now + lease,
        };
        Ok(delivery)
    }

    /// Extends an agent's lease on a delivery.
    pub fn renew(
        &mut self,
        agent: &str,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<OffsetDateTime, ModelError> {
        let delivery = self.hold_lease(agent, id, now)?;
        match &delivery.state {
            DeliveryState::Leased { expires_at, .. } => Ok(*expires_at),
            _ => Err(refuse(
                ErrorKind::Conflict,
                "lease_lost",
                format!("delivery {id} is already completed"),
            )),
        }
    }

    /// Records that every file of a delivery is in its hotfolder. Idempotent for the
    /// agent that completed it. Returns the job's state afterwards.
    pub fn complete(
        &mut self,
        agent: &str,
        id: &str,
        files: Vec<DroppedFile>,
        now: OffsetDateTime,
    ) -> Result<JobState, ModelError> {
        let delivery = self.hold_lease(agent, id, now)?;
        if !matches!(delivery.state, DeliveryState::Completed { .. }) {
            delivery.state = DeliveryState::Completed {
                agent: agent.to_string(),
                files,
            };
        }
        let job_id = delivery.job.clone();
        let send_count = delivery.send_count;
        let all_done = self
            .deliveries
            .values()
            .filter(|d| d.job == job_id && d.send_count == send_count)
            .all(|d| matches!(d.state, DeliveryState::Completed { .. }));
        let job = self.job_mut(&job_id)?;
        if all_done && job.send_count == send_count && job.state == JobState::SendingToProduction {
            job.state = JobState::SentToProduction;
        }
        Ok(job.state)
    }

    /// Records that an agent gave up on a delivery: back to pending after `retry_hold`
    /// when retryable, else failed, with the job in production error.
    pub fn fail(
        &mut self,
        agent: &str,
        id: &str,
        reason: &str,
        retryable: bool,
        now: OffsetDateTime,
    ) -> Result<(), ModelError> {
        if let Some(Delivery {
            state: DeliveryState::Failed { agent: holder, .. },
            ..
        }) = self.deliveries.get(id)
        {
            if holder == agent {
                return Ok(());
            }
        }
        let hold = self.settings.retry_hold;
        let delivery = self.hold_lease(agent, id, now)?;
        if matches!(delivery.state, DeliveryState::Completed { .. }) {
            return Err(refuse(
                ErrorKind::Conflict,
                "already_completed",
                format!("delivery {id} is already completed"),
            ));
        }
        delivery.last_failure = Some(reason.to_string());
        if retryable {
            delivery.state = DeliveryState::Pending {
                not_before: Some(now + hold),
            };
            return Ok(());
        }
        delivery.state = DeliveryState::Failed {
            agent: agent.to_string(),
            reason: reason.to_string(),
        };
        let job_id = delivery.job.clone();
        let send_count = delivery.send_count;
        let job = self.job_mut(&job_id)?;
        if job.send_count == send_count {
            job.state = JobState::ProductionError;
            job.error = Some(format!("delivery {id}: {reason}"));
        }
        Ok(())
    }

    /// Records what happened to a dropped file afterwards.
    pub fn record_event(
        &mut self,
        id: &str,
        event: FileEvent,
        at: OffsetDateTime,
        path: String,
    ) -> Result<(), ModelError> {
        self.delivery_mut(id)?
            .events
            .push(RecordedEvent { event, at, path });
        Ok(())
    }
}

/// The numeric part of a job id, so J-999 sorts before J-1000.
fn job_number(id: &str) -> u64 {
    id.trim_start_matches("J-").parse().unwrap_or(u64::MAX)
}
