//! The agent daemon (`tbot run`): announces its queues, checks for work, and keeps at
//! most `concurrency` deliveries, and as many file transfers, in flight, each delivery
//! carried through its steps by the [`delivery::Worker`].

mod blocking_call;
pub mod check;
mod claim_answer;
pub mod client;
mod connection;
pub mod delivery;
mod events;
mod folder_watch;
pub mod hotfolder;
pub mod journal;
pub mod journal_lock;
mod metrics;
mod monitor_endpoint;
pub mod pickup;
pub mod pipeline;
pub(crate) mod queue_set;
mod reload;
pub mod reporter;
mod service_manager;
pub(crate) mod staging;
pub mod state_dir;
pub mod stream_copy;
pub mod transfer;
mod transfer_slots;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::control::Control;
use crate::protocol::{AnnouncedQueue, ClaimRequest, HeartbeatRequest, QueueStatus};
use crate::shutdown::Shutdown;
use blocking_call::BlockingCall;
use client::{Claimed, ClientError, JobSideClient};
use delivery::{Outcome, Worker};
use events::Events;
use folder_watch::FolderWatch;
use hotfolder::MIN_FREE_SPACE;
use journal::Journal;
use journal_lock::JournalLock;
use metrics::{Metrics, QueueLabel};
use monitor_endpoint::{LoopBeat, Monitored};
use pickup::{PickupWatch, QueueLook};
use queue_set::{Queue, QueueSet};
use reporter::Reporter;
use service_manager::ServiceManager;

/// Finished deliveries stay in the journal this many days, for `tbot status`.
const KEEP_DAYS: i64 = 30;

/// How often a running agent prunes its journal.
const PRUNE_EVERY: Duration = Duration::from_secs(24 * 3600);

/// How long the staged bytes of a delivery handed back at a stop are kept for it to
/// come back to this agent and resume; after that it has surely gone elsewhere.
const KEEP_HANDED_BACK: Duration = Duration::from_secs(24 * 3600);

/// How long a look at a hotfolder may take before its queue counts as unavailable: a
/// local disk answers in milliseconds, a share that hangs may never answer.
const PROBE_LIMIT: Duration = Duration::from_secs(10);

/// The shortest time between two looks at the dropped files that notifications ask for.
const MIN_LOOK_GAP: Duration = Duration::from_millis(200);

/// How long a stopping agent tries to hand its last reports to the server.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// The running agent.
pub struct Agent {
    config: Config,
    worker: Arc<Worker>,
    /// Each queue's last announced status, to log changes once.
    queue_state: HashMap<String, (QueueStatus, Option<String>)>,
    /// The queues ready for files at the last heartbeat: the ones claimed for.
    ready: Vec<String>,
    /// Whether the devices take the dropped files.
    pickup: Arc<PickupWatch>,
    /// The look at the dropped files, which may hang on a share.
    pickup_look: BlockingCall<HashMap<String, QueueLook>>,
    /// Notifications from the hotfolders, which hurry the pick-up watch.
    folder_watch: FolderWatch,
    /// Each hotfolder's probe, which may hang on a share.
    probes: HashMap<std::path::PathBuf, BlockingCall<(QueueStatus, Option<String>)>>,
    /// What the pick-up watch saw in each queue at its last look.
    looks: HashMap<String, QueueLook>,
    /// Held while the agent runs: no second agent may use the journal.
    _lock: JournalLock,
    /// systemd (when it runs the agent), told how things go.
    service: ServiceManager,
    /// How the last heartbeat went: when the server was last reached, or since when
    /// and why it cannot be.
    contact: Contact,
    /// Stop and reload requests.
    control: Control,
    /// This agent's journal id, which starts every name it stages.
    instance: String,
    /// Why the last reload was refused, until one succeeds.
    reload_refused: Option<String>,
    /// Log lines and metrics of what happens.
    events: Events,
    /// When the main loop last turned, for `/healthz`.
    beat: Arc<LoopBeat>,
}

/// The agent's contact with the server, as its heartbeats find it.
#[derive(Debug, Default)]
enum Contact {
    #[default]
    NotYet,
    Reached(Instant),
    Failing {
        since: time::OffsetDateTime,
        why: String,
    },
}

/// A claim on its way, with the request and when it was sent: the server may hold it
/// open until work comes (long polling).
type PendingClaim = Pin<
    Box<dyn Future<Output = (ClaimRequest, Instant, Result<Vec<Claimed>, ClientError>)> + Send>,
>;

/// Logs what the server refused or answered wrongly; losing and regaining the
/// connection is logged by the client itself.
fn log_refusal<T>(result: &Result<T, ClientError>) {
    if let Err(err @ (ClientError::Refused { .. } | ClientError::BadResponse(_))) = result {
        warn!("{err}");
    }
}

impl Agent {
    /// An agent for `config`; opens (or creates) its journal in `state_dir`.
    pub fn new(config: Config, control: Control) -> anyhow::Result<Agent> {
        let client = JobSideClient::new(&config.server)?;
        Agent::with_client(config, client, control)
    }

    /// An agent using `client`, whose retry schedule tests may have shortened.
    pub fn with_client(
        config: Config,
        client: JobSideClient,
        control: Control,
    ) -> anyhow::Result<Agent> {
        state_dir::create(&config.agent.state_dir)?;
        let lock = JournalLock::acquire(&config.agent.state_dir)?;
        let journal = Arc::new(Journal::open(&config.agent.state_dir)?);
        if let Some(other) = journal.bind_server(config.server.url.as_str())? {
            anyhow::bail!(
                "the journal in agent.state_dir {} belongs to the job side at {other}, not {}: \
                 deliveries are known by that server's ids. If the job side really changed, \
                 let the old one's deliveries finish, then move the journal away or set a new state_dir",
                config.agent.state_dir.display(),
                config.server.url
            );
        }
        let instance = journal.instance()?;
        let queues = QueueSet::new(
            config
                .queues
                .iter()
                .map(|queue| Queue::new(queue, &instance))
                .collect(),
        );
        let mut folder_watch = FolderWatch::new();
        folder_watch.watch(&queues.snapshot());
        let reports = Arc::new(Notify::new());
        let events = Events::new(Arc::new(Metrics::new()));
        let pickup = Arc::new(PickupWatch {
            journal: journal.clone(),
            queues: queues.clone(),
            reports: reports.clone(),
            events: events.clone(),
        });
        let worker = Arc::new(Worker::new(
            client,
            queues,
            journal,
            reports,
            control.shutdown().clone(),
            config.agent.concurrency,
            events.clone(),
        ));
        Ok(Agent {
            config,
            worker,
            queue_state: HashMap::new(),
            ready: Vec::new(),
            pickup,
            pickup_look: BlockingCall::new(PROBE_LIMIT),
            folder_watch,
            probes: HashMap::new(),
            looks: HashMap::new(),
            _lock: lock,
            service: ServiceManager::from_env(),
            contact: Contact::NotYet,
            control,
            instance,
            reload_refused: None,
            events,
            beat: Arc::new(LoopBeat::new()),
        })
    }

    fn reporter(&self) -> Reporter {
        Reporter {
            client: self.worker.client().clone(),
            journal: self.worker.journal().clone(),
            wake: self.pickup.reports.clone(),
            events: self.events.clone(),
        }
    }

    /// Removes staged files that no delivery may resume from: left by a crash, written
    /// by a transfer still finishing when its delivery ended, or kept for a delivery
    /// handed back at a stop that has not come back within [`KEEP_HANDED_BACK`].
    fn clear_staging(&self) {
        let handed_back_within = time::Duration::try_from(KEEP_HANDED_BACK).unwrap_or_default();
        let resumable = match self.worker.journal().resumable(handed_back_within) {
            Ok(resumable) => resumable,
            Err(err) => {
                warn!("cannot tell which staged files to keep, so none is removed: {err}");
                return;
            }
        };
        let keep: HashSet<String> = resumable
            .iter()
            .filter_map(|entry| {
                let queue = self.worker.queues().find(&entry.delivery.queue)?;
                let id = &entry.delivery.id;
                Some(
                    (0..entry.delivery.files.len())
                        .map(|index| queue.hotfolder.staged_name(id, index))
                        .chain([
                            queue.hotfolder.staged_ticket(id),
                            queue.hotfolder.staged_job_folder(id),
                        ])
                        .collect::<Vec<_>>(),
                )
            })
            .flatten()
            .collect();
        for queue in self.worker.queues().snapshot().iter() {
            match queue.hotfolder.clear_staging(&keep) {
                Ok(0) => {}
                Ok(n) => {
                    info!(queue = %queue.config.name, "removed {n} staged files of deliveries no longer in progress")
                }
                Err(err) => {
                    warn!(queue = %queue.config.name, "cannot clear the staging folder: {err}")
                }
            }
        }
    }

    /// Renames what an older tbot staged for the unfinished deliveries to today's names.
    fn adopt_legacy_staging(&self, unfinished: &[journal::Entry]) {
        for entry in unfinished {
            let Some(queue) = self.worker.queues().find(&entry.delivery.queue) else {
                continue;
            };
            for index in 0..entry.delivery.files.len() {
                match queue
                    .hotfolder
                    .adopt_legacy_staged(&entry.delivery.id, index)
                {
                    Ok(true) => {
                        info!(delivery = %entry.delivery.id, "took over a file staged by an earlier version")
                    }
                    Ok(false) => {}
                    Err(err) => {
                        warn!(queue = %queue.config.name, "cannot look for files staged by an earlier version: {err}")
                    }
                }
            }
        }
    }

    /// Clears staging folders of everything but the files of unfinished deliveries,
    /// which are resumed, and starts those deliveries again.
    fn recover(&self, in_flight: &mut JoinSet<Outcome>) -> anyhow::Result<()> {
        let unfinished = self.worker.journal().unfinished()?;
        self.adopt_legacy_staging(&unfinished);
        self.clear_staging();
        if !unfinished.is_empty() {
            info!(
                deliveries = unfinished.len(),
                "carrying on with deliveries interrupted by the last stop"
            );
        }
        for entry in unfinished {
            let worker = self.worker.clone();
            in_flight.spawn(async move { worker.resume(entry).await });
        }
        self.prune_journal();
        Ok(())
    }

    /// Forgets deliveries finished more than [`KEEP_DAYS`] ago, so the journal of an
    /// agent that runs for years stays small.
    fn prune_journal(&self) {
        self.clear_staging();
        match self.worker.journal().prune(KEEP_DAYS) {
            Ok(0) => {}
            Ok(n) => info!("forgot {n} deliveries finished more than {KEEP_DAYS} days ago"),
            Err(err) => warn!("cannot prune the journal: {err}"),
        }
    }

    /// Runs until the shutdown is triggered, then hands back what is in flight and
    /// returns.
    ///
    /// While there are free slots, one claim is always on its way: the server may hold
    /// it open for `long_poll` (long polling), so a job sent on the server starts
    /// within moments, not at the next check. After an error, or an empty answer from
    /// a server that does not hold claims, the next claim waits for the next check.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let shutdown = self.worker.shutdown().clone();
        let queues: Vec<&str> = self.config.queues.iter().map(|q| q.name.as_str()).collect();
        info!(
            version = %env!("CARGO_PKG_VERSION"),
            agent = %self.config.agent.name,
            config = %self.config.source.as_deref().unwrap_or(std::path::Path::new("-")).display(),
            journal = %self.worker.journal().path().display(),
            server = %self.config.server.url,
            queues = %queues.join(", "),
            sha256_cpu_extensions = pipeline::sha256_uses_cpu_extensions(),
            "tbot agent starting"
        );
        let mut in_flight: JoinSet<Outcome> = JoinSet::new();
        self.recover(&mut in_flight)?;
        // Ready once the queues are probed; the server may well be down, and that is
        // the agent's job to ride out, not a failure to start.
        self.probe_queues().await;
        let monitor = match self.config.metrics_listen {
            Some(listen) => {
                let monitored = Monitored {
                    metrics: self.events.metrics_handle(),
                    worker: self.worker.clone(),
                    beat: self.beat.clone(),
                };
                let (bound, task) =
                    monitor_endpoint::start(listen, monitored, shutdown.clone()).await?;
                info!("metrics at http://{bound}/metrics, health at http://{bound}/healthz");
                Some(task)
            }
            None => None,
        };
        let status = self.status_line(in_flight.len());
        self.service.ready(status);
        let mut watchdog = self.service.watchdog_every().map(tokio::time::interval);
        let reporter = tokio::spawn(self.reporter().run(shutdown.clone()));
        let mut check = every(self.config.server.check_interval);
        let mut heartbeat = every(self.config.server.heartbeat_interval);
        heartbeat.reset();
        let control = self.control.clone();
        let mut prune = tokio::time::interval_at(Instant::now() + PRUNE_EVERY, PRUNE_EVERY);
        let mut pickup = tokio::time::interval(pickup::POLL);
        pickup.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let folder_changes = self.folder_watch.changes();
        let mut last_look = Instant::now();
        let mut look_due: Option<Instant> = None;
        let mut claim: Option<PendingClaim> = None;
        let mut may_claim = false;
        let mut backlog = false;
        loop {
            if claim.is_none() && may_claim {
                claim = self.start_claim(in_flight.len(), backlog);
            }
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = check.tick() => {
                    self.heartbeat(&shutdown).await;
                    // A check is a heartbeat: the next one is due a full interval later.
                    heartbeat.reset();
                    may_claim = true;
                }
                _ = prune.tick() => self.prune_journal(),
                _ = pickup.tick() => {
                    if self.look_for_pickups().await {
                        self.heartbeat(&shutdown).await;
                        may_claim = true;
                    }
                    last_look = Instant::now();
                    self.update_gauges();
                }
                _ = folder_changes.notified(), if look_due.is_none() => {
                    // A burst of changes is one look, at most a few times a second.
                    look_due = Some(last_look + MIN_LOOK_GAP);
                }
                _ = async { tokio::time::sleep_until(look_due.expect("guarded")).await }, if look_due.is_some() => {
                    look_due = None;
                    if self.look_for_pickups().await {
                        self.heartbeat(&shutdown).await;
                        may_claim = true;
                    }
                    last_look = Instant::now();
                }
                _ = heartbeat.tick() => {
                    self.heartbeat(&shutdown).await;
                }
                (request, started, result) = async { claim.as_mut().expect("guarded").await }, if claim.is_some() => {
                    claim = None;
                    log_refusal(&result);
                    let count = match result {
                        Ok(claimed) => self.start_deliveries(claimed, &mut in_flight),
                        Err(_) => {
                            may_claim = false;
                            0
                        }
                    };
                    backlog = count > 0 && count >= request.max as usize;
                    let held = started.elapsed() >= Duration::from_secs(request.wait_s) / 2;
                    if count == 0 && !held {
                        may_claim = false;
                    }
                }
                Some(_) = in_flight.join_next() => {}
                _ = async { watchdog.as_mut().expect("guarded").tick().await }, if watchdog.is_some() => {
                    self.service.watchdog();
                }
                _ = control.reload_requested() => {
                    if self.reload(in_flight.len()) == reload::Reloaded::Applied {
                        self.folder_watch.watch(&self.worker.queues().snapshot());
                        check = every(self.config.server.check_interval);
                        check.reset();
                        heartbeat = every(self.config.server.heartbeat_interval);
                        // Added queues are announced at once, and claimed for from the
                        // next claim on. A claim the server holds open is left to
                        // finish: dropping it could lose what the server just leased.
                        self.heartbeat(&shutdown).await;
                        heartbeat.reset();
                        may_claim = true;
                    }
                }
            }
            let status = self.status_line(in_flight.len());
            self.service.status(status);
            self.beat.turned();
            self.events
                .metrics()
                .in_flight
                .set(i64::try_from(in_flight.len()).unwrap_or(i64::MAX));
        }
        self.service.stopping();
        info!(in_flight = in_flight.len(), "stopping");
        while in_flight.join_next().await.is_some() {}
        self.clear_staging();
        let _ = reporter.await;
        if let Some(monitor) = monitor {
            let _ = monitor.await;
        }
        if tokio::time::timeout(FINAL_FLUSH, self.reporter().flush())
            .await
            .is_err()
        {
            info!("reports not yet sent stay in the journal for the next start");
        }
        info!("tbot agent stopped");
        Ok(())
    }

    /// Why no work can be recorded now, if none can: the journal cannot be written or
    /// its folder is full. Checked at every heartbeat; clears itself once fixed.
    fn journal_problem(&self) -> Option<String> {
        let state_dir = &self.config.agent.state_dir;
        let problem = match (self.worker.journal().check_writable(), fs4::available_space(state_dir)) {
            (Err(err), _) => Some(format!("cannot write the journal: {err}")),
            (Ok(()), Ok(free)) if free < MIN_FREE_SPACE => Some(format!(
                "agent.state_dir {} is full: {free} bytes free, the journal needs at least {MIN_FREE_SPACE}",
                state_dir.display()
            )),
            _ => None,
        };
        self.worker.set_journal_trouble(problem.clone());
        problem
    }

    /// Each queue's state as the heartbeat announces it.
    async fn announce(&mut self) -> Vec<AnnouncedQueue> {
        let journal_problem = self.journal_problem();
        let queues = self.worker.queues().snapshot();
        let probed = match &journal_problem {
            Some(problem) => queues
                .iter()
                .map(|_| (QueueStatus::Unavailable, Some(problem.clone())))
                .collect(),
            None => self.probe_hotfolders(&queues).await,
        };
        queues
            .iter()
            .zip(probed)
            .map(|(queue, (mut status, mut detail))| {
                let look = self.looks.get(queue.name()).copied().unwrap_or_default();
                if status == QueueStatus::Ready && look.stalled > 0 {
                    status = QueueStatus::Stalled;
                    detail = Some(format!(
                        "{} dropped file(s) still in {} after {}: the device is not taking them",
                        look.stalled,
                        queue.hotfolder.root().display(),
                        humantime::format_duration(queue.config.stall_after)
                    ));
                }
                if let (QueueStatus::Ready | QueueStatus::Stalled, Some(max)) =
                    (status, self.over_max_waiting(queue))
                {
                    status = QueueStatus::Stalled;
                    detail = Some(format!(
                        "{} dropped files are waiting in {} (max_waiting = {max}): taking no new \
                         deliveries until the device takes some",
                        look.waiting,
                        queue.hotfolder.root().display(),
                    ));
                }
                AnnouncedQueue {
                    name: queue.config.name.clone(),
                    kind: queue.config.kind,
                    status,
                    detail,
                }
            })
            .collect()
    }

    /// Probes every hotfolder side by side, off the runtime: a share that hangs makes
    /// its queue unavailable after [`PROBE_LIMIT`], and holds up nothing else.
    async fn probe_hotfolders(&mut self, queues: &[Queue]) -> Vec<(QueueStatus, Option<String>)> {
        let mut calls = std::mem::take(&mut self.probes);
        let probes = queues.iter().map(|queue| {
            // By folder: a probe hanging on a share says nothing of the folder a
            // reload put in its place.
            let key = queue.hotfolder.root().to_path_buf();
            let mut call = calls
                .remove(&key)
                .unwrap_or_else(|| BlockingCall::new(PROBE_LIMIT));
            let hotfolder = queue.hotfolder.clone();
            async move {
                let probed = call.run(move || hotfolder.probe()).await;
                (key, call, probed)
            }
        });
        let results = futures_util::future::join_all(probes).await;
        // Probes of queues a reload removed are forgotten with them.
        results
            .into_iter()
            .zip(queues)
            .map(|((key, call, probed), queue)| {
                self.probes.insert(key, call);
                probed.unwrap_or_else(|why| {
                    (
                        QueueStatus::Unavailable,
                        Some(format!(
                            "hotfolder {} {why}",
                            queue.hotfolder.root().display()
                        )),
                    )
                })
            })
            .collect()
    }

    /// Probes every queue, notes the changes and which are ready for files; returns
    /// them as the heartbeat announces them.
    async fn probe_queues(&mut self) -> Vec<AnnouncedQueue> {
        let queues = self.announce().await;
        self.note_queue_changes(&queues);
        self.ready = queues
            .iter()
            .filter(|queue| queue.status != QueueStatus::Unavailable)
            .map(|queue| queue.name.clone())
            .collect();
        queues
    }

    /// Looks at the dropped files off the runtime; a share that hangs keeps the last
    /// look and says so once it has hung for [`PROBE_LIMIT`]. Whether a queue went
    /// over or back under its `max_waiting`, which the server must hear of.
    async fn look_for_pickups(&mut self) -> bool {
        let watch = self.pickup.clone();
        let full_before = self.full_queues();
        match self.pickup_look.run(move || watch.check()).await {
            Ok(looks) => self.looks = looks,
            Err(why) => warn!("looking at the dropped files {why}: a hotfolder share may hang"),
        }
        self.full_queues() != full_before
    }

    /// The queue's `max_waiting`, when at least that many dropped files wait in its
    /// hotfolder: it takes no new deliveries until the device takes some.
    fn over_max_waiting(&self, queue: &Queue) -> Option<usize> {
        let max = queue.config.profile.max_waiting?;
        let waiting = self.looks.get(queue.name()).map_or(0, |look| look.waiting);
        (waiting >= max).then_some(max)
    }

    /// The queues over their `max_waiting` now.
    fn full_queues(&self) -> Vec<String> {
        self.worker
            .queues()
            .snapshot()
            .iter()
            .filter(|queue| self.over_max_waiting(queue).is_some())
            .map(|queue| queue.name().to_string())
            .collect()
    }

    /// Sets the gauges the pick-up watch and the journal know: stalled files by queue,
    /// reports waiting.
    fn update_gauges(&self) {
        let metrics = self.events.metrics();
        for queue in &self.config.queues {
            let stalled = self.looks.get(&queue.name).map_or(0, |look| look.stalled);
            metrics
                .stalled
                .get_or_create(&QueueLabel {
                    queue: queue.name.clone(),
                })
                .set(i64::try_from(stalled).unwrap_or(i64::MAX));
        }
        match self.worker.journal().reports_waiting() {
            Ok(waiting) => {
                metrics.reports_waiting.set(waiting);
            }
            Err(err) => warn!("cannot count the reports waiting: {err}"),
        }
    }

    /// What the agent is doing, in words, for `systemctl status`.
    fn status_line(&self, in_flight: usize) -> String {
        let mut work = format!(
            "{} of {} queue(s) ready, {in_flight} deliveries in flight",
            self.ready.len(),
            self.config.queues.len()
        );
        if let Some(refused) = &self.reload_refused {
            work = format!("{refused}; {work}");
        }
        match &self.contact {
            Contact::NotYet => format!("{work}, server not reached yet"),
            Contact::Reached(at) => {
                format!("{work}, server reached {} s ago", at.elapsed().as_secs())
            }
            Contact::Failing { since, why } => {
                let (hour, minute, second) = since.to_hms();
                format!(
                    "cannot reach the server since {hour:02}:{minute:02}:{second:02} UTC: {why}; {work}"
                )
            }
        }
    }

    /// Announces the queues and notes which are ready for files.
    async fn heartbeat(&mut self, shutdown: &Shutdown) {
        let queues = self.probe_queues().await;
        let request = HeartbeatRequest {
            agent: self.config.agent.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            queues: queues.clone(),
        };
        if let Some(result) = until(shutdown, self.worker.client().heartbeat(&request)).await {
            log_refusal(&result);
            let failure = result.as_ref().err().map(ToString::to_string);
            if failure.is_none() {
                self.events.metrics().server_reached();
            }
            self.contact = match (&failure, std::mem::take(&mut self.contact)) {
                (None, _) => Contact::Reached(Instant::now()),
                (Some(why), Contact::Failing { since, .. }) => Contact::Failing {
                    since,
                    why: why.clone(),
                },
                (Some(why), _) => Contact::Failing {
                    since: time::OffsetDateTime::now_utc(),
                    why: why.clone(),
                },
            };
            if let Err(err) = self
                .worker
                .journal()
                .record_server_contact(failure.as_deref())
            {
                warn!("{err}");
            }
        }
    }

    /// Logs a queue that becomes unavailable or recovers, once per change, and keeps
    /// its status in the journal for `tbot status`.
    fn note_queue_changes(&mut self, queues: &[AnnouncedQueue]) {
        for queue in queues {
            let key = (queue.status, queue.detail.clone());
            if self.queue_state.get(&queue.name) == Some(&key) {
                continue;
            }
            let detail = queue.detail.as_deref().unwrap_or("");
            match queue.status {
                QueueStatus::Unavailable => {
                    warn!(queue = %queue.name, "queue unavailable: {detail}")
                }
                QueueStatus::Stalled => warn!(queue = %queue.name, "queue stalled: {detail}"),
                QueueStatus::Ready if self.queue_state.contains_key(&queue.name) => {
                    info!(queue = %queue.name, "queue ready again")
                }
                QueueStatus::Ready => {}
            }
            let status = crate::protocol::wire_name(&queue.status);
            self.events.metrics().set_queue_status(&queue.name, &status);
            if let Err(err) = self.worker.journal().set_queue_status(
                &queue.name,
                &status,
                queue.detail.as_deref(),
            ) {
                warn!("{err}");
            }
            self.queue_state.insert(queue.name.clone(), key);
        }
    }

    /// Starts a claim for as many deliveries as there are free slots, for the queues
    /// that were ready at the last heartbeat; `None` when there is nothing to claim for.
    /// With a backlog the server is asked to answer at once, else to hold the claim.
    fn start_claim(&self, busy: usize, backlog: bool) -> Option<PendingClaim> {
        let free = self.config.agent.concurrency.saturating_sub(busy);
        let full = self.full_queues();
        let queues: Vec<String> = self
            .ready
            .iter()
            .filter(|name| !full.contains(name))
            .cloned()
            .collect();
        if free == 0 || queues.is_empty() || self.worker.journal_trouble().is_some() {
            return None;
        }
        let long_poll = self.config.server.long_poll;
        let request = ClaimRequest {
            queues,
            max: u32::try_from(free).unwrap_or(u32::MAX),
            wait_s: if backlog {
                0
            } else {
                long_poll.as_secs() + u64::from(long_poll.subsec_nanos() > 0)
            },
        };
        let client = self.worker.client().clone();
        Some(Box::pin(async move {
            let started = Instant::now();
            let result = client.claim(&request).await;
            (request, started, result)
        }))
    }

    /// Whether this agent is working on delivery `id` or has it in its journal.
    fn knows(&self, id: &str) -> bool {
        self.worker.is_active(id)
            || self
                .worker
                .journal()
                .entry(id)
                .is_ok_and(|entry| entry.is_some())
    }

    /// Starts a task for every claimed delivery; returns how many were claimed.
    fn start_deliveries(&self, claimed: Vec<Claimed>, in_flight: &mut JoinSet<Outcome>) -> usize {
        let count = claimed.len();
        let full = self.full_queues();
        for item in claimed {
            let worker = self.worker.clone();
            match item {
                Claimed::Ready(delivery)
                    if full.contains(&delivery.queue) && !self.knows(&delivery.id) =>
                {
                    // A claim the server held open since before the queue filled up:
                    // the delivery goes back untouched, for later or another agent.
                    let reason = format!(
                        "queue {} has max_waiting files waiting for the device; handed back untouched",
                        delivery.queue
                    );
                    info!(delivery = %delivery.id, "{reason}");
                    hand_back(&worker, &delivery.id, reason, true);
                }
                Claimed::Ready(delivery) => {
                    in_flight.spawn(async move { worker.deliver(*delivery).await });
                }
                Claimed::Malformed {
                    id: Some(id),
                    problem,
                } if self.knows(&id) => {
                    warn!(delivery = %id, "the server handed out again, malformed, a delivery this agent has; keeping what it has: {problem}");
                }
                Claimed::Malformed {
                    id: Some(id),
                    problem,
                } => {
                    warn!(delivery = %id, "{problem}");
                    hand_back(&worker, &id, problem, false);
                }
                Claimed::Malformed { id: None, problem } => {
                    warn!("a claimed delivery without an id was ignored: {problem}");
                }
            }
        }
        count
    }
}

/// Gives delivery `id`, which this agent will not work on, back to the server with
/// `reason`: the report waits in the journal until the reporter sends it.
fn hand_back(worker: &Worker, id: &str, reason: String, retryable: bool) {
    let owed = journal::Owed::Fail(crate::protocol::FailRequest { reason, retryable });
    if let Err(err) = worker.journal().queue_report(id, &owed) {
        error!(delivery = %id, "cannot record the hand-back: {err}");
    }
    worker.wake_reporter();
}

/// A timer that ticks every `period`, the first time at once, and after a late tick
/// waits a whole period again rather than catching up.
fn every(period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// Runs `work` unless the shutdown comes first.
async fn until<T>(shutdown: &Shutdown, work: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        _ = shutdown.wait() => None,
        value = work => Some(value),
    }
}
