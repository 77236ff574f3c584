//! What the mock job side's operator API answers, as types both ends share: the server
//! builds them and `tbot mock` reads them, the way `protocol.rs` is shared by agent and
//! server.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::mockserver::model::{Delivery, Job, JobState, Model, Order, Queue, SendResult};
use crate::mockserver::RequestRecord;
use crate::protocol::Sides;

/// A job with its deliveries and the queues preselected for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobView {
    #[serde(flatten)]
    pub job: Job,
    pub deliveries: Vec<Delivery>,
    pub preselected_queues: Vec<String>,
}

impl JobView {
    /// Every job, sorted by order number (jobs without one last).
    pub fn all(model: &Model) -> Vec<JobView> {
        model
            .jobs_by_order()
            .into_iter()
            .map(|job| JobView::of(model, job))
            .collect()
    }

    pub fn of(model: &Model, job: &Job) -> JobView {
        JobView {
            job: job.clone(),
            deliveries: model
                .deliveries()
                .values()
                .filter(|delivery| delivery.job == job.id)
                .cloned()
                .collect(),
            preselected_queues: model.preselected_queues(job),
        }
    }
}

/// `GET /jobs`: jobs sorted by order number.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<JobView>,
}

/// `GET /jobs?group=order_number`: the same jobs, one group per order number.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobGroups {
    pub groups: Vec<JobGroup>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobGroup {
    pub order_number: Option<String>,
    pub jobs: Vec<JobView>,
}

impl JobGroups {
    /// The jobs of `list`, grouped by their order number in the order they come.
    pub fn of(list: Vec<JobView>) -> JobGroups {
        let mut groups: Vec<JobGroup> = Vec::new();
        for view in list {
            match groups.last_mut() {
                Some(group) if group.order_number == view.job.order_number => group.jobs.push(view),
                _ => groups.push(JobGroup {
                    order_number: view.job.order_number.clone(),
                    jobs: vec![view],
                }),
            }
        }
        JobGroups { groups }
    }
}

/// `POST /send`: what happened to each job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendAnswer {
    pub results: Vec<SendResult>,
}

/// A queue, and whether a person can choose it now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueView {
    #[serde(flatten)]
    pub queue: Queue,
    pub connected: bool,
}

/// `GET /queues`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueList {
    pub queues: Vec<QueueView>,
}

/// `GET /deliveries`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}

/// One job of an order, as its details show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderJob {
    pub id: String,
    pub name: String,
    pub state: JobState,
}

/// `GET /orders/{number}`: the order, each job's state, and whether it is closed out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderDetails {
    #[serde(flatten)]
    pub order: Order,
    pub job_states: Vec<OrderJob>,
    pub closed_out: bool,
}

impl OrderDetails {
    pub fn of(model: &Model, order: &Order) -> OrderDetails {
        OrderDetails {
            order: order.clone(),
            job_states: order
                .jobs
                .iter()
                .filter_map(|id| model.jobs().get(id))
                .map(|job| OrderJob {
                    id: job.id.clone(),
                    name: job.name.clone(),
                    state: job.state,
                })
                .collect(),
            closed_out: order
                .store
                .as_ref()
                .is_some_and(|store| store.closeout.is_some()),
        }
    }
}

/// `POST /tokens`: the API token a log-in gives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoggedIn {
    pub token: String,
    pub user: String,
    pub profile: Option<String>,
}

/// `GET /requests`: the agent requests the server answered, and the claims it holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestList {
    pub requests: Vec<RequestRecord>,
    pub held_claims: usize,
}

/// `GET /clock`: the server's time, which tests move forward.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClockView {
    #[serde(with = "time::serde::rfc3339")]
    pub now: OffsetDateTime,
}

/// What a job's ticket tells its device, in one line a person reads on the page and
/// in `tbot mock`: "500 copies, two-sided, cmyk, Gloss 350 85×55 mm 350 g/m², cut,
/// due 2026-11-23T16:00:00Z: rush". None when the job has no ticket.
pub fn ticket_summary(job: &Job) -> Option<String> {
    let ticket = job.ticket.as_ref()?;
    let mut parts: Vec<String> = Vec::new();
    parts.extend(ticket.quantity.map(|n| format!("{n} copies")));
    parts.extend(ticket.sides.map(|sides| match sides {
        Sides::OneSided => "one-sided".to_string(),
        Sides::TwoSided => "two-sided".to_string(),
    }));
    parts.extend(ticket.color.clone());
    if let Some(media) = &ticket.media {
        let mut stock: Vec<String> = media.name.iter().cloned().collect();
        if let (Some(width), Some(height)) = (media.width_mm, media.height_mm) {
            stock.push(format!("{width}×{height} mm"));
        }
        stock.extend(media.weight_gsm.map(|gsm| format!("{gsm} g/m²")));
        parts.push(stock.join(" "));
    }
    parts.extend(ticket.finishing.iter().cloned());
    parts.extend(ticket.due.map(|due| {
        format!(
            "due {}",
            due.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        )
    }));
    let mut line = parts.join(", ");
    if let Some(notes) = &ticket.notes {
        line.push_str(&format!(": {notes}"));
    }
    Some(line)
}

/// Names as a person reads them, on the page and in `tbot mock`: `a, b`, or `none`.
pub fn names_or_none<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> String {
    let names: Vec<String> = names
        .into_iter()
        .map(|name| name.as_ref().to_string())
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
