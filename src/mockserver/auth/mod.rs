//! Who is acting: operators prove it with their password once, then with an API token
//! (`tbot mock`, the operator API) or a session cookie (the web page). No request acts as a user it has
//! not proved it is.

mod password;
mod sessions;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum_extra::extract::CookieJar;
use rand::RngCore;
use sha2::{Digest, Sha256};

pub use password::PasswordHash;
pub use sessions::{session_cookie, Session, Sessions, SESSION_COOKIE};

use super::api_error::ApiError;
use super::settings::UserEntry;
use super::{bearer_token, AppState};

/// 32 random bytes as hex: session ids, CSRF tokens and API tokens.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The operators' passwords, and the API tokens and sessions they hold now.
pub struct Accounts {
    passwords: BTreeMap<String, PasswordHash>,
    /// Checked for a name nobody has, so a wrong name takes as long as a wrong password.
    decoy: PasswordHash,
    /// SHA-256 of each API token to its user: the tokens themselves are not kept.
    api_tokens: Mutex<HashMap<String, String>>,
    pub sessions: Sessions,
    /// One password check at a time: argon2 is slow on purpose, and a flood of log-ins
    /// must leave the other core to the agents' requests.
    password_checks: tokio::sync::Semaphore,
}

impl Accounts {
    pub fn new(users: &[UserEntry]) -> Accounts {
        Accounts {
            passwords: users
                .iter()
                .map(|user| (user.name.clone(), user.password.clone()))
                .collect(),
            decoy: PasswordHash::of(&random_token()),
            api_tokens: Mutex::default(),
            sessions: Sessions::default(),
            password_checks: tokio::sync::Semaphore::new(1),
        }
    }

    /// Whether `name` is a user and `password` is theirs (blocks for argon2's while).
    fn check_password(&self, name: &str, password: &str) -> bool {
        match self.passwords.get(name) {
            Some(hash) => hash.matches(password),
            None => {
                self.decoy.matches(password);
                false
            }
        }
    }

    /// Whether `name` logs in with `password`, checked on the blocking pool, one check
    /// at a time.
    pub async fn log_in(state: &Arc<AppState>, name: &str, password: &str) -> bool {
        let Ok(_turn) = state.accounts.password_checks.acquire().await else {
            return false;
        };
        let (state, name, password) = (state.clone(), name.to_string(), password.to_string());
        tokio::task::spawn_blocking(move || state.accounts.check_password(&name, &password))
            .await
            .unwrap_or(false)
    }

    /// A new API token that acts as `user` until the server stops.
    pub fn issue_api_token(&self, user: &str) -> String {
        let token = format!("tbot-op-{}", random_token());
        self.tokens().insert(digest(&token), user.to_string());
        token
    }

    fn user_of_api_token(&self, token: &str) -> Option<String> {
        self.tokens().get(&digest(token)).cloned()
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.api_tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The session a request's cookie names, if it is open.
    pub fn session_of(&self, cookies: &CookieJar) -> Option<Session> {
        self.sessions.find(cookies.get(SESSION_COOKIE)?.value())
    }
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The user an operator API request acts as, proved by its API token. The API takes no
/// cookies: a browser's session reaches only the web page's own forms.
pub struct Operator(pub String);

impl FromRequestParts<Arc<AppState>> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Operator, ApiError> {
        if let Some(token) = bearer_token(&parts.headers) {
            return state
                .accounts
                .user_of_api_token(token)
                .map(Operator)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "bad_token",
                        "this API token is not valid here (tokens end when the server \
                         restarts): log in again with `tbot mock login`",
                    )
                });
        }
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "not_logged_in",
            "log in first: send an API token from `tbot mock login` as \
             `Authorization: Bearer TOKEN`",
        ))
    }
}
