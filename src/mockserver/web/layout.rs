//! The frame every page shares: head, navigation, who is logged in, and the page for
//! a refusal.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::visitor::Visitor;

/// A whole page: `title`, the navigation for `visitor` (none on the log-in page), and
/// `body`.
pub fn page(title: &str, visitor: Option<&Visitor>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · tbot job side" }
                link rel="stylesheet" href="/assets/style.css";
                script src="/assets/live.js" defer {}
            }
            body {
                header {
                    span.brand { "tbot job side" }
                    @if let Some(visitor) = visitor {
                        nav {
                            a href="/" { "Jobs" }
                            a href="/queues" { "Queues & agents" }
                        }
                        form.logout method="post" action="/logout" {
                            (csrf_field(visitor))
                            span #user { (visitor.user) }
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The hidden field that proves a form came from this session's page.
pub fn csrf_field(visitor: &Visitor) -> Markup {
    html! { input type="hidden" name="csrf" value=(visitor.csrf); }
}

/// A page that says why something was refused, with the way back.
pub fn refusal_page(visitor: &Visitor, status: StatusCode, message: &str) -> Response {
    let body = html! {
        h1 { "Refused" }
        p.refusal role="alert" { (message) }
        p { a href="/" { "Back to the jobs" } }
    };
    (status, page("Refused", Some(visitor), body)).into_response()
}

/// A page for a refusal the model or API decided.
pub fn refused(visitor: &Visitor, err: super::super::api_error::ApiError) -> Response {
    refusal_page(visitor, err.status, &err.message)
}
