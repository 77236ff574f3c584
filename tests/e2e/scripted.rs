//! A scripted job side for the hostile-server tests: it answers each agent endpoint the
//! way a test tells it to (lying, echoing, malformed, slow) and records every request as
//! it arrived, so a test can check what the agent sent, with which token, to which path.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};

/// One canned answer: a status and the body bytes exactly as they go out.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(status: u16, body: Value) -> Answer {
        Answer {
            status,
            body: body.to_string().into_bytes(),
        }
    }

    pub fn raw(status: u16, body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status,
            body: body.into(),
        }
    }
}

/// One request the scripted server received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The path as it came in, percent-encoding and all.
    pub path: String,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Seen {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What the scripted server does; built with [`ScriptedServer::builder`].
#[derive(Debug, Default)]
pub struct Script {
    /// Answers to claims, one per claim, each held back until a request whose path
    /// ends with its gate (when it has one) has been seen; meanwhile, and afterwards,
    /// claims get no deliveries.
    claims: VecDeque<(Option<String>, Answer)>,
    /// Answers to renewals, one per renewal; afterwards `renewals_then`.
    renewals: VecDeque<Answer>,
    /// The answer to renewals once `renewals` are used up; by default a lease of five
    /// more minutes.
    renewals_then: Option<Answer>,
    /// Answers to `complete`, one per report; afterwards `complete`.
    completions: VecDeque<Answer>,
    /// The answer to every other `complete`; by default `200 {"job_state": ...}`.
    complete: Option<Answer>,
    /// How far the server's clock is from the real one, in `server_time`.
    clock_offset: time::Duration,
    /// Fixed answers at exact paths (files, or one delivery's endpoint), each after a
    /// delay; they come before every other rule.
    fixed: HashMap<String, (Answer, Duration)>,
}

/// Builds a [`ScriptedServer`].
#[derive(Debug, Default)]
pub struct ScriptBuilder {
    script: Script,
}

impl ScriptBuilder {
    /// The next claim gets this answer.
    pub fn claim(mut self, answer: Answer) -> Self {
        self.script.claims.push_back((None, answer));
        self
    }

    /// The next claim after a request whose path ends with `gate` gets these deliveries.
    pub fn claim_deliveries_after(mut self, gate: &str, deliveries: Vec<Value>) -> Self {
        let answer = Answer::json(200, json!({ "deliveries": deliveries }));
        self.script
            .claims
            .push_back((Some(gate.to_string()), answer));
        self
    }

    /// The next claim gets these deliveries.
    pub fn claim_deliveries(self, deliveries: Vec<Value>) -> Self {
        self.claim(Answer::json(200, json!({ "deliveries": deliveries })))
    }

    /// The next renewal gets this answer.
    pub fn renewal(mut self, answer: Answer) -> Self {
        self.script.renewals.push_back(answer);
        self
    }

    /// Renewals after those scripted with [`ScriptBuilder::renewal`] get this answer.
    pub fn renewals_then(mut self, answer: Answer) -> Self {
        self.script.renewals_then = Some(answer);
        self
    }

    /// The next `complete` gets this answer.
    pub fn complete_once(mut self, answer: Answer) -> Self {
        self.script.completions.push_back(answer);
        self
    }

    /// Every `complete` not scripted with [`ScriptBuilder::complete_once`] gets this
    /// answer.
    pub fn complete(mut self, answer: Answer) -> Self {
        self.script.complete = Some(answer);
        self
    }

    /// The server's clock runs `offset` from the real one.
    pub fn clock_offset(mut self, offset: time::Duration) -> Self {
        self.script.clock_offset = offset;
        self
    }

    /// Serves `bytes` at `path`, after `delay`.
    pub fn file(self, path: &str, bytes: Vec<u8>, delay: Duration) -> Self {
        self.at(path, Answer::raw(200, bytes), delay)
    }

    /// Answers every request for exactly `path` with `answer`, after `delay`.
    pub fn at(mut self, path: &str, answer: Answer, delay: Duration) -> Self {
        self.script.fixed.insert(path.to_string(), (answer, delay));
        self
    }

    pub async fn start(self) -> ScriptedServer {
        let state = Arc::new(Shared {
            script: Mutex::new(self.script),
            seen: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("scripted server binds");
        let address = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ScriptedServer {
            url: format!("http://{address}"),
            state,
            task,
        }
    }
}

#[derive(Debug)]
struct Shared {
    script: Mutex<Script>,
    seen: Mutex<Vec<Seen>>,
}

/// The scripted job side, on a loopback port until dropped.
pub struct ScriptedServer {
    pub url: String,
    state: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedServer {
    pub fn builder() -> ScriptBuilder {
        ScriptBuilder::default()
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The requests so far whose path ends with `suffix`.
    pub fn seen_ending(&self, suffix: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|r| r.path.ends_with(suffix))
            .collect()
    }
}

/// A delivery as a claim answer carries it, with one file per (name, path, bytes).
pub fn delivery(
    id: &str,
    lease_expires_at: time::OffsetDateTime,
    files: &[(&str, &str, &[u8])],
) -> Value {
    json!({
        "id": id,
        "queue": "indigo-7900",
        "lease_expires_at": rfc3339(lease_expires_at),
        "job": {"id": "J-1", "name": "Business cards", "order_number": "MC-1", "send_count": 1},
        "files": files.iter().map(|(name, path, bytes)| json!({
            "name": name,
            "size": bytes.len(),
            "sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)),
            "url": path,
        })).collect::<Vec<_>>(),
    })
}

pub fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .expect("formattable time")
}

async fn answer(
    axum::extract::State(state): axum::extract::State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = Seen {
        path: uri.path().to_string(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
        body: body.to_vec(),
        at: Instant::now(),
    };
    let (canned, delay) = decide(&state, seen);
    tokio::time::sleep(delay).await;
    Response::builder()
        .status(StatusCode::from_u16(canned.status).expect("status"))
        .header("content-type", "application/json")
        .body(Body::from(canned.body))
        .expect("response")
}

/// Records `request` and picks its answer by the script.
fn decide(state: &Shared, request: Seen) -> (Answer, Duration) {
    let path = request.path.clone();
    let mut seen = state.seen.lock().unwrap();
    seen.push(request);
    let mut script = state.script.lock().unwrap();
    let server_now = time::OffsetDateTime::now_utc() + script.clock_offset;
    let lease = || {
        Answer::json(
            200,
            json!({"lease_expires_at": rfc3339(server_now + time::Duration::minutes(5))}),
        )
    };
    if let Some(fixed) = script.fixed.get(&path) {
        fixed.clone()
    } else if path.ends_with("/heartbeat") || path.ends_with("/whoami") {
        let answer = json!({"server_time": rfc3339(server_now), "check_interval_s": null});
        (Answer::json(200, answer), Duration::ZERO)
    } else if path.ends_with("/claim") {
        let open = script.claims.front().is_some_and(|(gate, _)| {
            gate.as_ref()
                .is_none_or(|gate| seen.iter().any(|r| r.path.ends_with(gate.as_str())))
        });
        let next = open.then(|| script.claims.pop_front()).flatten();
        let none = || Answer::json(200, json!({"deliveries": []}));
        (next.map_or_else(none, |(_, answer)| answer), Duration::ZERO)
    } else if path.ends_with("/renew") {
        let then = script.renewals_then.clone();
        let next = script.renewals.pop_front();
        (next.or(then).unwrap_or_else(lease), Duration::ZERO)
    } else if path.ends_with("/complete") {
        let default = Answer::json(200, json!({"job_state": "sent_to_production"}));
        let then = script.complete.clone().unwrap_or(default);
        (
            script.completions.pop_front().unwrap_or(then),
            Duration::ZERO,
        )
    } else if path.ends_with("/fail") || path.ends_with("/events") {
        (Answer::json(200, json!({})), Duration::ZERO)
    } else {
        let error = json!({"error": {"code": "not_found", "message": "no such path"}});
        (Answer::json(404, error), Duration::ZERO)
    }
}
