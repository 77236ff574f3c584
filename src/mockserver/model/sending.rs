//! Send to Production, Send Again and AutoSend: which jobs may go to which queues, and
//! the deliveries that sending makes.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::{refuse, unknown_order, ErrorKind, ModelError};
use super::jobs::JobState;
use super::leases::{Delivery, DeliveryState};
use super::people::Permission;
use super::Model;

/// The outcome of sending one job, in a multi-job send.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendResult {
    pub job: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Model {
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
        self.check_permission(user, Permission::SendToProduction)?;
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

    pub(super) fn send_one(
        &mut self,
        job_id: &str,
        chosen: Option<&[String]>,
        now: OffsetDateTime,
    ) -> Result<Vec<String>, ModelError> {
        let job = self.job(job_id)?;
        if !matches!(
            job.state,
            JobState::Approved
                | JobState::SentToProduction
                | JobState::ProductionError
                | JobState::WaitingForOrderCloseout
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
    pub(super) fn make_deliveries(
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
        let order = self
            .orders
            .get(number)
            .ok_or_else(|| unknown_order(number))?;
        Err(refuse(
            ErrorKind::Invalid,
            "orders_cannot_be_sent",
            format!(
                "an order cannot be sent to production; send its jobs instead ({})",
                order.jobs.join(", ")
            ),
        ))
    }

    pub(super) fn autosend(&mut self, job_id: &str, now: OffsetDateTime) {
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

    pub(super) fn release_awaiting(&mut self, now: OffsetDateTime) {
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
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{announce, approved_job, at, model};
    use super::*;
    use crate::mockserver::model::SettingsChange;

    #[test]
    fn only_a_site_owner_may_send_to_production() {
        let mut model = model();
        announce(&mut model, "agent-1", &["indigo"], at(0));
        let job = approved_job(&mut model, &["indigo"], at(0));
        let refused = model
            .send("designer", std::slice::from_ref(&job), None, at(1))
            .unwrap_err();
        assert_eq!(
            (refused.kind, refused.code),
            (ErrorKind::Forbidden, "permission_denied")
        );
        let sent = model
            .send("owner", std::slice::from_ref(&job), None, at(1))
            .unwrap();
        assert!(sent[0].ok, "{sent:?}");
        assert_eq!(model.jobs[&job].state, JobState::SendingToProduction);
    }

    #[test]
    fn a_job_goes_only_to_queues_an_agent_announced_within_the_ttl() {
        let mut model = model();
        let job = approved_job(&mut model, &["indigo"], at(0));
        let unknown = model
            .send("owner", std::slice::from_ref(&job), None, at(0))
            .unwrap();
        assert!(unknown[0].error.as_deref().unwrap().contains("not known"));
        announce(&mut model, "agent-1", &["indigo"], at(0));
        let ttl = i64::try_from(model.settings.queue_ttl.as_secs()).unwrap();
        let stale = model
            .send("owner", std::slice::from_ref(&job), None, at(ttl + 1))
            .unwrap();
        assert!(stale[0].error.as_deref().unwrap().contains("not connected"));
        let sent = model.send("owner", &[job], None, at(ttl)).unwrap();
        assert_eq!(sent[0].deliveries.len(), 1, "{sent:?}");
    }

    #[test]
    fn only_an_approved_job_with_files_and_a_queue_is_sent() {
        let mut model = model();
        announce(&mut model, "agent-1", &["indigo"], at(0));
        let job = approved_job(&mut model, &[], at(0));
        let no_queue = model
            .send("owner", std::slice::from_ref(&job), None, at(1))
            .unwrap();
        assert!(no_queue[0]
            .error
            .as_deref()
            .unwrap()
            .contains("at least one queue"));
        model.hold(&job).unwrap();
        let held = model
            .send("owner", &[job], Some(&["indigo".to_string()]), at(1))
            .unwrap();
        assert!(held[0]
            .error
            .as_deref()
            .unwrap()
            .contains("only an approved job"));
    }

    #[test]
    fn turning_autosend_on_sends_the_approved_jobs() {
        let mut model = model();
        announce(&mut model, "agent-1", &["indigo"], at(0));
        let job = approved_job(&mut model, &["indigo"], at(0));
        assert!(model.deliveries.is_empty());
        let on = SettingsChange {
            autosend: Some(true),
            ..SettingsChange::default()
        };
        model.change_settings(&on, at(1));
        assert_eq!(model.jobs[&job].state, JobState::SendingToProduction);
        assert_eq!(model.deliveries.len(), 1);
    }
}
