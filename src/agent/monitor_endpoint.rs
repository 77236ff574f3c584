//! The agent's monitoring endpoint on `[metrics] listen`: `GET /metrics` for
//! Prometheus, and `GET /healthz` for a load balancer or a monitoring check, `200`
//! while the main loop turns and the journal can be written, `503` with the reason
//! otherwise. Plain HTTP without a token: listen on loopback or behind a firewall.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use super::delivery::Worker;
use super::metrics::Metrics;
use crate::shutdown::Shutdown;

/// The main loop counts as stuck when it has not turned for this long, as long as
/// the unit's `WatchdogSec=`: it turns at least every pick-up look (seconds), and a
/// heartbeat to a server that does not answer holds it for under three minutes
/// (five tries of at most 30 s each, and their pauses).
const STUCK_AFTER: Duration = Duration::from_secs(300);

/// When the main loop last turned, as the health check sees it.
#[derive(Debug)]
pub(crate) struct LoopBeat {
    started: Instant,
    /// Milliseconds from `started` to the last turn.
    last: AtomicU64,
}

impl LoopBeat {
    pub(crate) fn new() -> LoopBeat {
        LoopBeat {
            started: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    /// The loop turned just now.
    pub(crate) fn turned(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    fn since_last(&self) -> Duration {
        self.started
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }
}

/// What the endpoint reads.
#[derive(Clone)]
pub(crate) struct Monitored {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) worker: Arc<Worker>,
    pub(crate) beat: Arc<LoopBeat>,
}

/// Binds `listen` now, so a port in use stops the start with a clear error, and
/// serves until `shutdown`. The address it listens on (port 0 picks a free one).
pub(crate) async fn start(
    listen: SocketAddr,
    monitored: Monitored,
    shutdown: Shutdown,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("metrics.listen {listen}: cannot listen"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(monitored);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await;
        if let Err(err) = served {
            tracing::error!("the metrics endpoint stopped: {err}");
        }
    });
    Ok((bound, task))
}

async fn metrics(State(monitored): State<Monitored>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        monitored.metrics.encode(),
    )
}

async fn healthz(State(monitored): State<Monitored>) -> (StatusCode, String) {
    let since = monitored.beat.since_last();
    if since > STUCK_AFTER {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the main loop has not turned for {} s\n", since.as_secs()),
        );
    }
    match monitored.worker.journal_trouble() {
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
        None => (StatusCode::OK, "ok\n".into()),
    }
}
