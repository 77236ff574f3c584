//! A record of the agent requests the mock server answered, so tests (and a person
//! at `GET /api/v1/operator/requests`) can see what the agent asked for: which ranges
//! it resumed from, how often it retried, over how many connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::AppState;

/// The most requests kept; older ones are forgotten.
const KEEP: usize = 100_000;

/// One answered agent request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// The `Range` header, when the agent asked for part of a file.
    pub range: Option<String>,
    pub status: u16,
    /// The agent's address and port, which name the connection: requests that share
    /// it came over one reused connection.
    pub client: Option<String>,
}

/// The log itself.
#[derive(Debug, Default)]
pub struct RequestLog {
    records: Mutex<Vec<RequestRecord>>,
    /// Claims open right now that may be held until work comes (long polling): a
    /// request is only logged once answered, and a test must know one is waiting.
    held_claims: AtomicUsize,
}

/// Counts a claim as held open while it lives.
pub struct HeldClaim<'a> {
    log: &'a RequestLog,
}

impl Drop for HeldClaim<'_> {
    fn drop(&mut self) {
        self.log.held_claims.fetch_sub(1, Ordering::SeqCst);
    }
}

impl RequestLog {
    fn push(&self, record: RequestRecord) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.len() >= KEEP {
            records.drain(..KEEP / 10);
        }
        records.push(record);
    }

    /// Counts a claim that may be held as open until the value is dropped.
    pub fn hold_claim(&self) -> HeldClaim<'_> {
        self.held_claims.fetch_add(1, Ordering::SeqCst);
        HeldClaim { log: self }
    }

    /// How many claims are open now, waiting for work.
    pub fn held_claims(&self) -> usize {
        self.held_claims.load(Ordering::SeqCst)
    }

    pub fn all(&self) -> Vec<RequestRecord> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Middleware that records every agent request with its answer's status.
pub async fn record(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let range = request
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.to_string());
    let response = next.run(request).await;
    state.requests.push(RequestRecord {
        method,
        path,
        range,
        status: response.status().as_u16(),
        client,
    });
    response
}
