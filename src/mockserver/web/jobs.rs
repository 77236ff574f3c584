//! The jobs page: tiles grouped by order number, kept up to date while tbot works, with
//! the buttons the person's profile allows.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::super::model::{Delivery, DeliveryState, JobAction, Model, Permission, SettingsChange};
use super::super::AppState;
use super::layout::{csrf_field, page, refused};
use super::visitor::Visitor;
use crate::operator_client::segment;
use crate::operator_views::{names_or_none, ticket_summary, JobGroups, JobView};
use crate::protocol::wire_name;

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

#[derive(Deserialize)]
pub struct AutoSendForm {
    csrf: String,
    autosend: bool,
}

/// The whole jobs page.
pub async fn page_of_jobs(State(state): State<Arc<AppState>>, visitor: Visitor) -> Markup {
    let model = state.model();
    let may_send = visitor.may(Permission::SendToProduction);
    let body = html! {
        h1 { "Jobs" }
        @if visitor.may(Permission::ChangeSettings) {
            form.autosend method="post" action="/settings/autosend" {
                (csrf_field(&visitor))
                input type="hidden" name="autosend" value=(!model.settings().autosend);
                span { "AutoSend is " strong #autosend-state { (if model.settings().autosend { "on" } else { "off" }) } }
                button #autosend type="submit" {
                    (if model.settings().autosend { "Turn AutoSend off" } else { "Turn AutoSend on" })
                }
            }
        }
        form #jobs-form method="get" action="/send" {
            @if may_send {
                div.toolbar {
                    button #send type="submit" name="mode" value="send" { "Send to Production" }
                    button #send-again type="submit" name="mode" value="again" { "Send Again" }
                    span.hint { "Select one or more jobs, then send them." }
                }
            }
            div #jobs data-live="/live/jobs" { (job_tiles(&model, &visitor)) }
        }
    };
    page("Jobs", Some(&visitor), body)
}

/// Just the tiles, for the page's script to swap in every few seconds.
pub async fn live_jobs(State(state): State<Arc<AppState>>, visitor: Visitor) -> Markup {
    job_tiles(&state.model(), &visitor)
}

/// Tiles grouped by order number, jobs without one last.
fn job_tiles(model: &Model, visitor: &Visitor) -> Markup {
    let groups = JobGroups::of(JobView::all(model)).groups;
    html! {
        @if groups.is_empty() {
            p.empty { "No jobs yet." }
        }
        @for group in &groups {
            section.order data-order=[&group.order_number] {
                h2 {
                    @match &group.order_number {
                        Some(number) => {
                            "Order " (number) " "
                            a.details href={ "/orders/" (segment(number)) } { "Order details" }
                        }
                        None => "Jobs without an order",
                    }
                }
                div.tiles {
                    @for view in &group.jobs { (tile(visitor, view)) }
                }
            }
        }
    }
}

fn tile(visitor: &Visitor, view: &JobView) -> Markup {
    let job = &view.job;
    let actions: Vec<JobAction> = JobAction::ALL
        .into_iter()
        .filter(|action| action.offered_in(job.state) && visitor.may(action.permission()))
        .collect();
    html! {
        article.tile id={ "job-" (job.id) } data-state=(job.state.code()) {
            label.pick {
                input type="checkbox" name="job" value=(job.id);
                strong { (job.name) }
                " " span.id { (job.id) }
            }
            p { span.state { (job.state.label()) } }
            @if let Some(error) = &job.error {
                p.refusal { (error) }
            }
            @if let Some(customer) = &job.customer {
                p.customer { "Customer: " (customer) }
            }
            @if let Some(ticket) = ticket_summary(job) {
                p.ticket { "Ticket: " (ticket) }
            }
            @if !job.files.is_empty() {
                ul.files {
                    @for file in &job.files {
                        li { (file.name) " (" (bytesize::ByteSize(file.size.max(0) as u64)) ")" }
                    }
                }
            }
            p.queues { "Preselected queues: " (names_or_none(&view.preselected_queues)) }
            @if !view.deliveries.is_empty() {
                ul.deliveries {
                    @for delivery in &view.deliveries {
                        li data-queue=(delivery.queue) data-delivery-state=(delivery_code(delivery)) {
                            (delivery.queue)
                            @if delivery.send_count > 1 { " (send " (delivery.send_count) ")" }
                            ": " (delivery.describe())
                        }
                    }
                }
            }
            @if !actions.is_empty() {
                div.actions {
                    @for action in actions {
                        button type="submit" formmethod="post"
                            formaction={ "/jobs/" (segment(&job.id)) "/" (action.name()) }
                            name="csrf" value=(visitor.csrf)
                            data-action=(action.name()) { (action.label()) }
                    }
                }
            }
        }
    }
}

/// The delivery's state for scripts and tests: its wire state, or the device's last
/// word on the files (`picked_up`, `stalled`, `accepted`, `rejected`) once delivered.
fn delivery_code(delivery: &Delivery) -> String {
    match (&delivery.state, delivery.events.last()) {
        (DeliveryState::Completed { .. }, Some(event)) => wire_name(&event.event),
        (DeliveryState::Completed { .. }, None) => "completed".into(),
        (DeliveryState::Pending { .. }, _) => "pending".into(),
        (DeliveryState::Leased { .. }, _) => "leased".into(),
        (DeliveryState::Failed { .. }, _) => "failed".into(),
    }
}

/// A button on a tile: approve, hold, archive, complete, retain.
pub async fn act(
    State(state): State<Arc<AppState>>,
    visitor: Visitor,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refusal) = visitor.refuse_forged(&form.csrf) {
        return refusal;
    }
    let action = match action.parse::<JobAction>() {
        Ok(action) => action,
        Err(err) => return refused(&visitor, err.into()),
    };
    let now = state.clock.now();
    match state.change(|model| model.act_on_job(&visitor.user, &id, action, now)) {
        Ok(Ok(())) => Redirect::to("/").into_response(),
        Ok(Err(err)) => refused(&visitor, err.into()),
        Err(err) => refused(&visitor, err),
    }
}

/// The site owner's AutoSend switch.
pub async fn set_autosend(
    State(state): State<Arc<AppState>>,
    visitor: Visitor,
    Form(form): Form<AutoSendForm>,
) -> Response {
    if let Some(refusal) = visitor.refuse_forged(&form.csrf) {
        return refusal;
    }
    if let Some(refusal) = visitor.refuse_without(Permission::ChangeSettings) {
        return refusal;
    }
    let now = state.clock.now();
    let change = SettingsChange {
        autosend: Some(form.autosend),
        ..SettingsChange::default()
    };
    match state.change(|model| model.change_settings(&change, now)) {
        Ok(()) => Redirect::to("/").into_response(),
        Err(err) => refused(&visitor, err),
    }
}
