//! The send window (Send to Production, Send Again) and its per-job results.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::{Form, Query};
use maud::{html, Markup};
use serde::Deserialize;

use super::super::model::{Model, Permission, SendResult};
use super::super::AppState;
use super::layout::{csrf_field, page, refusal_page, refused};
use super::visitor::Visitor;
use crate::operator_views::names_or_none;
use crate::protocol::wire_name;

#[derive(Deserialize)]
pub struct Chosen {
    #[serde(default, rename = "job")]
    jobs: Vec<String>,
    /// `again` for Send Again; anything else is Send to Production.
    #[serde(default)]
    mode: String,
}

#[derive(Deserialize)]
pub struct SendForm {
    csrf: String,
    #[serde(default, rename = "job")]
    jobs: Vec<String>,
    #[serde(default, rename = "queue")]
    queues: Vec<String>,
    #[serde(default)]
    mode: String,
}

fn title(mode: &str) -> &'static str {
    if mode == "again" {
        "Send Again"
    } else {
        "Send to Production"
    }
}

/// The send window for the selected jobs: the connected queues with their kind and
/// status, the jobs' preselected ones checked.
pub async fn window(
    State(state): State<Arc<AppState>>,
    visitor: Visitor,
    Query(chosen): Query<Chosen>,
) -> Response {
    if let Some(refusal) = visitor.refuse_without(Permission::SendToProduction) {
        return refusal;
    }
    if chosen.jobs.is_empty() {
        return refusal_page(
            &visitor,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Select at least one job to send.",
        );
    }
    let model = state.model();
    let preselected: BTreeSet<String> = chosen
        .jobs
        .iter()
        .filter_map(|id| model.jobs().get(id))
        .flat_map(|job| model.preselected_queues(job))
        .collect();
    window_page(
        &state,
        &model,
        &visitor,
        &chosen.jobs,
        &chosen.mode,
        &preselected,
        None,
    )
    .into_response()
}

fn window_page(
    state: &AppState,
    model: &Model,
    visitor: &Visitor,
    jobs: &[String],
    mode: &str,
    checked: &BTreeSet<String>,
    problem: Option<&str>,
) -> Markup {
    let now = state.clock.now();
    let queues: Vec<_> = model
        .queues()
        .values()
        .filter(|queue| model.is_connected(queue, now))
        .collect();
    let body = html! {
        h1 { (title(mode)) }
        p { "Jobs: " @for (n, id) in jobs.iter().enumerate() {
            @if n > 0 { ", " }
            (id) @if let Some(job) = model.jobs().get(id) { " (" (job.name) ")" }
        } }
        @if let Some(problem) = problem {
            p.refusal role="alert" { (problem) }
        }
        @if queues.is_empty() {
            p.refusal { "No queue is connected: start tbot on the print floor first." }
        }
        form #send-window method="post" action="/send" {
            (csrf_field(visitor))
            input type="hidden" name="mode" value=(mode);
            @for id in jobs { input type="hidden" name="job" value=(id); }
            table.queues {
                thead { tr { th {} th { "Queue" } th { "Kind" } th { "Status" } th { "Agents" } } }
                tbody {
                    @for queue in &queues {
                        tr data-queue=(queue.name) {
                            td { input type="checkbox" name="queue" value=(queue.name) checked[checked.contains(&queue.name)]; }
                            td { (queue.name) }
                            td { (wire_name(&queue.kind)) }
                            td.status data-status=(wire_name(&queue.status)) { (queue.status_text()) }
                            td { (names_or_none(&queue.agent_names)) }
                        }
                    }
                }
            }
            p { "Choose at least one queue." }
            button #send-now type="submit" { (title(mode)) }
            " " a href="/" { "Cancel" }
        }
    };
    page(title(mode), Some(visitor), body)
}

/// Sends; shows, per job, where it went and why any was refused.
pub async fn send(
    State(state): State<Arc<AppState>>,
    visitor: Visitor,
    Form(form): Form<SendForm>,
) -> Response {
    if let Some(refusal) = visitor.refuse_forged(&form.csrf) {
        return refusal;
    }
    if form.queues.is_empty() {
        let model = state.model();
        let page = window_page(
            &state,
            &model,
            &visitor,
            &form.jobs,
            &form.mode,
            &BTreeSet::new(),
            Some("Choose at least one queue."),
        );
        return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
    }
    let now = state.clock.now();
    let answer =
        state.change(|model| model.send(&visitor.user, &form.jobs, Some(&form.queues), now));
    let results = match answer {
        Ok(Ok(results)) => results,
        Ok(Err(err)) => return refused(&visitor, err.into()),
        Err(err) => return refused(&visitor, err),
    };
    results_page(&state.model(), &visitor, &form.mode, &results).into_response()
}

fn results_page(model: &Model, visitor: &Visitor, mode: &str, results: &[SendResult]) -> Markup {
    let body = html! {
        h1 { (title(mode)) ": results" }
        ul #send-results {
            @for result in results {
                li data-job=(result.job) data-ok=(result.ok) {
                    strong { (result.job) }
                    @if let Some(job) = model.jobs().get(&result.job) { " (" (job.name) ")" }
                    ": "
                    @if result.ok {
                        "sent to "
                        (result.deliveries.iter()
                            .filter_map(|id| model.deliveries().get(id))
                            .map(|delivery| delivery.queue.clone())
                            .collect::<Vec<_>>()
                            .join(", "))
                    } @else {
                        span.refusal { "not sent: " (result.error.as_deref().unwrap_or("refused")) }
                    }
                }
            }
        }
        p { a #back href="/" { "Back to the jobs" } }
    };
    page("Sent", Some(visitor), body)
}
