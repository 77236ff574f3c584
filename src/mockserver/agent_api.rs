//! The agent protocol's endpoints (PROTOCOL.md), served to agents that show a known
//! token.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::api_error::{ApiError, ApiJson};
use super::{bearer_token, AppState};
use crate::protocol::{
    ClaimRequest, ClaimResponse, CompleteRequest, CompleteResponse, EventRequest, FailRequest,
    HeartbeatRequest, HeartbeatResponse, RenewResponse, WhoamiResponse, PROTOCOL_VERSION,
};

/// Longest a claim may be held open, whatever the agent asks for.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// How often a held claim looks again even when nothing woke it (a lease may expire).
const RECHECK: Duration = Duration::from_secs(1);

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/agent/whoami", get(whoami))
        .route("/api/v1/agent/heartbeat", post(heartbeat))
        .route("/api/v1/agent/claim", post(claim))
        .route("/api/v1/agent/deliveries/{id}/renew", post(renew))
        .route("/api/v1/agent/deliveries/{id}/complete", post(complete))
        .route("/api/v1/agent/deliveries/{id}/fail", post(fail))
        .route("/api/v1/agent/deliveries/{id}/events", post(event))
        .route("/api/v1/agent/files/{file_id}", get(file))
}

/// The agent a request comes from, known by its bearer token.
pub struct Agent(String);

impl FromRequestParts<Arc<AppState>> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        state
            .agent_tokens
            .get(token)
            .map(|name| Agent(name.clone()))
            .ok_or_else(ApiError::unauthorized)
    }
}

/// Who the token belongs to, and the server's time; records nothing.
async fn whoami(State(state): State<Arc<AppState>>, Agent(agent): Agent) -> Json<WhoamiResponse> {
    Json(WhoamiResponse {
        agent,
        server_time: state.clock.now(),
        protocol: PROTOCOL_VERSION.into(),
    })
}

async fn heartbeat(
    State(state): State<Arc<AppState>>,
    Agent(agent): Agent,
    ApiJson(request): ApiJson<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let now = state.clock.now();
    state.change(|model| model.heartbeat(&agent, &request, now))?;
    tracing::debug!(agent, queues = request.queues.len(), "heartbeat");
    Ok(Json(HeartbeatResponse {
        server_time: now,
        check_interval_s: None,
    }))
}

/// Leases pending deliveries; when there are none, holds the request open up to
/// `wait_s` seconds and answers as soon as one becomes claimable.
async fn claim(
    State(state): State<Arc<AppState>>,
    Agent(agent): Agent,
    ApiJson(request): ApiJson<ClaimRequest>,
) -> Result<Json<ClaimResponse>, ApiError> {
    let wait = if state.model().settings().hold_claims {
        Duration::from_secs(request.wait_s).min(MAX_WAIT)
    } else {
        Duration::ZERO
    };
    let deadline = tokio::time::Instant::now() + wait;
    let max = usize::try_from(request.max).unwrap_or(usize::MAX);
    let _held = (!wait.is_zero()).then(|| state.requests.hold_claim());
    loop {
        let woken = state.claimable.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let now = state.clock.now();
        let deliveries =
            state.change_leases(|model| model.claim(&agent, &request.queues, max, now))?;
        let now = tokio::time::Instant::now();
        if !deliveries.is_empty() || now >= deadline || max == 0 {
            if !deliveries.is_empty() {
                tracing::info!(agent, count = deliveries.len(), "deliveries leased");
            }
            return Ok(Json(ClaimResponse { deliveries }));
        }
        let _ = tokio::time::timeout((deadline - now).min(RECHECK), woken).await;
    }
}

async fn renew(
    State(state): State<Arc<AppState>>,
    Agent(agent): Agent,
    Path(id): Path<String>,
) -> Result<Json<RenewResponse>, ApiError> {
    let now = state.clock.now();
    let lease_expires_at = state.change_leases(|model| model.renew(&agent, &id, now))??;
    Ok(Json(RenewResponse { lease_expires_at }))
}

async fn complete(
    State(state): State<Arc<AppState>>,
    Agent(agent): Agent,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<CompleteRequest>,
) -> Result<Json<CompleteResponse>, ApiError> {
    let now = state.clock.now();
    let job_state =
        state.change_leases(|model| model.complete(&agent, &id, request.files, now))??;
    tracing::info!(agent, delivery = id, "delivery completed");
    Ok(Json(CompleteResponse {
        job_state: job_state.code(),
    }))
}

async fn fail(
    State(state): State<Arc<AppState>>,
    Agent(agent): Agent,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<FailRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = state.clock.now();
    state.change(|model| model.fail(&agent, &id, &request.reason, request.retryable, now))??;
    tracing::info!(
        agent,
        delivery = id,
        reason = request.reason,
        retryable = request.retryable,
        "delivery failed"
    );
    Ok(Json(serde_json::json!({})))
}

async fn event(
    State(state): State<Arc<AppState>>,
    Agent(_agent): Agent,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<EventRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.change_leases(|model| model.record_event(&id, request))??;
    Ok(Json(serde_json::json!({})))
}

/// A stored file's bytes, whole or from an offset (`Range: bytes=N-`), with its
/// SHA-256 as the `ETag` so a resumed download can check it is the same file.
async fn file(
    State(state): State<Arc<AppState>>,
    Agent(_agent): Agent,
    Path(file_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let stored = state.files.get(&file_id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_file",
            format!("there is no file {file_id}"),
        )
    })?;
    let etag = format!("\"{}\"", stored.sha256);
    let bytes = stored.bytes;
    let total = bytes.len() as u64;
    let if_range_matches = headers
        .get(header::IF_RANGE)
        .is_none_or(|value| value.to_str().ok() == Some(etag.as_str()));
    let range = headers
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
        .filter(|_| if_range_matches && !state.faults.get().ignore_ranges)
        .map(|value| parse_range(value, total));
    match range {
        None => Ok((
            [
                (header::ETAG, etag),
                (header::ACCEPT_RANGES, "bytes".to_string()),
            ],
            body_with_faults(&state, bytes),
        )
            .into_response()),
        Some(Some((start, end))) => {
            let part = bytes.slice(start as usize..=end as usize);
            Ok((
                StatusCode::PARTIAL_CONTENT,
                [
                    (header::ETAG, etag),
                    (
                        header::CONTENT_RANGE,
                        format!("bytes {start}-{end}/{total}"),
                    ),
                ],
                body_with_faults(&state, part),
            )
                .into_response())
        }
        Some(None) => Ok((
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{total}"))],
        )
            .into_response()),
    }
}

/// The download body, with whatever faults are in force. `Content-Length` is always
/// the exact length, also when the body is going to be cut off.
fn body_with_faults(
    state: &AppState,
    bytes: axum::body::Bytes,
) -> ([(header::HeaderName, String); 1], Body) {
    let length = [(header::CONTENT_LENGTH, bytes.len().to_string())];
    let plan = state.faults.plan_download(bytes.len() as u64);
    if plan.is_clean() {
        (length, Body::from(bytes))
    } else {
        (length, plan.body(bytes))
    }
}

/// Parses `bytes=N-` or `bytes=N-M` into an inclusive range within `total` bytes;
/// `None` when it cannot be satisfied.
fn parse_range(value: &str, total: u64) -> Option<(u64, u64)> {
    let spec = value.strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = match end.trim() {
        "" => total.checked_sub(1)?,
        end => end.parse::<u64>().ok()?.min(total.checked_sub(1)?),
    };
    (start <= end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=10-", 100), Some((10, 99)));
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("items=1-", 100), None);
    }
}
