//! What `tbot mock` prints for a person: tables and sentences made from the operator
//! API's answers (`--json` prints the answers themselves, for scripts).

use std::fmt::Write;

use serde_json::Value;

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

/// The answer as lines a person reads.
pub(crate) fn render(shape: Shape, answer: &Value) -> String {
    match shape {
        Shape::Job => job(answer),
        Shape::Jobs => jobs(answer),
        Shape::Sent => sent(answer),
        Shape::Queues => queues(answer),
        Shape::Deliveries => deliveries(answer),
        Shape::Order => format!(
            "order {}: preselected queues {}\n",
            text(&answer["number"]),
            list(&answer["queues"])
        ),
        Shape::OrderDetails => order_details(answer),
        Shape::Closeout => closeout(answer),
        Shape::Settings => settings(answer),
        Shape::Faults => faults(answer),
        Shape::Requests => requests(answer),
        Shape::Clock => format!("the server's clock is now {}\n", text(&answer["now"])),
        Shape::Done => "done\n".into(),
    }
}

/// A JSON string or number as text; `-` for nothing.
fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A JSON list of names as `a, b`, or `none`.
fn list(value: &Value) -> String {
    let names: Vec<String> = value
        .as_array()
        .map(|items| items.iter().map(text).collect())
        .unwrap_or_default();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn items(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// A wire name such as `sent_to_production` as words.
fn words(value: &Value) -> String {
    text(value).replace('_', " ")
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

/// What happened to a delivery, in a few words.
fn delivery_state(delivery: &Value) -> String {
    let mut state = words(&delivery["state"]);
    if let Some(agent) = delivery["agent"].as_str() {
        let _ = write!(state, " ({agent})");
    }
    if let Some(reason) = delivery["reason"].as_str() {
        let _ = write!(state, ": {reason}");
    }
    if let Some(event) = items(&delivery["events"]).last() {
        let _ = write!(state, ", {}", words(&event["event"]));
    }
    state
}

fn job(job: &Value) -> String {
    let mut out = format!("{} {}", text(&job["id"]), text(&job["name"]));
    if let Some(order) = job["order_number"].as_str() {
        let _ = write!(out, " (order {order})");
    }
    let _ = writeln!(out, ": {}", words(&job["state"]));
    if let Some(error) = job["error"].as_str() {
        let _ = writeln!(out, "  error: {error}");
    }
    for file in items(&job["files"]) {
        let size = bytesize::ByteSize(file["size"].as_u64().unwrap_or(0));
        let _ = writeln!(out, "  file {} ({size})", text(&file["name"]));
    }
    let _ = writeln!(
        out,
        "  preselected queues: {}",
        list(&job["preselected_queues"])
    );
    for delivery in items(&job["deliveries"]) {
        let _ = writeln!(
            out,
            "  delivery {} to {}: {}",
            text(&delivery["id"]),
            text(&delivery["queue"]),
            delivery_state(delivery)
        );
    }
    out
}

fn jobs(answer: &Value) -> String {
    let row = |job: &Value| {
        vec![
            text(&job["id"]),
            text(&job["order_number"]),
            text(&job["name"]),
            words(&job["state"]),
            list(&job["preselected_queues"]),
            items(&job["deliveries"])
                .iter()
                .map(|d| format!("{}: {}", text(&d["queue"]), delivery_state(d)))
                .collect::<Vec<_>>()
                .join("; "),
        ]
    };
    let header = ["JOB", "ORDER", "NAME", "STATE", "QUEUES", "DELIVERIES"];
    if let Some(groups) = answer["groups"].as_array() {
        let mut out = String::new();
        for group in groups {
            let _ = writeln!(out, "order {}", text(&group["order_number"]));
            let rows: Vec<Vec<String>> = items(&group["jobs"]).iter().map(row).collect();
            out.push_str(&table(&header, &rows));
            out.push('\n');
        }
        return if out.is_empty() {
            "no jobs\n".into()
        } else {
            out
        };
    }
    let rows: Vec<Vec<String>> = items(&answer["jobs"]).iter().map(row).collect();
    if rows.is_empty() {
        return "no jobs\n".into();
    }
    table(&header, &rows)
}

fn sent(answer: &Value) -> String {
    let mut out = String::new();
    for result in items(&answer["results"]) {
        if result["ok"].as_bool() == Some(true) {
            let _ = writeln!(
                out,
                "{}: sent (deliveries {})",
                text(&result["job"]),
                list(&result["deliveries"])
            );
        } else {
            let _ = writeln!(
                out,
                "{}: not sent: {}",
                text(&result["job"]),
                text(&result["error"])
            );
        }
    }
    out
}

fn queues(answer: &Value) -> String {
    let rows: Vec<Vec<String>> = items(&answer["queues"])
        .iter()
        .map(|queue| {
            let mut status = text(&queue["status"]);
            if queue["connected"].as_bool() == Some(false) {
                status = "not connected".into();
            } else if let Some(detail) = queue["detail"].as_str() {
                let _ = write!(status, ": {detail}");
            }
            vec![
                text(&queue["name"]),
                text(&queue["kind"]),
                status,
                list(&queue["agent_names"]),
                text(&queue["last_heartbeat"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no queue is connected (tbot mock queues --all lists every one)\n".into();
    }
    table(
        &["QUEUE", "KIND", "STATUS", "AGENTS", "LAST HEARTBEAT"],
        &rows,
    )
}

fn deliveries(answer: &Value) -> String {
    let rows: Vec<Vec<String>> = items(&answer["deliveries"])
        .iter()
        .map(|d| {
            vec![
                text(&d["id"]),
                text(&d["job"]),
                text(&d["queue"]),
                delivery_state(d),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no deliveries\n".into();
    }
    table(&["DELIVERY", "JOB", "QUEUE", "STATE"], &rows)
}

fn order_details(order: &Value) -> String {
    let mut out = format!("order {}", text(&order["number"]));
    let store = &order["store"];
    if store.is_object() {
        let _ = writeln!(
            out,
            " from the store (store order {}), customer {}, paid by {}",
            text(&store["store_order_id"]),
            text(&store["customer"]),
            words(&store["payment"])
        );
        let rows: Vec<Vec<String>> = items(&store["line_items"])
            .iter()
            .map(|item| {
                let to = &item["ship_to"];
                vec![
                    text(&item["name"]),
                    text(&item["product"]),
                    text(&item["quantity"]),
                    text(&item["price"]),
                    text(&item["shipping"]),
                    format!(
                        "{}, {}, {} {}, {}",
                        text(&to["name"]),
                        text(&to["street"]),
                        text(&to["postal_code"]),
                        text(&to["city"]),
                        text(&to["country"])
                    ),
                    text(&item["job"]),
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
    } else {
        out.push_str(", made on the job side\n");
    }
    for job in items(&order["job_states"]) {
        let _ = writeln!(
            out,
            "job {} {}: {}",
            text(&job["id"]),
            text(&job["name"]),
            words(&job["state"])
        );
    }
    if store.is_object() {
        out.push_str(&match &store["closeout"] {
            Value::Null => match store["settlement_error"].as_str() {
                Some(error) => format!("not closed out: the last settlement failed: {error}\n"),
                None => "not closed out yet\n".into(),
            },
            closeout => closeout_sentence(closeout),
        });
    }
    out
}

fn closeout_sentence(closeout: &Value) -> String {
    let mut out = format!(
        "closed out at {}: packing slip and invoice (total {}) made",
        text(&closeout["closed_at"]),
        text(&closeout["invoice"]["total"])
    );
    if let Some(charge) = closeout["settlement"].as_object() {
        let _ = write!(
            out,
            "; card settled, charge {} of {}",
            text(&charge["id"]),
            text(&charge["amount"])
        );
    }
    out.push('\n');
    out
}

fn closeout(answer: &Value) -> String {
    closeout_sentence(answer)
}

fn settings(settings: &Value) -> String {
    let on = |value: &Value| {
        if value.as_bool() == Some(true) {
            "on"
        } else {
            "off"
        }
    };
    format!(
        "AutoSend is {}; queues disappear after {} silent, leases last {}, a failed \
         delivery is held {}\n",
        on(&settings["autosend"]),
        text(&settings["queue_ttl"]),
        text(&settings["lease"]),
        text(&settings["retry_hold"])
    )
}

fn faults(faults: &Value) -> String {
    let set: Vec<String> = faults
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(name, value)| {
            *name != "seed"
                && !matches!(value, Value::Null | Value::Bool(false))
                && value.as_f64() != Some(0.0)
        })
        .map(|(name, value)| format!("{name} {}", text(value)))
        .collect();
    if set.is_empty() {
        "no faults: the server answers agents normally\n".into()
    } else {
        format!(
            "faults on (seed {}): {}\n",
            text(&faults["seed"]),
            set.join(", ")
        )
    }
}

fn requests(answer: &Value) -> String {
    let rows: Vec<Vec<String>> = items(&answer["requests"])
        .iter()
        .map(|r| {
            vec![
                text(&r["method"]),
                text(&r["path"]),
                text(&r["range"]),
                text(&r["status"]),
                text(&r["client"]),
            ]
        })
        .collect();
    let mut out = table(&["METHOD", "PATH", "RANGE", "STATUS", "CLIENT"], &rows);
    let _ = writeln!(
        out,
        "claims held open now: {}",
        text(&answer["held_claims"])
    );
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
                    "state": "sent_to_production", "files": [{"name": "cards.pdf", "size": 2048}],
                    "preselected_queues": ["indigo"],
                    "deliveries": [{"id": "D-1", "queue": "indigo", "state": "completed",
                                    "agent": "agent-1", "events": [{"event": "picked_up"}]}]}),
        );
        assert_eq!(
            said,
            "J-1001 Cards (order MC-1): sent to production\n  file cards.pdf (2.0 KiB)\n  \
             preselected queues: indigo\n  delivery D-1 to indigo: completed (agent-1), picked up\n"
        );
    }

    #[test]
    fn a_list_lines_its_columns_up() {
        let said = render(
            Shape::Queues,
            &json!({"queues": [
                {"name": "indigo-7900", "kind": "printer", "status": "ready", "connected": true,
                 "agent_names": ["floor-1"], "last_heartbeat": "2026-11-22T08:00:00Z"},
                {"name": "ctp", "kind": "ctp", "status": "unavailable", "connected": true,
                 "detail": "hotfolder missing", "agent_names": [], "last_heartbeat": "2026-11-22T08:00:01Z"}]}),
        );
        let lines: Vec<&str> = said.lines().collect();
        assert_eq!(
            lines[0],
            "QUEUE        KIND     STATUS                          AGENTS   LAST HEARTBEAT"
        );
        assert_eq!(
            lines[2],
            "ctp          ctp      unavailable: hotfolder missing  none     2026-11-22T08:00:01Z"
        );
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
