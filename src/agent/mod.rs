//! The agent daemon (`tbot run`): announces its queues, checks for work, and keeps at
//! most `concurrency` deliveries in flight, each carried through its steps by the
//! [`delivery::Worker`].

pub mod check;
pub mod client;
pub mod delivery;
pub mod hotfolder;
pub mod transfer;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::ExponentialBuilder;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};

use crate::config::Config;
use crate::protocol::{AnnouncedQueue, ClaimRequest, FailRequest, HeartbeatRequest, QueueStatus};
use crate::shutdown::Shutdown;
use client::{Claimed, ClientError, JobSideClient};
use delivery::{Outcome, Queue, Worker};
use hotfolder::Hotfolder;

/// The running agent.
pub struct Agent {
    config: Config,
    worker: Arc<Worker>,
    link: Link,
}

/// Whether the server answered last time, so that losing and regaining the connection
/// is logged once each rather than at every check.
struct Link {
    up: bool,
}

impl Link {
    fn observe<T>(&mut self, result: &Result<T, ClientError>) {
        match result {
            Ok(_) if !self.up => {
                info!("connection to the server is back");
                self.up = true;
            }
            Err(err @ ClientError::Transient { .. }) if self.up => {
                warn!("lost the connection to the server, will keep trying: {err}");
                self.up = false;
            }
            Err(err @ (ClientError::Refused { .. } | ClientError::BadResponse(_))) => {
                warn!("{err}");
            }
            _ => {}
        }
    }
}

impl Agent {
    pub fn new(config: Config, shutdown: Shutdown) -> anyhow::Result<Agent> {
        let client = JobSideClient::new(&config.server)?;
        Ok(Agent::with_client(config, client, shutdown))
    }

    /// An agent using `client`, whose retry schedule tests may have shortened.
    pub fn with_client(config: Config, client: JobSideClient, shutdown: Shutdown) -> Agent {
        let queues = config
            .queues
            .iter()
            .map(|queue| Queue {
                config: queue.clone(),
                hotfolder: Hotfolder::new(&queue.hotfolder),
            })
            .collect();
        let worker = Arc::new(Worker {
            client,
            queues,
            shutdown,
            transfer_retry: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(500))
                .with_max_delay(Duration::from_secs(10))
                .with_jitter(),
        });
        Agent {
            config,
            worker,
            link: Link { up: true },
        }
    }

    /// Runs until the shutdown is triggered, then hands back what is in flight and
    /// returns.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let shutdown = self.worker.shutdown.clone();
        info!(
            agent = %self.config.agent.name,
            server = %self.config.server.url,
            queues = self.config.queues.len(),
            "tbot agent starting"
        );
        for queue in &self.worker.queues {
            match queue.hotfolder.clear_staging() {
                Ok(0) => {}
                Ok(n) => {
                    info!(queue = %queue.config.name, "removed {n} staged files left by an earlier run")
                }
                Err(err) => {
                    warn!(queue = %queue.config.name, "cannot clear the staging folder: {err}")
                }
            }
        }
        let mut in_flight: JoinSet<Outcome> = JoinSet::new();
        let mut check = tokio::time::interval(self.config.server.check_interval);
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut heartbeat = tokio::time::interval(self.config.server.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        heartbeat.reset();
        let mut backlog = false;
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = check.tick() => {
                    let ready = self.heartbeat(&shutdown).await;
                    backlog = self.claim(&ready, &mut in_flight, &shutdown).await;
                }
                _ = heartbeat.tick() => {
                    self.heartbeat(&shutdown).await;
                }
                Some(_) = in_flight.join_next() => {
                    if backlog {
                        let ready = self.ready_queues();
                        backlog = self.claim(&ready, &mut in_flight, &shutdown).await;
                    }
                }
            }
        }
        info!(in_flight = in_flight.len(), "stopping");
        while in_flight.join_next().await.is_some() {}
        info!("tbot agent stopped");
        Ok(())
    }

    /// Each queue's state as the heartbeat announces it.
    fn announce(&self) -> Vec<AnnouncedQueue> {
        self.worker
            .queues
            .iter()
            .map(|queue| {
                let (status, detail) = queue.hotfolder.probe();
                AnnouncedQueue {
                    name: queue.config.name.clone(),
                    kind: queue.config.kind,
                    status,
                    detail,
                }
            })
            .collect()
    }

    fn ready_queues(&self) -> Vec<String> {
        self.announce()
            .into_iter()
            .filter(|queue| queue.status == QueueStatus::Ready)
            .map(|queue| queue.name)
            .collect()
    }

    /// Announces the queues; returns the names of those ready for files.
    async fn heartbeat(&mut self, shutdown: &Shutdown) -> Vec<String> {
        let queues = self.announce();
        for queue in &queues {
            if let Some(detail) = &queue.detail {
                warn!(queue = %queue.name, "queue unavailable: {detail}");
            }
        }
        let request = HeartbeatRequest {
            agent: self.config.agent.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            queues: queues.clone(),
        };
        if let Some(result) = until(shutdown, self.worker.client.heartbeat(&request)).await {
            self.link.observe(&result);
        }
        queues
            .into_iter()
            .filter(|queue| queue.status == QueueStatus::Ready)
            .map(|queue| queue.name)
            .collect()
    }

    /// Claims as many deliveries as there are free slots and starts them. Returns
    /// whether the server may have more waiting (it filled every slot).
    async fn claim(
        &mut self,
        ready: &[String],
        in_flight: &mut JoinSet<Outcome>,
        shutdown: &Shutdown,
    ) -> bool {
        let free = self
            .config
            .agent
            .concurrency
            .saturating_sub(in_flight.len());
        if free == 0 || ready.is_empty() {
            return free == 0;
        }
        let request = ClaimRequest {
            queues: ready.to_vec(),
            max: u32::try_from(free).unwrap_or(u32::MAX),
            wait_s: 0,
        };
        let Some(result) = until(shutdown, self.worker.client.claim(&request)).await else {
            return false;
        };
        self.link.observe(&result);
        let Ok(claimed) = result else { return false };
        let count = claimed.len();
        for item in claimed {
            let worker = self.worker.clone();
            match item {
                Claimed::Ready(delivery) => {
                    in_flight.spawn(async move { worker.deliver(delivery).await });
                }
                Claimed::Malformed {
                    id: Some(id),
                    problem,
                } => {
                    warn!(delivery = %id, "{problem}");
                    in_flight.spawn(async move {
                        let request = FailRequest {
                            reason: problem.clone(),
                            retryable: false,
                        };
                        if let Err(err) = worker.client.fail(&id, &request).await {
                            warn!(delivery = %id, "could not report the malformed delivery: {err}");
                        }
                        Outcome::Failed {
                            reason: problem,
                            retryable: false,
                        }
                    });
                }
                Claimed::Malformed { id: None, problem } => {
                    warn!("a claimed delivery without an id was ignored: {problem}");
                }
            }
        }
        count >= free
    }
}

/// Runs `work` unless the shutdown comes first.
async fn until<T>(shutdown: &Shutdown, work: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        _ = shutdown.wait() => None,
        value = work => Some(value),
    }
}
