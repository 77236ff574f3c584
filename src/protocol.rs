//! Wire types of the agent protocol, version 1.1 (`docs/api.md`, from `PROTOCOL.md`).
//!
//! Both halves use these types, so the agent and the bundled job side cannot drift
//! apart. Times travel as RFC 3339 in UTC; unknown fields are ignored on both sides.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The name a unit enum variant has on the wire, such as `sent_to_production` or
/// `ctp`, for messages, the journal and `tbot status`.
pub fn wire_name(value: &impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// Path prefix of every agent endpoint.
pub const AGENT_API: &str = "/api/v1/agent";

/// What kind of output device sits behind a queue's hotfolder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueKind {
    Printer,
    Ctp,
    Imposition,
    Other,
}

/// Whether the agent can drop files into a queue right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueStatus {
    Ready,
    Unavailable,
    Stalled,
}

/// One queue as announced in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncedQueue {
    pub name: String,
    pub kind: QueueKind,
    pub status: QueueStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `POST /heartbeat` body: who the agent is and which queues it serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    pub agent: String,
    pub version: String,
    pub queues: Vec<AnnouncedQueue>,
}

/// `GET /whoami` answer (1.1): who the token belongs to; nothing changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WhoamiResponse {
    pub agent: String,
    #[serde(with = "time::serde::rfc3339")]
    pub server_time: OffsetDateTime,
    pub protocol: String,
}

/// The protocol version this project speaks.
pub const PROTOCOL_VERSION: &str = "1.1";

/// `POST /heartbeat` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    #[serde(with = "time::serde::rfc3339")]
    pub server_time: OffsetDateTime,
    #[serde(default)]
    pub check_interval_s: Option<u64>,
}

/// `POST /claim` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimRequest {
    pub queues: Vec<String>,
    pub max: u32,
    #[serde(default)]
    pub wait_s: u64,
}

/// `POST /claim` answer: the deliveries now leased to this agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimResponse {
    pub deliveries: Vec<Delivery>,
}

/// One job's files going to one queue, once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub queue: String,
    #[serde(with = "time::serde::rfc3339")]
    pub lease_expires_at: OffsetDateTime,
    pub job: DeliveryJob,
    pub files: Vec<DeliveryFile>,
}

/// The job a delivery belongs to, as far as naming the dropped files and writing its
/// job ticket need it. A version-1 server sends neither `customer` nor `ticket`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryJob {
    pub id: String,
    pub name: String,
    pub order_number: Option<String>,
    pub send_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<JobTicket>,
}

/// What a device needs to produce a job (1.1); every field is optional, and a field
/// of the wrong type makes the delivery bad input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobTicket {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sides: Option<Sides>,
    /// `cmyk`, `gray`, `spot` or a free word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<Media>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finishing: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub due: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// Printed on one side of the sheet or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sides {
    OneSided,
    TwoSided,
}

/// The stock a job is printed on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Media {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width_mm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height_mm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_gsm: Option<f64>,
}

/// One file of a delivery. `size` is signed on purpose: a negative size from a broken
/// server must reach the agent's checks and be refused by name, not fail to parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryFile {
    pub name: String,
    pub size: i64,
    pub sha256: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "FileRole::is_content")]
    pub role: FileRole,
}

/// What a file is to the job (1.1): a version-1 server sends no role, which is content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileRole {
    #[default]
    Content,
    Cover,
    Separation,
    /// A ready-made job ticket from the job side: dropped after the files it names.
    Ticket,
}

impl FileRole {
    fn is_content(&self) -> bool {
        *self == FileRole::Content
    }
}

/// `POST /deliveries/{id}/renew` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewResponse {
    #[serde(with = "time::serde::rfc3339")]
    pub lease_expires_at: OffsetDateTime,
}

/// `POST /deliveries/{id}/complete` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteRequest {
    pub files: Vec<DroppedFile>,
}

/// Where one verified file ended up, relative to the queue's hotfolder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedFile {
    pub name: String,
    pub sha256: String,
    pub path: String,
}

/// `POST /deliveries/{id}/complete` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompleteResponse {
    pub job_state: String,
}

/// `POST /deliveries/{id}/fail` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailRequest {
    pub reason: String,
    pub retryable: bool,
}

/// What happened to a dropped file after the drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileEvent {
    PickedUp,
    Stalled,
    /// (1.1) The device moved the file into the queue's success folder.
    Accepted,
    /// (1.1) The device moved the file into the queue's error folder.
    Rejected,
}

/// `POST /deliveries/{id}/events` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRequest {
    pub event: FileEvent,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The body of every 4xx and 5xx answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// Machine-readable code and human-readable message of an error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}
