//! The web page a person operates the job side with: server-rendered HTML (maud), one
//! small script for live updates, assets compiled into the binary.

mod jobs;
mod layout;
mod login;
mod orders;
mod queues;
mod send;
mod visitor;

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

use super::AppState;

const STYLE: &str = include_str!("style.css");
const LIVE_SCRIPT: &str = include_str!("live.js");

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(jobs::page_of_jobs))
        .route("/live/jobs", get(jobs::live_jobs))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::log_out))
        .route("/jobs/{id}/{action}", post(jobs::act))
        .route("/settings/autosend", post(jobs::set_autosend))
        .route("/send", get(send::window).post(send::send))
        .route("/orders/{number}", get(orders::details))
        .route(
            "/orders/{number}/closeout",
            get(orders::window).post(orders::close_out),
        )
        .route("/orders/{number}/{document}", get(orders::document))
        .route("/queues", get(queues::page_of_queues))
        .route("/assets/style.css", get(style))
        .route("/assets/live.js", get(live_script))
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

async fn live_script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        LIVE_SCRIPT,
    )
}
