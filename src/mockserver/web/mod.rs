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

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
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
        .layer(middleware::from_fn(same_origin_only))
}

/// The page's security policy: its own scripts and styles only (the printable documents
/// carry their style inline), and never inside another site's frame.
const SECURITY_POLICY: &str =
    "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";

/// Refuses a form a browser posts from another origin. Another port on this machine is
/// another origin but the same site, so `SameSite` cookies alone would let its pages
/// post here; a client that is not a browser sends no `Origin` and is not refused.
async fn same_origin_only(request: Request, next: Next) -> Response {
    if !request.method().is_safe() && !from_this_origin(request.headers()) {
        tracing::warn!("a form posted from another origin was refused");
        return (
            StatusCode::FORBIDDEN,
            "This form was posted from another site: open the job side's page and use it there.",
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Whether a request comes from this server's own pages, by `Origin` (against `Host`)
/// and `Sec-Fetch-Site`, the headers browsers send with a form.
fn from_this_origin(headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|value: &HeaderValue| value.to_str().ok())
    };
    let fetched_from_elsewhere = text(header::HeaderName::from_static("sec-fetch-site"))
        .is_some_and(|site| site != "same-origin" && site != "none");
    let origin_host = text(header::ORIGIN).map(|origin| {
        origin
            .split_once("://")
            .map_or(origin, |(_, host)| host)
            .to_string()
    });
    match origin_host {
        Some(origin) => !fetched_from_elsewhere && Some(origin.as_str()) == text(header::HOST),
        None => !fetched_from_elsewhere,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    header::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn a_form_from_this_page_is_taken() {
        assert!(from_this_origin(&headers(&[
            ("host", "127.0.0.1:8470"),
            ("origin", "http://127.0.0.1:8470"),
            ("sec-fetch-site", "same-origin"),
        ])));
        // curl and scripts send neither.
        assert!(from_this_origin(&headers(&[("host", "127.0.0.1:8470")])));
    }

    #[test]
    fn a_form_from_another_port_or_site_is_refused() {
        assert!(!from_this_origin(&headers(&[
            ("host", "127.0.0.1:8470"),
            ("origin", "http://127.0.0.1:9999"),
        ])));
        assert!(!from_this_origin(&headers(&[
            ("host", "127.0.0.1:8470"),
            ("sec-fetch-site", "same-site"),
        ])));
        assert!(!from_this_origin(&headers(&[
            ("host", "127.0.0.1:8470"),
            ("origin", "null"),
        ])));
    }
}
