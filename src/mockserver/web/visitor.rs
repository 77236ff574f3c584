//! The person a page is for: known by their session cookie, or sent to log in.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;

use super::super::model::Permission;
use super::super::AppState;
use super::layout::refusal_page;

/// A logged-in person, with their session's CSRF token for the forms of their pages
/// and what their profile allows (read once, so pages ask without locking the model).
pub struct Visitor {
    pub user: String,
    pub csrf: String,
    permissions: BTreeSet<Permission>,
}

impl Visitor {
    /// Whether their profile allows `permission`: what is not allowed is not shown.
    pub fn may(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }

    /// The refusal of a page or form their profile does not allow; none when it does.
    pub fn refuse_without(&self, permission: Permission) -> Option<Response> {
        (!self.may(permission)).then(|| {
            refusal_page(
                self,
                StatusCode::FORBIDDEN,
                &format!(
                    "Your profile does not have the {} permission.",
                    permission.describe()
                ),
            )
        })
    }

    /// The refusal of a form that does not carry this session's CSRF token; none
    /// when it does.
    pub fn refuse_forged(&self, sent: &str) -> Option<Response> {
        (sent != self.csrf).then(|| {
            refusal_page(
                self,
                StatusCode::FORBIDDEN,
                "This form is out of date or did not come from this page: reload the page and try again.",
            )
        })
    }
}

impl FromRequestParts<Arc<AppState>> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Visitor, Response> {
        let cookies = CookieJar::from_headers(&parts.headers);
        match state.accounts.session_of(&cookies) {
            Some(session) => Ok(Visitor {
                permissions: state.model().permissions_of(&session.user),
                user: session.user,
                csrf: session.csrf,
            }),
            None => Err(Redirect::to("/login").into_response()),
        }
    }
}
