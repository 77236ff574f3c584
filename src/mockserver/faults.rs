//! Fault injection for the mock server, so the agent's tests are honest: error answers
//! at a rate, downloads cut off after N bytes or at random, corrupted bytes, slow
//! transfers, and whole periods of being down. Random choices come from a seeded
//! generator, so a failing run can be repeated with the same seed.

use std::sync::Mutex;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::api_error::ApiError;
use super::model::PaymentFault;
use super::AppState;

/// Size of the pieces a faulty download is sent in.
const PIECE: usize = 64 * 1024;

/// What may go wrong, as a person or a test sets it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Seed for every random choice below.
    pub seed: u64,
    /// Share of agent requests (0.0 to 1.0) answered `503` with `Retry-After: 1`.
    pub error_rate: f64,
    /// Every download is cut off (the connection dropped) after this many bytes.
    pub drop_after: Option<u64>,
    /// Share of downloads cut off at a random point.
    pub truncate_rate: f64,
    /// Share of downloads with one byte changed.
    pub corrupt_rate: f64,
    /// Downloads are sent no faster than this many bytes per second.
    pub bytes_per_second: Option<u64>,
    /// Downloads ignore `Range` and always send the whole file with `200`.
    pub ignore_ranges: bool,
    /// From now, every agent request is answered `503` for this long.
    #[serde(with = "humantime_serde")]
    pub down_for: Option<Duration>,
    /// What the simulated payment step does at an order's closeout: `declined`, or
    /// `timeout` (charged, the answer lost).
    pub payment: Option<PaymentFault>,
}

/// The faults in force and the generator behind their random choices.
pub struct FaultState {
    inner: Mutex<Active>,
}

struct Active {
    faults: Faults,
    rng: StdRng,
    down_until: Option<Instant>,
}

/// How one download is to go wrong, decided when it starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct DownloadPlan {
    cut_at: Option<u64>,
    corrupt_at: Option<u64>,
    bytes_per_second: Option<u64>,
}

impl Default for FaultState {
    fn default() -> Self {
        FaultState::new(Faults::default())
    }
}

impl FaultState {
    pub fn new(faults: Faults) -> FaultState {
        let state = FaultState {
            inner: Mutex::new(Active {
                rng: StdRng::seed_from_u64(0),
                faults: Faults::default(),
                down_until: None,
            }),
        };
        state.set(faults);
        state
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Active> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts `faults` in force, re-seeding the generator.
    pub fn set(&self, faults: Faults) {
        let mut active = self.lock();
        active.rng = StdRng::seed_from_u64(faults.seed);
        active.down_until = faults.down_for.map(|d| Instant::now() + d);
        active.faults = faults;
    }

    pub fn get(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// Whether this request is to be refused as if the server were down or failing.
    fn refuse_now(&self) -> Option<&'static str> {
        let mut active = self.lock();
        if active
            .down_until
            .is_some_and(|until| Instant::now() < until)
        {
            return Some("the server is down for a while (injected fault)");
        }
        let rate = active.faults.error_rate;
        (rate > 0.0 && active.rng.random_bool(rate.min(1.0))).then_some("injected error")
    }

    /// Decides how a download of `len` bytes goes wrong.
    pub fn plan_download(&self, len: u64) -> DownloadPlan {
        let mut active = self.lock();
        let faults = active.faults.clone();
        let mut cut_at = faults.drop_after.filter(|&n| n < len);
        if len > 0
            && faults.truncate_rate > 0.0
            && active.rng.random_bool(faults.truncate_rate.min(1.0))
        {
            let at = active.rng.random_range(0..len);
            cut_at = Some(cut_at.map_or(at, |c| c.min(at)));
        }
        let corrupt_at = (len > 0
            && faults.corrupt_rate > 0.0
            && active.rng.random_bool(faults.corrupt_rate.min(1.0)))
        .then(|| active.rng.random_range(0..len));
        DownloadPlan {
            cut_at,
            corrupt_at,
            bytes_per_second: faults.bytes_per_second.filter(|&b| b > 0),
        }
    }
}

/// Middleware on the agent endpoints: answers `503` while the server is "down" or when
/// the error rate says so.
pub async fn refuse_requests(
    State(state): State<std::sync::Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(why) = state.faults.refuse_now() {
        let mut response =
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return response;
    }
    next.run(request).await
}

impl DownloadPlan {
    /// Whether the body can be sent as it is.
    pub fn is_clean(&self) -> bool {
        self.cut_at.is_none() && self.corrupt_at.is_none() && self.bytes_per_second.is_none()
    }

    /// The body of `bytes` (which start at `offset` of the file) sent in pieces,
    /// changed, slowed or cut off as planned. A cut ends the stream with an error,
    /// which drops the connection mid-body.
    pub fn body(self, bytes: Bytes) -> Body {
        let stream =
            futures_util::stream::unfold((bytes, 0u64, self), |(bytes, sent, plan)| async move {
                let len = bytes.len() as u64;
                if sent >= len {
                    return None;
                }
                if plan.cut_at.is_some_and(|cut| sent >= cut) {
                    // Give the server a moment to flush what was sent, as a real
                    // connection that breaks mid-file would have delivered it.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let cut: std::io::Result<Bytes> =
                        Err(std::io::Error::other("connection dropped (injected fault)"));
                    return Some((cut, (bytes, len, plan)));
                }
                let mut end = (sent + PIECE as u64).min(len);
                if let Some(cut) = plan.cut_at {
                    end = end.min(cut.max(sent + 1));
                }
                let mut piece = bytes.slice(sent as usize..end as usize).to_vec();
                if let Some(at) = plan.corrupt_at.filter(|at| (sent..end).contains(at)) {
                    piece[(at - sent) as usize] ^= 0x5a;
                }
                if let Some(rate) = plan.bytes_per_second {
                    tokio::time::sleep(Duration::from_secs_f64(piece.len() as f64 / rate as f64))
                        .await;
                }
                Some((Ok(Bytes::from(piece)), (bytes, end, plan)))
            });
        Body::from_stream(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn a_cut_body_sends_the_bytes_before_the_cut_then_fails() {
        let plan = DownloadPlan {
            cut_at: Some(100_000),
            corrupt_at: None,
            bytes_per_second: None,
        };
        let mut stream = plan
            .body(Bytes::from(vec![1u8; 300_000]))
            .into_data_stream();
        let mut received = 0;
        let mut failed = false;
        while let Some(piece) = stream.next().await {
            match piece {
                Ok(bytes) => received += bytes.len(),
                Err(_) => failed = true,
            }
        }
        assert_eq!(received, 100_000);
        assert!(failed);
    }
}
