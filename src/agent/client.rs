//! The agent's HTTP client for the job side: the protocol's calls with the token, the
//! retry rules for transient failures, and the care that keeps the token at home.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use time::OffsetDateTime;
use tracing::warn;
use url::Url;

use super::claim_answer;
pub use super::claim_answer::Claimed;
use super::connection::{tls_advice, Connection};
use crate::config::{Secret, ServerConfig};
use crate::logging::clipped;
use crate::protocol::{
    ClaimRequest, CompleteRequest, CompleteResponse, ErrorBody, EventRequest, FailRequest,
    HeartbeatRequest, HeartbeatResponse, RenewResponse, WhoamiResponse, AGENT_API,
};

/// Longest text of the server's own (an error message) kept in an error.
const MAX_SERVER_TEXT: usize = 300;

/// Characters of a delivery id that go into a URL path as they are; everything else,
/// `.` and `/` included, is percent-encoded, so an id is always one path segment.
const ID_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// Largest JSON answer accepted from any endpoint; more is cut off as a transient fault.
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// How many redirects a file download follows.
const MAX_REDIRECTS: usize = 5;

/// Longest wait between retries, and the cap on a server's `Retry-After`.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Why a call to the job side did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// Worth trying again later: 5xx, 408, 429, time-outs, dropped connections.
    #[error("{what}")]
    Transient {
        what: String,
        retry_after: Option<Duration>,
    },
    /// The server refused the call (4xx) with a code and a message.
    #[error("the server refused ({status}, {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// The answer does not follow the protocol.
    #[error("bad answer from the server: {0}")]
    BadResponse(String),
}

impl ClientError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ClientError::Transient { .. })
    }

    /// The protocol's error code, for refusals.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The same error with `secret` blotted out of every text: a server's message may
    /// echo what it was sent, the `Authorization` header included.
    fn redacted(self, secret: &Secret) -> ClientError {
        let clean = |text: String| secret.redact(&text);
        match self {
            ClientError::Transient { what, retry_after } => ClientError::Transient {
                what: clean(what),
                retry_after,
            },
            ClientError::Refused {
                status,
                code,
                message,
            } => ClientError::Refused {
                status,
                code: clean(code),
                message: clean(message),
            },
            ClientError::BadResponse(what) => ClientError::BadResponse(clean(what)),
        }
    }

    fn from_reqwest(context: &str, err: reqwest::Error) -> ClientError {
        // reqwest's message names the URL but never headers, so the token stays out.
        let chain = error_chain(&err);
        let what = match tls_advice(&chain) {
            Some(advice) => format!("{context}: {chain}. {advice}"),
            None => format!("{context}: {chain}"),
        };
        ClientError::Transient {
            what,
            retry_after: None,
        }
    }
}

/// An error and its causes on one line, which is what an operator needs in a log.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Whether the server answered the last call. Shared by every clone of the client, so
/// that losing and regaining the connection is logged once each, whichever call (check,
/// transfer, report) notices first: a server down for an hour is two log lines.
#[derive(Debug)]
struct Link {
    up: AtomicBool,
}

impl Link {
    fn observe<T>(&self, result: &Result<T, ClientError>) {
        match result {
            Ok(_) => {
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::info!("connection to the server is back");
                }
            }
            Err(err @ ClientError::Transient { .. }) => {
                if self.up.swap(false, Ordering::Relaxed) {
                    tracing::warn!("lost the connection to the server, will keep trying: {err}");
                }
            }
            Err(_) => {}
        }
    }
}

/// How far the server's clock is ahead of ours, learnt from `server_time` in its
/// heartbeat answers: leases are the server's times and are judged on its clock.
#[derive(Debug, Default)]
struct ServerClock {
    offset: Mutex<Option<time::Duration>>,
}

impl ServerClock {
    fn observe(&self, server_time: OffsetDateTime, sent: OffsetDateTime) {
        let received = OffsetDateTime::now_utc();
        let midpoint = sent + (received - sent) / 2;
        *self.offset.lock().unwrap_or_else(|p| p.into_inner()) = Some(server_time - midpoint);
    }

    /// Our clock moved by the offset; `None` before the server has told its time (or
    /// when it says a time off the calendar, such as the year 9999).
    fn now(&self) -> Option<OffsetDateTime> {
        let offset = (*self.offset.lock().unwrap_or_else(|p| p.into_inner()))?;
        OffsetDateTime::now_utc().checked_add(offset)
    }
}

/// Talks to one job-side server as one agent.
#[derive(Clone)]
pub struct JobSideClient {
    /// Shared by every clone: a reload swaps it for all at once.
    connection: Arc<ArcSwap<Connection>>,
    retry: ExponentialBuilder,
    link: Arc<Link>,
    clock: Arc<ServerClock>,
}

impl JobSideClient {
    pub fn new(server: &ServerConfig) -> anyhow::Result<JobSideClient> {
        Ok(JobSideClient {
            connection: Arc::new(ArcSwap::from_pointee(Connection::new(server)?)),
            link: Arc::new(Link {
                up: AtomicBool::new(true),
            }),
            clock: Arc::new(ServerClock::default()),
            retry: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(MAX_RETRY_DELAY)
                .with_max_times(4)
                .with_jitter(),
        })
    }

    /// Uses another retry schedule (tests use a fast one).
    pub fn with_retry(mut self, retry: ExponentialBuilder) -> JobSideClient {
        self.retry = retry;
        self
    }

    /// Reaches the server over `connection` from the next call on, in every clone;
    /// calls on their way finish as they began.
    pub(crate) fn switch_to(&self, connection: Connection) {
        self.connection.store(Arc::new(connection));
    }

    fn connection(&self) -> Arc<Connection> {
        self.connection.load_full()
    }

    /// `text` with the agent token blotted out, for any text that came from the server.
    pub fn redact(&self, text: &str) -> String {
        self.connection().token.redact(text)
    }

    /// The time now on the server's clock, as far as its heartbeat answers tell; `None`
    /// until one has, since this agent started.
    pub fn server_now(&self) -> Option<OffsetDateTime> {
        self.clock.now()
    }

    /// Asks the server who the token belongs to (PROTOCOL.md 1.1), once, changing
    /// nothing there. `None` from a version-1 server, which answers 404.
    pub async fn whoami(&self) -> Result<Option<WhoamiResponse>, ClientError> {
        let connection = self.connection();
        let token = &connection.token;
        let url = endpoint(&connection, &["whoami"])?;
        let context = url.path().to_string();
        let response = connection
            .http
            .get(url)
            .bearer_auth(token.expose())
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|err| ClientError::from_reqwest(&context, err).redacted(token))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = check_status(&context, response, token).await?;
        let body = read_capped(&context, response).await?;
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|err| ClientError::BadResponse(format!("{context}: {err}")).redacted(token))
    }

    pub async fn heartbeat(
        &self,
        request: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ClientError> {
        let sent = OffsetDateTime::now_utc();
        let answer: HeartbeatResponse = self.call(&["heartbeat"], &request, None).await?;
        self.clock.observe(answer.server_time, sent);
        Ok(answer)
    }

    /// Claims deliveries; `wait_s` lets the server hold the request until one is ready.
    /// Each delivery is read on its own, so one malformed delivery is reported as such
    /// and does not hide the others. No more than `max` are taken from one answer: the
    /// rest stay with the server and return to it when their lease runs out. The token
    /// is blotted out of the answer before anything else.
    pub async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Claimed>, ClientError> {
        let timeout = Duration::from_secs(request.wait_s + 30);
        // The token this claim is sent with, also when a reload replaces it meanwhile.
        let connection = self.connection();
        let token = &connection.token;
        let body = self
            .call_raw(&connection, &["claim"], request, Some(timeout))
            .await?;
        // Everything in it is journaled, logged or reported: the token goes first, as
        // the server sent it and, below, as JSON escapes decode it.
        let body = token.redact_bytes(&body);
        let mut claimed = claim_answer::parse(&body)
            .map_err(|why| ClientError::BadResponse(format!("{AGENT_API}/claim: {why}")))?;
        let max = usize::try_from(request.max).unwrap_or(usize::MAX);
        if claimed.len() > max {
            warn!(
                "the server handed out {} deliveries to a claim for at most {max}; taking {max}, \
                 the rest return to the server when their lease runs out",
                claimed.len()
            );
            claimed.truncate(max);
        }
        Ok(claimed
            .into_iter()
            .map(|item| item.redacted(token))
            .collect())
    }

    pub async fn renew(&self, delivery: &str) -> Result<RenewResponse, ClientError> {
        self.call(
            &["deliveries", delivery, "renew"],
            &serde_json::json!({}),
            None,
        )
        .await
    }

    pub async fn complete(
        &self,
        delivery: &str,
        request: &CompleteRequest,
    ) -> Result<CompleteResponse, ClientError> {
        self.call(&["deliveries", delivery, "complete"], request, None)
            .await
    }

    pub async fn fail(&self, delivery: &str, request: &FailRequest) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .call(&["deliveries", delivery, "fail"], request, None)
            .await?;
        Ok(())
    }

    pub async fn event(&self, delivery: &str, request: &EventRequest) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .call(&["deliveries", delivery, "events"], request, None)
            .await?;
        Ok(())
    }

    /// POSTs `body` to an agent endpoint and reads the JSON answer.
    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &B,
        timeout: Option<Duration>,
    ) -> Result<T, ClientError> {
        let connection = self.connection();
        let answer = self.call_raw(&connection, segments, body, timeout).await?;
        serde_json::from_slice(&answer).map_err(|err| {
            ClientError::BadResponse(format!("{AGENT_API}/{}: {err}", segments.join("/")))
                .redacted(&connection.token)
        })
    }

    /// POSTs `body` to an agent endpoint over `connection`, retrying transient
    /// failures with exponential back-off and jitter, honouring `Retry-After`; the
    /// answer's bytes.
    async fn call_raw<B: Serialize>(
        &self,
        connection: &Connection,
        segments: &[&str],
        body: &B,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, ClientError> {
        let url = endpoint(connection, segments)?;
        let endpoint = segments[0];
        let attempt = || post_once(connection, url.clone(), body, timeout);
        let result = attempt
            .retry(self.retry)
            .when(ClientError::is_transient)
            .adjust(|err, delay| match (err, delay) {
                (
                    ClientError::Transient {
                        retry_after: Some(after),
                        ..
                    },
                    Some(_),
                ) => Some((*after).min(MAX_RETRY_DELAY)),
                _ => delay,
            })
            .notify(|err, delay| tracing::debug!("{endpoint}: {err}; trying again in {delay:?}"))
            .await
            .map_err(|err| err.redacted(&connection.token));
        self.link.observe(&result);
        result
    }

    /// Starts a file download, from byte `offset` when it is more than 0. The token is
    /// sent only to the server's own origin, also after redirects, which are followed by
    /// hand for that reason.
    pub async fn download(
        &self,
        url: &str,
        offset: u64,
        etag: Option<&str>,
    ) -> Result<reqwest::Response, ClientError> {
        let connection = self.connection();
        follow_download(&connection, url, offset, etag)
            .await
            .map_err(|err| err.redacted(&connection.token))
    }
}

/// The URL of the agent endpoint made of `segments`, each one percent-encoded path
/// segment whatever it holds (a delivery id from the server may hold `/`, `?` or
/// `..`).
fn endpoint(connection: &Connection, segments: &[&str]) -> Result<Url, ClientError> {
    let path: Vec<String> = segments
        .iter()
        .map(|segment| percent_encoding::utf8_percent_encode(segment, ID_SEGMENT).to_string())
        .collect();
    connection.resolve(&format!("{AGENT_API}/{}", path.join("/")))
}

async fn post_once<B: Serialize>(
    connection: &Connection,
    url: Url,
    body: &B,
    timeout: Option<Duration>,
) -> Result<Vec<u8>, ClientError> {
    let context = url.path().to_string();
    let request = connection
        .http
        .request(Method::POST, url)
        .bearer_auth(connection.token.expose())
        .timeout(timeout.unwrap_or(Duration::from_secs(30)))
        .json(body);
    let response = request
        .send()
        .await
        .map_err(|err| ClientError::from_reqwest(&context, err))?;
    let response = check_status(&context, response, &connection.token).await?;
    read_capped(&context, response).await
}

async fn follow_download(
    connection: &Connection,
    url: &str,
    offset: u64,
    etag: Option<&str>,
) -> Result<reqwest::Response, ClientError> {
    let mut url = if url.starts_with('/') {
        connection.resolve(url)?
    } else {
        Url::parse(url)
            .map_err(|err| ClientError::BadResponse(format!("file url {url:?}: {err}")))?
    };
    for _ in 0..=MAX_REDIRECTS {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ClientError::BadResponse(format!(
                "file url {url} is not http(s)"
            )));
        }
        let mut request = connection.client_for(&url).get(url.clone());
        if connection.is_own_origin(&url) {
            request = request.bearer_auth(connection.token.expose());
        }
        if offset > 0 {
            request = request.header(header::RANGE, format!("bytes={offset}-"));
            if let Some(etag) = etag {
                request = request.header(header::IF_RANGE, etag);
            }
        }
        let context = format!("download {}", url.path());
        let response = request
            .send()
            .await
            .map_err(|err| ClientError::from_reqwest(&context, err))?;
        if response.status().is_redirection() {
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    ClientError::BadResponse(format!("{context}: redirect without Location"))
                })?;
            url = url.join(location).map_err(|err| {
                ClientError::BadResponse(format!("{context}: bad redirect: {err}"))
            })?;
            if !url.username().is_empty() || url.password().is_some() {
                return Err(ClientError::BadResponse(format!(
                    "{context}: redirected to a URL with a user name or password, which tbot does not send"
                )));
            }
            continue;
        }
        return check_status(&context, response, &connection.token).await;
    }
    Err(ClientError::BadResponse(format!(
        "more than {MAX_REDIRECTS} redirects for {url}"
    )))
}

/// Turns non-success answers into errors: transient ones retried, 4xx refused with the
/// server's code and message. The server's text has the token blotted out before it is
/// cut short, so no piece of it survives.
async fn check_status(
    context: &str,
    response: reqwest::Response,
    secret: &Secret,
) -> Result<reqwest::Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = retry_after(response.headers());
    let body = read_capped(context, response).await.unwrap_or_default();
    let detail = serde_json::from_slice::<ErrorBody>(&body)
        .ok()
        .map(|b| b.error);
    let message = detail
        .as_ref()
        .map(|d| d.message.clone())
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
    let message = clipped(&secret.redact(&message), MAX_SERVER_TEXT);
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        return Err(ClientError::Transient {
            what: format!("{context}: server answered {status}: {message}"),
            retry_after,
        });
    }
    Err(ClientError::Refused {
        status: status.as_u16(),
        code: detail
            .map(|d| clipped(&secret.redact(&d.code), 64))
            .unwrap_or_else(|| "http_error".into()),
        message: format!("{context}: {message}"),
    })
}

/// `Retry-After` in seconds (the HTTP-date form is rare from APIs and ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(Duration::from_secs)
}

/// Reads a JSON body of at most [`MAX_JSON_BODY`] bytes.
async fn read_capped(
    context: &str,
    mut response: reqwest::Response,
) -> Result<Vec<u8>, ClientError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| ClientError::from_reqwest(context, err))?
    {
        if body.len() + chunk.len() > MAX_JSON_BODY {
            return Err(ClientError::Transient {
                what: format!("{context}: answer larger than {MAX_JSON_BODY} bytes, cut off"),
                retry_after: None,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
