//! A client for the mock server's operator API, used by `tbot mock ...` and the demo
//! to do what a person does on the job side.

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::config::Secret;

fn http_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().timeout(Duration::from_secs(300))
}

/// Drives one mock server as one user, proved by the API token it logged in for.
pub struct OperatorClient {
    http: reqwest::Client,
    base: String,
    token: Option<Secret>,
}

impl OperatorClient {
    /// A client that acts as nobody until it logs in or is given a token.
    pub fn new(server: &str) -> anyhow::Result<OperatorClient> {
        OperatorClient::with_http(server, http_builder())
    }

    /// A client for a mock server whose HTTPS certificate comes from the authority in
    /// `ca_pem`, such as the print shop's own.
    pub fn trusting(server: &str, ca_pem: &[u8]) -> anyhow::Result<OperatorClient> {
        let mut http = http_builder();
        for certificate in reqwest::Certificate::from_pem_bundle(ca_pem)? {
            http = http.add_root_certificate(certificate);
        }
        OperatorClient::with_http(server, http)
    }

    fn with_http(server: &str, http: reqwest::ClientBuilder) -> anyhow::Result<OperatorClient> {
        Ok(OperatorClient {
            http: http.build()?,
            base: format!("{}/api/v1/operator", server.trim_end_matches('/')),
            token: None,
        })
    }

    /// Acts as the user an API token from `tbot mock login` belongs to.
    pub fn with_token(mut self, token: Secret) -> OperatorClient {
        self.token = Some(token);
        self
    }

    /// Logs in with a name and password; from then on acts as that user. Answers the
    /// API token, for `tbot mock login` to hand to later commands.
    pub async fn log_in(&mut self, name: &str, password: &str) -> anyhow::Result<Secret> {
        let answer = self
            .post("/tokens", json!({"name": name, "password": password}))
            .await?;
        let token = Secret::new(
            answer["token"]
                .as_str()
                .context("the server's answer to a log-in has no token")?,
        );
        self.token = Some(token.clone());
        Ok(token)
    }

    /// A request to `url`, carrying the token when there is one.
    fn start(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        }
    }

    /// Sends one request and returns the JSON answer; an error answer becomes an error
    /// carrying the server's message.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.start(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the mock server at {url}"))?;
        read_answer(&method, &url, response).await
    }

    /// A page the server renders (a packing slip, an invoice), as its text.
    pub async fn page(&self, path: &str) -> anyhow::Result<String> {
        let url = format!("{}{path}", self.base);
        let response = self
            .start(reqwest::Method::GET, &url)
            .send()
            .await
            .with_context(|| format!("cannot reach the mock server at {url}"))?;
        if !response.status().is_success() {
            return read_answer(&reqwest::Method::GET, &url, response)
                .await
                .map(|_| String::new());
        }
        Ok(response.text().await?)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.request(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.request(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.request(reqwest::Method::PUT, path, Some(body)).await
    }

    /// Creates a job in progress; its files are added with [`OperatorClient::upload`].
    pub async fn create_job(
        &self,
        name: &str,
        order: Option<&str>,
        queues: &[String],
    ) -> anyhow::Result<String> {
        let job = self
            .post(
                "/jobs",
                json!({"name": name, "order_number": order, "queues": queues}),
            )
            .await?;
        job["id"]
            .as_str()
            .map(String::from)
            .context("the server's answer has no job id")
    }

    /// Uploads a file's bytes to a job.
    pub async fn upload(&self, job: &str, name: &str, bytes: Vec<u8>) -> anyhow::Result<Value> {
        let url = format!(
            "{}/jobs/{}/files/{}",
            self.base,
            urlencode(job),
            urlencode(name)
        );
        let response = self
            .start(reqwest::Method::PUT, &url)
            .body(bytes)
            .send()
            .await
            .with_context(|| format!("cannot reach the mock server at {url}"))?;
        read_answer(&reqwest::Method::PUT, &url, response).await
    }

    /// Send to Production (or Send Again); `queues: None` uses each job's preselection.
    pub async fn send(&self, jobs: &[String], queues: Option<&[String]>) -> anyhow::Result<Value> {
        let mut body = json!({ "jobs": jobs });
        if let Some(queues) = queues {
            body["queues"] = json!(queues);
        }
        self.post("/send", body).await
    }
}

async fn read_answer(
    method: &reqwest::Method,
    url: &str,
    response: reqwest::Response,
) -> anyhow::Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        bail!("{method} {url}: {status}: {message}");
    }
    Ok(body)
}

/// `text` (a job id, an order number) as one URL path segment: a `/` or `?` in it
/// stays part of the id.
pub fn segment(text: &str) -> String {
    urlencode(text)
}

/// Percent-encodes a file name for a URL path segment.
fn urlencode(name: &str) -> String {
    url::form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
