//! The agent's HTTP client for the job side: the protocol's calls with the token, the
//! retry rules for transient failures, and the care that keeps the token at home.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use url::Url;

use crate::config::{Secret, ServerConfig};
use crate::protocol::{
    ClaimRequest, CompleteRequest, CompleteResponse, Delivery, ErrorBody, EventRequest,
    FailRequest, HeartbeatRequest, HeartbeatResponse, RenewResponse, AGENT_API,
};

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

    fn from_reqwest(context: &str, err: reqwest::Error) -> ClientError {
        // reqwest's message names the URL but never headers, so the token stays out.
        ClientError::Transient {
            what: format!("{context}: {}", error_chain(&err)),
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

/// A claim answer read leniently, one delivery at a time.
#[derive(serde::Deserialize)]
struct RawClaimResponse {
    deliveries: Vec<serde_json::Value>,
}

/// One delivery from a claim answer.
#[derive(Debug, Clone)]
pub enum Claimed {
    /// Well-formed: ready for the check step.
    Ready(Delivery),
    /// Leased to us but not readable; it is failed by its id when it has one.
    Malformed { id: Option<String>, problem: String },
}

impl Claimed {
    fn from_json(value: serde_json::Value) -> Claimed {
        let id = value.get("id").and_then(|id| id.as_str()).map(String::from);
        match serde_json::from_value::<Delivery>(value) {
            Ok(delivery) => Claimed::Ready(delivery),
            Err(err) => Claimed::Malformed {
                id,
                problem: format!("the delivery is malformed: {err}"),
            },
        }
    }
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

/// Talks to one job-side server as one agent.
#[derive(Clone)]
pub struct JobSideClient {
    http: reqwest::Client,
    base: Url,
    token: Secret,
    retry: ExponentialBuilder,
    link: Arc<Link>,
}

impl JobSideClient {
    pub fn new(server: &ServerConfig) -> anyhow::Result<JobSideClient> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("tbot/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let mut base = server.url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(JobSideClient {
            http,
            base,
            token: server.token.clone(),
            link: Arc::new(Link {
                up: AtomicBool::new(true),
            }),
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

    /// The URL of an agent endpoint or a server path, below the configured base URL.
    pub fn resolve(&self, path: &str) -> Result<Url, ClientError> {
        self.base.join(path.trim_start_matches('/')).map_err(|err| {
            ClientError::BadResponse(format!("cannot make a URL of {path:?}: {err}"))
        })
    }

    /// Whether `url` has the configured server's origin, the only place the token goes.
    pub fn is_own_origin(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }

    pub async fn heartbeat(
        &self,
        request: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ClientError> {
        self.call("heartbeat", &request, None).await
    }

    /// Claims deliveries; `wait_s` lets the server hold the request until one is ready.
    /// Each delivery is read on its own, so one malformed delivery is reported as such
    /// and does not hide the others.
    pub async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Claimed>, ClientError> {
        let timeout = Duration::from_secs(request.wait_s + 30);
        let response: RawClaimResponse = self.call("claim", request, Some(timeout)).await?;
        Ok(response
            .deliveries
            .into_iter()
            .map(Claimed::from_json)
            .collect())
    }

    pub async fn renew(&self, delivery: &str) -> Result<RenewResponse, ClientError> {
        self.call(
            &format!("deliveries/{delivery}/renew"),
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
        self.call(&format!("deliveries/{delivery}/complete"), request, None)
            .await
    }

    pub async fn fail(&self, delivery: &str, request: &FailRequest) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .call(&format!("deliveries/{delivery}/fail"), request, None)
            .await?;
        Ok(())
    }

    pub async fn event(&self, delivery: &str, request: &EventRequest) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .call(&format!("deliveries/{delivery}/events"), request, None)
            .await?;
        Ok(())
    }

    /// POSTs `body` to an agent endpoint, retrying transient failures with exponential
    /// back-off and jitter, honouring `Retry-After`.
    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        endpoint: &str,
        body: &B,
        timeout: Option<Duration>,
    ) -> Result<T, ClientError> {
        let url = self.resolve(&format!("{AGENT_API}/{endpoint}"))?;
        let attempt = || self.post_once(url.clone(), body, timeout);
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
            .await;
        self.link.observe(&result);
        result
    }

    async fn post_once<B: Serialize, T: DeserializeOwned>(
        &self,
        url: Url,
        body: &B,
        timeout: Option<Duration>,
    ) -> Result<T, ClientError> {
        let context = url.path().to_string();
        let request = self
            .http
            .request(Method::POST, url)
            .bearer_auth(self.token.expose())
            .timeout(timeout.unwrap_or(Duration::from_secs(30)))
            .json(body);
        let response = request
            .send()
            .await
            .map_err(|err| ClientError::from_reqwest(&context, err))?;
        let response = check_status(&context, response).await?;
        let bytes = read_capped(&context, response).await?;
        serde_json::from_slice(&bytes)
            .map_err(|err| ClientError::BadResponse(format!("{context}: {err}")))
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
        let mut url = if url.starts_with('/') {
            self.resolve(url)?
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
            let mut request = self.http.get(url.clone());
            if self.is_own_origin(&url) {
                request = request.bearer_auth(self.token.expose());
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
                continue;
            }
            return check_status(&context, response).await;
        }
        Err(ClientError::BadResponse(format!(
            "more than {MAX_REDIRECTS} redirects for {url}"
        )))
    }
}

/// Turns non-success answers into errors: transient ones retried, 4xx refused with the
/// server's code and message.
async fn check_status(
    context: &str,
    response: reqwest::Response,
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
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_string()
        });
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
            .map(|d| d.code)
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
