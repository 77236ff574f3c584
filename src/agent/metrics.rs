//! What a Prometheus server scrapes from `[metrics] listen`: deliveries and bytes by
//! queue, how long deliveries and transfers take, what is in flight and waiting, the
//! queues' status, and how long ago the server was last reached. Counters move with
//! the [`super::events`] that log the same thing; gauges are set by the check loop.

use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// Every status a queue is announced with (PROTOCOL.md).
const QUEUE_STATUSES: [&str; 3] = ["ready", "stalled", "unavailable"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct QueueLabel {
    pub(crate) queue: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub(crate) queue: String,
    pub(crate) outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabels {
    pub(crate) queue: String,
    pub(crate) status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReportLabel {
    pub(crate) report: &'static str,
}

/// Every metric of one agent.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) deliveries: Family<OutcomeLabels, Counter>,
    pub(crate) claimed: Family<QueueLabel, Counter>,
    pub(crate) bytes: Family<QueueLabel, Counter>,
    pub(crate) files_dropped: Family<QueueLabel, Counter>,
    pub(crate) delivery_seconds: Family<QueueLabel, Histogram, fn() -> Histogram>,
    pub(crate) transfer_seconds: Family<QueueLabel, Histogram, fn() -> Histogram>,
    pub(crate) in_flight: Gauge,
    pub(crate) queue_status: Family<StatusLabels, Gauge>,
    pub(crate) reports_waiting: Gauge,
    pub(crate) reports_sent: Family<ReportLabel, Counter>,
    pub(crate) picked_up: Family<QueueLabel, Counter>,
    pub(crate) stalls: Family<QueueLabel, Counter>,
    pub(crate) stalled: Family<QueueLabel, Gauge>,
    server_reached: ServerReached,
}

/// Seconds from a tenth of a second to about three hours: a proof PDF on the local
/// network to a plate set over a slow line.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.5, 13))
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("tbot"),
            deliveries: Family::default(),
            claimed: Family::default(),
            bytes: Family::default(),
            files_dropped: Family::default(),
            delivery_seconds: Family::new_with_constructor(duration_histogram),
            transfer_seconds: Family::new_with_constructor(duration_histogram),
            in_flight: Gauge::default(),
            queue_status: Family::default(),
            reports_waiting: Gauge::default(),
            reports_sent: Family::default(),
            picked_up: Family::default(),
            stalls: Family::default(),
            stalled: Family::default(),
            server_reached: ServerReached::default(),
        };
        let registry = &mut metrics.registry;
        registry.register(
            "deliveries",
            "Deliveries ended, by queue and outcome (completed, failed, lease_lost, handed_back)",
            metrics.deliveries.clone(),
        );
        registry.register(
            "deliveries_claimed",
            "Deliveries claimed from the job side",
            metrics.claimed.clone(),
        );
        registry.register(
            "transferred_bytes",
            "Bytes downloaded and verified",
            metrics.bytes.clone(),
        );
        registry.register(
            "files_dropped",
            "Files moved into a hotfolder",
            metrics.files_dropped.clone(),
        );
        registry.register(
            "delivery_duration_seconds",
            "From claim (or restart) to the last file in the hotfolder",
            metrics.delivery_seconds.clone(),
        );
        registry.register(
            "transfer_duration_seconds",
            "Download and verification of one file",
            metrics.transfer_seconds.clone(),
        );
        registry.register(
            "deliveries_in_flight",
            "Deliveries being worked on now",
            metrics.in_flight.clone(),
        );
        registry.register(
            "queue_status",
            "1 for each queue's current status (ready, stalled, unavailable)",
            metrics.queue_status.clone(),
        );
        registry.register(
            "reports_waiting",
            "Reports and events journaled but not yet taken by the job side",
            metrics.reports_waiting.clone(),
        );
        registry.register(
            "reports_sent",
            "Reports and events the job side took, by kind",
            metrics.reports_sent.clone(),
        );
        registry.register(
            "files_picked_up",
            "Dropped files the device took from its hotfolder",
            metrics.picked_up.clone(),
        );
        registry.register(
            "stalls",
            "Dropped files found stalled, each counted once",
            metrics.stalls.clone(),
        );
        registry.register(
            "files_stalled",
            "Dropped files still in the hotfolder after the queue's stall_after",
            metrics.stalled.clone(),
        );
        registry.register(
            "build",
            "The running tbot",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register_collector(Box::new(metrics.server_reached.clone()));
        metrics
    }

    /// The server answered a heartbeat just now.
    pub(crate) fn server_reached(&self) {
        self.server_reached.now();
    }

    /// Sets `queue`'s status, dropping the one it had.
    pub(crate) fn set_queue_status(&self, queue: &str, status: &str) {
        let stale: Vec<StatusLabels> = QUEUE_STATUSES
            .into_iter()
            .filter(|other| *other != status)
            .map(|other| StatusLabels {
                queue: queue.to_string(),
                status: other.to_string(),
            })
            .collect();
        for labels in &stale {
            self.queue_status.remove(labels);
        }
        self.queue_status
            .get_or_create(&StatusLabels {
                queue: queue.to_string(),
                status: status.to_string(),
            })
            .set(1);
    }

    /// Forgets the gauges of a queue a reload removed.
    pub(crate) fn forget_queue(&self, queue: &str) {
        for status in QUEUE_STATUSES {
            self.queue_status.remove(&StatusLabels {
                queue: queue.to_string(),
                status: status.to_string(),
            });
        }
        self.stalled.remove(&QueueLabel {
            queue: queue.to_string(),
        });
    }

    /// Everything in the Prometheus (OpenMetrics) text format.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// When the server last answered, reported at each scrape as seconds since then;
/// absent until it has answered once.
#[derive(Debug, Clone, Default)]
struct ServerReached(std::sync::Arc<Mutex<Option<Instant>>>);

impl ServerReached {
    fn now(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }
}

impl Collector for ServerReached {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(at) = *self.0.lock().unwrap_or_else(|p| p.into_inner()) else {
            return Ok(());
        };
        let gauge = ConstGauge::new(at.elapsed().as_secs_f64());
        let metric = encoder.encode_descriptor(
            "seconds_since_server_reached",
            "Seconds since the job side last answered a heartbeat",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(metric)
    }
}
