//! What `tbot mock` prints for a person: tables and sentences made from the operator
//! API's answers, read as the types the server builds them from (`--json` prints the
//! answers themselves, for scripts).

use std::fmt::Write;

use serde::de::DeserializeOwned;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::mockserver::model::{Closeout, Order, Settings};
use crate::mockserver::Faults;
use crate::operator_views::{
    names_or_none, ticket_summary, ClockView, DeliveryList, JobGroups, JobList, JobView,
    OrderDetails, QueueList, RequestList, SendAnswer,
};
use crate::protocol::wire_name;

/// The kind of answer a command gets, which decides how it reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    Job,
    Jobs,
    Sent,
    Queues,
    Deliveries,
    Order,
    OrderDetails,
    Closeout,
    Settings,
    Faults,
    Requests,
    Clock,
    /// An answer with nothing to say beyond success.
    Done,
}

/// The answer as lines a person reads. The shapes the operator API shares with this
/// client are read as their types; an answer not of its shape is shown as JSON.
pub(crate) fn render(shape: Shape, answer: &Value) -> String {
    fn typed<T: DeserializeOwned>(answer: &Value, show: impl Fn(&T) -> String) -> String {
        match T::deserialize(answer) {
            Ok(view) => show(&view),
            Err(_) => format!("{answer:#}\n"),
        }
    }
    match shape {
        Shape::Job => typed(answer, job),
        Shape::Jobs if answer.get("groups").is_some() => typed(answer, job_groups),
        Shape::Jobs => typed(answer, |list: &JobList| job_table(&list.jobs)),
        Shape::Sent => typed(answer, sent),
        Shape::Queues => typed(answer, queues),
        Shape::Deliveries => typed(answer, deliveries),
        Shape::Order => typed(answer, |order: &Order| {
            format!(
                "order {}: preselected queues {}\n",
                order.number,
                names_or_none(&order.queues)
            )
        }),
        Shape::OrderDetails => typed(answer, order_details),
        Shape::Closeout => typed(answer, closeout),
        Shape::Settings => typed(answer, settings),
        Shape::Faults => typed(answer, faults),
        Shape::Requests => typed(answer, requests),
        Shape::Clock => typed(answer, |clock: &ClockView| {
            format!("the server's clock is now {}\n", moment(clock.now))
        }),
        Shape::Done => "done\n".into(),
    }
}

/// Rows under a header, each column as wide as its widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn moment(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

fn job(view: &JobView) -> String {
    let job = &view.job;
    let mut out = format!("{} {}", job.id, job.name);
    if let Some(order) = &job.order_number {
        let _ = write!(out, " (order {order})");
    }
    let _ = writeln!(out, ": {}", job.state.label());
    if let Some(error) = &job.error {
        let _ = writeln!(out, "  error: {error}");
    }
    if let Some(customer) = &job.customer {
        let _ = writeln!(out, "  customer: {customer}");
    }
    if let Some(ticket) = ticket_summary(job) {
        let _ = writeln!(out, "  ticket: {ticket}");
    }
    for file in &job.files {
        let size = bytesize::ByteSize(file.size.max(0) as u64);
        let _ = writeln!(out, "  file {} ({size})", file.name);
    }
    let _ = writeln!(
        out,
        "  preselected queues: {}",
        names_or_none(&view.preselected_queues)
    );
    for delivery in &view.deliveries {
        let _ = writeln!(
            out,
            "  delivery {} to {}: {}",
            delivery.id,
            delivery.queue,
            delivery.describe()
        );
    }
    out
}

fn job_table(jobs: &[JobView]) -> String {
    if jobs.is_empty() {
        return "no jobs\n".into();
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|view| {
            let job = &view.job;
            vec![
                job.id.clone(),
                job.order_number.clone().unwrap_or_else(|| "-".into()),
                job.name.clone(),
                job.state.label().into(),
                names_or_none(&view.preselected_queues),
                view.deliveries
                    .iter()
                    .map(|d| format!("{}: {}", d.queue, d.describe()))
                    .collect::<Vec<_>>()
                    .join("; "),
            ]
        })
        .collect();
    table(
        &["JOB", "ORDER", "NAME", "STATE", "QUEUES", "DELIVERIES"],
        &rows,
    )
}

fn job_groups(groups: &JobGroups) -> String {
    if groups.groups.is_empty() {
        return "no jobs\n".into();
    }
    let mut out = String::new();
    for group in &groups.groups {
        match &group.order_number {
            Some(number) => {
                let _ = writeln!(out, "order {number}");
            }
            None => out.push_str("jobs without an order\n"),
        }
        out.push_str(&job_table(&group.jobs));
        out.push('\n');
    }
    out
}

fn sent(answer: &SendAnswer) -> String {
    let mut out = String::new();
    for result in &answer.results {
        if result.ok {
            let _ = writeln!(
                out,
                "{}: sent (deliveries {})",
                result.job,
                names_or_none(&result.deliveries)
            );
        } else {
            let why = result.error.as_deref().unwrap_or("refused");
            let _ = writeln!(out, "{}: not sent: {why}", result.job);
        }
    }
    out
}

fn queues(list: &QueueList) -> String {
    if list.queues.is_empty() {
        return "no queue is connected (tbot mock queues --all lists every one)\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .queues
        .iter()
        .map(|view| {
            let queue = &view.queue;
            let status = if view.connected {
                queue.status_text()
            } else {
                "not connected".into()
            };
            vec![
                queue.name.clone(),
                wire_name(&queue.kind),
                status,
                names_or_none(&queue.agent_names),
                moment(queue.last_heartbeat),
            ]
        })
        .collect();
    table(
        &["QUEUE", "KIND", "STATUS", "AGENTS", "LAST HEARTBEAT"],
        &rows,
    )
}

fn deliveries(list: &DeliveryList) -> String {
    if list.deliveries.is_empty() {
        return "no deliveries\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .deliveries
        .iter()
        .map(|d| vec![d.id.clone(), d.job.clone(), d.queue.clone(), d.describe()])
        .collect();
    table(&["DELIVERY", "JOB", "QUEUE", "STATE"], &rows)
}

fn order_details(details: &OrderDetails) -> String {
    let order = &details.order;
    let mut out = format!("order {}", order.number);
    match &order.store {
        Some(store) => {
            let _ = writeln!(
                out,
                " from the store (store order {}), customer {}, paid by {}",
                store.store_order_id,
                store.customer,
                store.payment.label()
            );
            let rows: Vec<Vec<String>> = store
                .line_items
                .iter()
                .map(|item| {
                    let to = &item.ship_to;
                    vec![
                        item.name.clone(),
                        item.product.clone(),
                        item.quantity.to_string(),
                        item.price.clone(),
                        item.shipping.clone(),
                        format!(
                            "{}, {}, {} {}, {}",
                            to.name, to.street, to.postal_code, to.city, to.country
                        ),
                        item.job.clone(),
                    ]
                })
                .collect();
            out.push_str(&table(
                &[
                    "LINE ITEM",
                    "PRODUCT",
                    "QTY",
                    "PRICE",
                    "SHIPPING",
                    "SHIP TO",
                    "JOB",
                ],
                &rows,
            ));
        }
        None => out.push_str(", made on the job side\n"),
    }
    for job in &details.job_states {
        let _ = writeln!(out, "job {} {}: {}", job.id, job.name, job.state.label());
    }
    if let Some(store) = &order.store {
        out.push_str(&match (&store.closeout, &store.settlement_error) {
            (Some(done), _) => closeout(done),
            (None, Some(error)) => format!("not closed out: the last settlement failed: {error}\n"),
            (None, None) => "not closed out yet\n".into(),
        });
    }
    out
}

fn closeout(closeout: &Closeout) -> String {
    let mut out = format!(
        "closed out at {}: packing slip and invoice (total {}) made",
        moment(closeout.closed_at),
        closeout.invoice.total
    );
    if let Some(charge) = &closeout.settlement {
        let _ = write!(
            out,
            "; card settled, charge {} of {}",
            charge.id, charge.amount
        );
    }
    out.push('\n');
    out
}

fn settings(settings: &Settings) -> String {
    format!(
        "AutoSend is {}; queues disappear after {} silent, leases last {}, a failed \
         delivery is held {}\n",
        if settings.autosend { "on" } else { "off" },
        humantime::format_duration(settings.queue_ttl),
        humantime::format_duration(settings.lease),
        humantime::format_duration(settings.retry_hold)
    )
}

fn faults(faults: &Faults) -> String {
    let mut set = Vec::new();
    for (name, rate) in [
        ("error rate", faults.error_rate),
        ("truncate rate", faults.truncate_rate),
        ("corrupt rate", faults.corrupt_rate),
    ] {
        if rate > 0.0 {
            set.push(format!("{name} {rate}"));
        }
    }
    if let Some(bytes) = faults.drop_after {
        set.push(format!("downloads cut after {bytes} bytes"));
    }
    if let Some(rate) = faults.bytes_per_second {
        set.push(format!("downloads at {}/s", bytesize::ByteSize(rate)));
    }
    if faults.ignore_ranges {
        set.push("ranges ignored".into());
    }
    if let Some(down) = faults.down_for {
        set.push(format!("down for {}", humantime::format_duration(down)));
    }
    if let Some(payment) = faults.payment {
        set.push(format!("payments {}", wire_name(&payment)));
    }
    if set.is_empty() {
        "no faults: the server answers agents normally\n".into()
    } else {
        format!("faults on (seed {}): {}\n", faults.seed, set.join(", "))
    }
}

fn requests(list: &RequestList) -> String {
    let rows: Vec<Vec<String>> = list
        .requests
        .iter()
        .map(|r| {
            vec![
                r.method.clone(),
                r.path.clone(),
                r.range.clone().unwrap_or_else(|| "-".into()),
                r.status.to_string(),
                r.client.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut out = table(&["METHOD", "PATH", "RANGE", "STATUS", "CLIENT"], &rows);
    let _ = writeln!(out, "claims held open now: {}", list.held_claims);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_job_reads_as_sentences() {
        let said = render(
            Shape::Job,
            &json!({"id": "J-1001", "name": "Cards", "order_number": "MC-1",
                    "state": "sent_to_production", "queues": [], "send_count": 1,
                    "error": null, "awaiting_queue": false,
                    "files": [{"id": "F-1", "name": "cards.pdf", "size": 2048,
                               "sha256": "00", "location": {"kind": "stored"}}],
                    "preselected_queues": ["indigo"],
                    "deliveries": [{"id": "D-1", "job": "J-1001", "queue": "indigo",
                                    "send_count": 1, "state": "completed", "agent": "agent-1",
                                    "files": [], "leases": 1, "last_failure": null,
                                    "events": [{"event": "picked_up", "path": "x",
                                                "at": "2026-11-22T08:00:00Z"}]}]}),
        );
        assert_eq!(
            said,
            "J-1001 Cards (order MC-1): sent to production\n  file cards.pdf (2.0 KiB)\n  \
             preselected queues: indigo\n  delivery D-1 to indigo: delivered (0 files), picked up \
             by the device\n"
        );
    }

    #[test]
    fn a_list_lines_its_columns_up() {
        let queue =
            |name: &str, kind: &str, status: &str, detail: Option<&str>, agents: &[&str]| {
                json!({"name": name, "kind": kind, "status": status, "detail": detail,
                   "connected": true, "agents": agents, "agent_names": agents,
                   "last_heartbeat": "2026-11-22T08:00:00Z"})
            };
        let said = render(
            Shape::Queues,
            &json!({"queues": [
                queue("indigo-7900", "printer", "ready", None, &["floor-1"]),
                queue("ctp", "ctp", "unavailable", Some("hotfolder missing"), &[])]}),
        );
        let lines: Vec<&str> = said.lines().collect();
        assert_eq!(
            lines[0],
            "QUEUE        KIND     STATUS                          AGENTS   LAST HEARTBEAT"
        );
        assert_eq!(
            lines[2],
            "ctp          ctp      unavailable: hotfolder missing  none     2026-11-22T08:00:00Z"
        );
    }

    #[test]
    fn an_answer_of_another_shape_is_shown_as_it_came() {
        let said = render(Shape::Job, &json!({"unexpected": true}));
        assert!(said.contains("\"unexpected\": true"), "{said}");
    }

    #[test]
    fn a_refused_send_says_why_per_job() {
        let said = render(
            Shape::Sent,
            &json!({"results": [{"job": "J-1", "ok": true, "deliveries": ["D-1"]},
                                {"job": "J-2", "ok": false, "error": "job J-2 is on hold"}]}),
        );
        assert_eq!(
            said,
            "J-1: sent (deliveries D-1)\nJ-2: not sent: job J-2 is on hold\n"
        );
    }
}
