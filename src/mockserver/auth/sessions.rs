//! Browser sessions: a random id in an `HttpOnly`, `SameSite=Strict` cookie, and the
//! CSRF token every form of that session carries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum_extra::extract::cookie::{Cookie, SameSite};

use super::random_token;

/// The cookie that carries the session id.
pub const SESSION_COOKIE: &str = "tbot_session";

/// A session unused this long is over: the person logs in again.
const IDLE_LIMIT: Duration = Duration::from_secs(12 * 60 * 60);

/// No session lasts longer, even on a screen that stays open (its page keeps asking).
const AGE_LIMIT: Duration = Duration::from_secs(24 * 60 * 60);

/// Who a session belongs to, and the token its forms must send back.
#[derive(Clone)]
pub struct Session {
    pub user: String,
    pub csrf: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user)
            .field("csrf", &"***")
            .finish()
    }
}

/// A session with when it was opened and last used.
struct Open {
    session: Session,
    opened: Instant,
    seen: Instant,
}

impl Open {
    fn is_over(&self) -> bool {
        self.seen.elapsed() >= IDLE_LIMIT || self.opened.elapsed() >= AGE_LIMIT
    }
}

/// The sessions open now. Kept in memory: a restarted server asks everyone to log in.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Open>>,
}

impl Sessions {
    /// Opens a session for `user`; answers its id.
    pub fn open(&self, user: &str) -> String {
        let id = random_token();
        let session = Session {
            user: user.to_string(),
            csrf: random_token(),
        };
        let mut open = self.lock();
        open.retain(|_, open| !open.is_over());
        let now = Instant::now();
        open.insert(
            id.clone(),
            Open {
                session,
                opened: now,
                seen: now,
            },
        );
        id
    }

    /// The live session with this id, marked as just used.
    pub fn find(&self, id: &str) -> Option<Session> {
        let mut open = self.lock();
        let found = open.get_mut(id)?;
        if found.is_over() {
            open.remove(id);
            return None;
        }
        found.seen = Instant::now();
        Some(found.session.clone())
    }

    /// Ends a session (logging out).
    pub fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Open>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The session cookie for `id`: sent back only to this server, never to scripts, never
/// on a request another site starts, and only over HTTPS when the server speaks it.
pub fn session_cookie(id: String, https: bool) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, id))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(https)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_id_until_closed() {
        let sessions = Sessions::default();
        let id = sessions.open("owner");
        let session = sessions.find(&id).unwrap();
        assert_eq!(session.user, "owner");
        assert_eq!(session.csrf.len(), 64);
        assert_ne!(session.csrf, id);
        assert!(sessions.find("not-a-session").is_none());
        sessions.close(&id);
        assert!(sessions.find(&id).is_none());
    }

    #[test]
    fn debug_output_hides_the_csrf_token() {
        let sessions = Sessions::default();
        let session = sessions.find(&sessions.open("owner")).unwrap();
        let shown = format!("{session:?}");
        assert!(
            !shown.contains(&session.csrf) && shown.contains("owner"),
            "{shown}"
        );
    }

    #[test]
    fn the_cookie_is_http_only_and_same_site_strict() {
        let text = session_cookie("abc".into(), true).to_string();
        for part in [
            "tbot_session=abc",
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Path=/",
        ] {
            assert!(text.contains(part), "{text}");
        }
        assert!(!session_cookie("abc".into(), false)
            .to_string()
            .contains("Secure"));
    }
}
