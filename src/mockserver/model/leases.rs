//! Deliveries on their way to agents: claims, leases and their renewal, and what an
//! agent reports back.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::{refuse, ErrorKind, ModelError};
use super::jobs::{FileLocation, JobState};
use super::Model;
use crate::protocol::{self, DroppedFile, FileEvent};

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
    /// What the agent saw of the device's verdict (protocol 1.1).
    #[serde(default)]
    pub detail: Option<String>,
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

impl Delivery {
    /// Where the delivery is, in words a person reads (the web page, `tbot mock`).
    pub fn describe(&self) -> String {
        let mut label = match &self.state {
            DeliveryState::Pending { not_before: None } => "waiting for an agent".to_string(),
            DeliveryState::Pending {
                not_before: Some(_),
            } => "waiting to be tried again".to_string(),
            DeliveryState::Leased { agent, .. } => format!("being delivered by {agent}"),
            DeliveryState::Completed { files, .. } => {
                format!("delivered ({} files)", files.len())
            }
            DeliveryState::Failed { reason, .. } => format!("failed: {reason}"),
        };
        if let Some(event) = self.events.last() {
            label.push_str(match event.event {
                FileEvent::PickedUp => ", picked up by the device",
                FileEvent::Stalled => ", stalled in the hotfolder",
                FileEvent::Accepted => ", accepted by the device",
                FileEvent::Rejected => ", rejected by the device",
            });
            if let Some(detail) = &event.detail {
                label.push_str(&format!(" ({detail})"));
            }
        }
        label
    }
}

impl Model {
    /// Returns expired leases to pending.
    pub(super) fn expire_leases(&mut self, now: OffsetDateTime) {
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
    pub(super) fn wire_delivery(&self, id: &str) -> Option<protocol::Delivery> {
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
                customer: job.customer.clone(),
                ticket: job.ticket.clone(),
            },
            files: job
                .files
                .iter()
                .map(|file| protocol::DeliveryFile {
                    name: file.name.clone(),
                    size: file.size,
                    sha256: file.sha256.clone(),
                    role: file.role,
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

    pub(super) fn delivery_mut(&mut self, id: &str) -> Result<&mut Delivery, ModelError> {
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
    pub(super) fn hold_lease(
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
        let from_store = self
            .job(&job_id)?
            .order_number
            .as_ref()
            .is_some_and(|number| {
                self.orders
                    .get(number)
                    .is_some_and(|order| order.store.is_some())
            });
        let job = self.job_mut(&job_id)?;
        if all_done && job.send_count == send_count && job.state == JobState::SendingToProduction {
            // A store order's workflow ends in its closeout.
            job.state = if from_store {
                JobState::WaitingForOrderCloseout
            } else {
                JobState::SentToProduction
            };
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
        event: protocol::EventRequest,
    ) -> Result<(), ModelError> {
        self.delivery_mut(id)?.events.push(RecordedEvent {
            event: event.event,
            at: event.at,
            path: event.path,
            detail: event.detail,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{announce, approved_job, at, model};
    use super::*;

    /// A model with one job sent to `indigo`, announced by two agents.
    fn sent() -> (Model, String) {
        let mut model = model();
        announce(&mut model, "agent-1", &["indigo"], at(0));
        announce(&mut model, "agent-2", &["indigo"], at(0));
        let job = approved_job(&mut model, &["indigo"], at(0));
        model
            .send("owner", std::slice::from_ref(&job), None, at(0))
            .unwrap();
        (model, job)
    }

    #[test]
    fn a_lease_that_runs_out_goes_to_the_next_agent_and_the_first_loses_it() {
        let (mut model, _) = sent();
        let indigo = ["indigo".to_string()];
        let first = model.claim("agent-1", &indigo, 5, at(1));
        assert_eq!(first.len(), 1);
        assert!(model.claim("agent-2", &indigo, 5, at(30)).is_empty());
        let second = model.claim("agent-2", &indigo, 5, at(62));
        assert_eq!(second[0].id, first[0].id);
        let lost = model.renew("agent-1", &first[0].id, at(63)).unwrap_err();
        assert_eq!(lost.code, "lease_lost");
    }

    #[test]
    fn completing_every_delivery_of_a_send_completes_the_job() {
        let (mut model, job) = sent();
        let claimed = model.claim("agent-1", &["indigo".to_string()], 5, at(1));
        let state = model.complete("agent-1", &claimed[0].id, Vec::new(), at(2));
        assert_eq!(state, Ok(JobState::SentToProduction));
        // Again, by the same agent: the same answer; by another: refused.
        assert!(model
            .complete("agent-1", &claimed[0].id, Vec::new(), at(3))
            .is_ok());
        let other = model.complete("agent-2", &claimed[0].id, Vec::new(), at(3));
        assert_eq!(other.unwrap_err().code, "already_completed");
        assert_eq!(model.jobs[&job].state, JobState::SentToProduction);
    }

    #[test]
    fn a_retryable_failure_waits_then_returns_and_a_final_one_marks_the_job() {
        let (mut model, job) = sent();
        let indigo = ["indigo".to_string()];
        let id = model.claim("agent-1", &indigo, 5, at(1))[0].id.clone();
        model
            .fail("agent-1", &id, "share gone", true, at(2))
            .unwrap();
        let hold = i64::try_from(model.settings.retry_hold.as_secs()).unwrap();
        assert!(model
            .claim("agent-2", &indigo, 5, at(2 + hold - 1))
            .is_empty());
        assert_eq!(model.claim("agent-2", &indigo, 5, at(2 + hold))[0].id, id);
        model
            .fail("agent-2", &id, "bad checksum", false, at(3 + hold))
            .unwrap();
        assert_eq!(model.jobs[&job].state, JobState::ProductionError);
    }
}
