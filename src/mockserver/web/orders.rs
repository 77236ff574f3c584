//! Order details and the Closeout order window (seed 002): tabs Packing slip, Invoice
//! and, for a card, Settlement; the not-ready warning a person answers; the refusals.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::{Form, Query};
use maud::{html, Markup};
use serde::Deserialize;

use super::super::api_error::ApiError;
use super::super::documents::{self, invoice_body, packing_slip_body};
use super::super::model::{unknown_order, CloseoutRequest, Order, Payment, Permission};
use super::super::AppState;
use super::layout::{csrf_field, page, refused};
use super::visitor::Visitor;
use crate::operator_client::segment;

#[derive(Deserialize)]
pub struct TabQuery {
    tab: Option<String>,
}

#[derive(Deserialize)]
pub struct CloseoutForm {
    csrf: String,
    #[serde(default)]
    confirm: bool,
}

/// Order details: line items, addresses, amounts, payment, each job's state, and the
/// closeout.
pub async fn details(
    State(state): State<Arc<AppState>>,
    visitor: Visitor,
    Path(number): Path<String>,
) -> Response {
    let model = state.model();
    let Some(order) = model.orders().get(&number) else {
        return refused(&visitor, unknown_order(&number).into());
    };
    let body = html! {
        h1 { "Order details: " (number) }
        @if let Some(store) = &order.store {
            p { "Customer: " strong { (store.customer) } " · Payment: " (store.payment.label())
                " · Store order " (store.store_order_id) }
            table #line-items {
                thead { tr { th { "Line item" } th { "Product" } th.n { "Quantity" } th.n { "Price" }
                    th.n { "Shipping" } th { "Ship to" } th { "Job" } } }
                tbody {
                    @for item in &store.line_items {
                        tr {
                            td { (item.name) } td { (item.product) } td.n { (item.quantity) }
                            td.n { (item.price) } td.n { (item.shipping) }
                            td { (item.ship_to.name) ", " (item.ship_to.street) ", "
                                 (item.ship_to.postal_code) " " (item.ship_to.city) ", " (item.ship_to.country) }
                            td { (item.job) }
                        }
                    }
                }
            }
        } @else {
            p { "This order was made on the job side, not in a store: it has no closeout." }
        }
        h2 { "Jobs" }
        ul #order-jobs {
            @for id in &order.jobs {
                @if let Some(job) = model.jobs().get(id) {
                    li data-job=(id) { (id) " " (job.name) ": " span.state { (job.state.label()) } }
                }
            }
        }
        (closeout_state(&visitor, order))
        p { a href="/" { "Back to the jobs" } }
    };
    page(&format!("Order {number}"), Some(&visitor), body).into_response()
}

/// Where the order's closeout stands, with the way to it.
fn closeout_state(visitor: &Visitor, order: &Order) -> Markup {
    let Some(store) = &order.store else {
        return html! {};
    };
    let number = segment(&order.number);
    html! {
        h2 { "Closeout" }
        @match &store.closeout {
            Some(closeout) => {
                p #closeout-state data-closed-out="true" {
                    "Closed out. "
                    a href={ "/orders/" (number) "/packing-slip" } { "Packing slip" } " · "
                    a href={ "/orders/" (number) "/invoice" } { "Invoice" }
                    @if let Some(charge) = &closeout.settlement {
                        " · Card settled: charge " (charge.id) " of " (charge.amount)
                    }
                }
            }
            None => {
                p #closeout-state data-closed-out="false" { "Not closed out yet." }
                @if let Some(error) = &store.settlement_error {
                    p.refusal { "The last settlement failed: " (error) }
                }
                @if visitor.may(Permission::CloseOutOrders) {
                    p { a #closeout-order.button href={ "/orders/" (number) "/closeout" } { "Closeout order" } }
                }
            }
        }
    }
}

/// The Closeout order window on one of its tabs.
pub async fn window(
    State(state): State<Arc<AppState>>,
    visitor: Visitor,
    Path(number): Path<String>,
    Query(query): Query<TabQuery>,
) -> Response {
    if let Some(refusal) = visitor.refuse_without(Permission::CloseOutOrders) {
        return refusal;
    }
    closeout_window(&state, &visitor, &number, query.tab.as_deref(), None)
}

fn closeout_window(
    state: &AppState,
    visitor: &Visitor,
    number: &str,
    tab: Option<&str>,
    problem: Option<(StatusCode, &str)>,
) -> Response {
    let model = state.model();
    let card = model
        .orders()
        .get(number)
        .and_then(|order| order.store.as_ref())
        .is_some_and(|store| store.payment == Payment::CreditCard);
    let preview = match model.closeout_preview(number, state.clock.now()) {
        Ok(preview) => preview,
        Err(err) => return refused(visitor, err.into()),
    };
    let tab = match tab {
        Some("invoice") => "invoice",
        Some("settlement") if card => "settlement",
        _ => "packing-slip",
    };
    let mut tabs = vec![("packing-slip", "Packing slip"), ("invoice", "Invoice")];
    if card {
        tabs.push(("settlement", "Settlement"));
    }
    let path = format!("/orders/{}/closeout", segment(number));
    let body = html! {
        h1 { "Closeout order " (number) }
        @if let Some((_, message)) = problem {
            p.refusal role="alert" { (message) }
        }
        nav.tabs {
            @for (name, label) in &tabs {
                a class={ "tab" @if *name == tab { " active" } } id={ "tab-" (name) }
                    href={ (path) "?tab=" (name) } { (label) }
            }
        }
        section.tab-body {
            @match tab {
                "invoice" => {
                    (invoice_body(number, &preview.invoice, None))
                    p.note { "Line item values are as the store sent them and cannot be changed here: to change them, close out in the store." }
                }
                "settlement" => {
                    h2 { "Settlement" }
                    p { "The card is charged " strong { (preview.invoice.total) } " when the order is closed out, once, however often it is tried." }
                }
                _ => {
                    (packing_slip_body(number, &preview.packing_slip))
                    p.note { "One packing slip per order, with the whole order's shipping; line item shipping cannot be changed here: to change it, close out in the store." }
                }
            }
        }
        form #closeout-form method="post" action=(path) {
            (csrf_field(visitor))
            button #close-out type="submit" { "Close out order" }
            " " a href={ "/orders/" (segment(number)) } { "Cancel" }
        }
    };
    let status = problem.map_or(StatusCode::OK, |(status, _)| status);
    (
        status,
        page(&format!("Closeout {number}"), Some(visitor), body),
    )
        .into_response()
}

/// Closes out; when not every job is ready, asks first.
pub async fn close_out(
    State(state): State<Arc<AppState>>,
    visitor: Visitor,
    Path(number): Path<String>,
    Form(form): Form<CloseoutForm>,
) -> Response {
    if let Some(refusal) = visitor.refuse_forged(&form.csrf) {
        return refusal;
    }
    let request = CloseoutRequest {
        confirm: form.confirm,
        ..CloseoutRequest::default()
    };
    let now = state.clock.now();
    let fault = state.faults.get().payment;
    let answer = state
        .change(|model| model.close_out(&visitor.user, &number, &request, fault, now))
        .and_then(|closed| closed.map_err(ApiError::from));
    match answer {
        Ok(_) => Redirect::to(&format!("/orders/{}", segment(&number))).into_response(),
        Err(err) if err.code == "jobs_not_ready" => {
            not_ready_warning(&state, &visitor, &number, &err)
        }
        Err(err) => closeout_window(
            &state,
            &visitor,
            &number,
            None,
            Some((err.status, &err.message)),
        ),
    }
}

/// The warning a person answers Yes to: which jobs are not ready, and in what state.
fn not_ready_warning(
    state: &AppState,
    visitor: &Visitor,
    number: &str,
    err: &ApiError,
) -> Response {
    let model = state.model();
    let body = html! {
        h1 { "Closeout order " (number) }
        div #not-ready.warning role="alert" {
            p { "Not every job of this order is ready for closeout:" }
            ul {
                @for id in &err.jobs {
                    li data-job=(id) {
                        (id)
                        @if let Some(job) = model.jobs().get(id) { " " (job.name) ": " (job.state.label()) }
                    }
                }
            }
            p { "Close the order out anyway?" }
            form method="post" action={ "/orders/" (segment(number)) "/closeout" } {
                (csrf_field(visitor))
                input type="hidden" name="confirm" value="true";
                button #confirm-closeout type="submit" { "Yes" }
                " " a #cancel-closeout href={ "/orders/" (segment(number)) } { "No" }
            }
        }
    };
    (
        StatusCode::CONFLICT,
        page(&format!("Closeout {number}"), Some(visitor), body),
    )
        .into_response()
}

/// A closed-out order's packing slip or invoice, to print.
pub async fn document(
    State(state): State<Arc<AppState>>,
    visitor: Visitor,
    Path((number, document)): Path<(String, String)>,
) -> Response {
    match documents::of_order(&state.model(), &number, &document) {
        Ok(page) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response(),
        Err(err) => refused(&visitor, err),
    }
}
