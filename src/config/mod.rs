//! The agent's configuration: one TOML file, read by `tbot run` and `tbot check-config`.
//!
//! Parsing is strict (unknown keys are refused, so a typo never silently falls back to
//! a default) and every problem names the key it is about. `tbot.example.toml`
//! documents each key with its default; keep the two in step.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

mod queue;

use queue::{check_queues, RawQueue};
pub use queue::{DeliveryProfile, Layout, QueueConfig};

/// The longest a server may hold a claim open (PROTOCOL.md).
const MAX_LONG_POLL: Duration = Duration::from_secs(60);

/// The environment variable whose value, when set, is the agent token.
pub const TOKEN_ENV: &str = "TBOT_TOKEN";

/// A validated configuration, ready for the agent.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub agent: AgentConfig,
    pub log: LogConfig,
    /// Where Prometheus scrapes `/metrics` and monitoring checks `/healthz`; off when
    /// absent.
    pub metrics_listen: Option<SocketAddr>,
    pub queues: Vec<QueueConfig>,
    /// What is allowed but unwise (a token others can read, plain http over a
    /// network), for `check-config` and the start-up log.
    pub warnings: Vec<String>,
    /// The file it was read from, for the start-up log.
    pub source: Option<PathBuf>,
}

/// How to reach the job side.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub url: Url,
    pub token: Secret,
    /// Where the token was read from, when it came from a file.
    pub token_file: Option<PathBuf>,
    pub check_interval: Duration,
    pub heartbeat_interval: Duration,
    /// How long the server may hold a claim open waiting for work; zero turns long
    /// polling off.
    pub long_poll: Duration,
    pub tls: TlsFiles,
}

/// TLS settings beyond the system's: the files are read when the agent connects, so
/// that a reload picks up renewed certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// A PEM bundle of certificate authorities trusted besides the system roots: the
    /// print shop's own, when its job side has a certificate from it.
    pub ca_file: Option<PathBuf>,
    /// The client certificate and its private key (both PEM), for a server that asks
    /// agents to prove who they are with one (mutual TLS).
    pub client_identity: Option<(PathBuf, PathBuf)>,
}

/// Who this agent is and where it keeps its state.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub name: String,
    pub state_dir: PathBuf,
    pub concurrency: usize,
}

/// Where log lines go and how they look.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

/// Log line format: text for people, JSON for log collectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// As the configuration file spells it.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The agent token. It is never printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The token itself, for the `Authorization` header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with the token blotted out, for text that may echo it (a server's error
    /// message, a log line).
    pub fn redact(&self, text: &str) -> String {
        text.replace(&self.0, "***")
    }

    /// `bytes` with the token blotted out, for an answer that may not be text.
    pub fn redact_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let token = self.0.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut rest = bytes;
        while let Some(at) = memchr::memmem::find(rest, token) {
            out.extend_from_slice(&rest[..at]);
            out.extend_from_slice(b"***");
            rest = &rest[at + token.len()..];
        }
        out.extend_from_slice(rest);
        out
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why a configuration file was refused. Each problem names its key.
#[derive(Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration {} is not valid:", self.path.display())?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    agent: RawAgent,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    queue: Vec<RawQueue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    url: String,
    token: Option<String>,
    token_file: Option<PathBuf>,
    #[serde(default = "default_check_interval", with = "humantime_serde")]
    check_interval: Duration,
    #[serde(default = "default_heartbeat_interval", with = "humantime_serde")]
    heartbeat_interval: Duration,
    #[serde(default = "default_long_poll", with = "humantime_serde")]
    long_poll: Duration,
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    name: String,
    state_dir: Option<PathBuf>,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default = "default_log_level")]
    level: String,
    #[serde(default = "default_log_format")]
    format: LogFormat,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: default_log_level(),
            format: default_log_format(),
        }
    }
}

fn default_check_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_heartbeat_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_long_poll() -> Duration {
    Duration::from_secs(25)
}
fn default_concurrency() -> usize {
    4
}
fn default_log_level() -> String {
    "info".into()
}
fn default_log_format() -> LogFormat {
    LogFormat::Text
}
/// The configuration file used when `--config` is not given: `/etc/tbot/tbot.toml` for
/// a Linux service (systemd sets `INVOCATION_ID`), else the platform's config folder.
pub fn default_config_path() -> PathBuf {
    if cfg!(target_os = "linux") && std::env::var_os("INVOCATION_ID").is_some() {
        return PathBuf::from("/etc/tbot/tbot.toml");
    }
    project_dirs()
        .map(|dirs| dirs.config_dir().join("tbot.toml"))
        .unwrap_or_else(|| PathBuf::from("tbot.toml"))
}

/// The state folder used when `agent.state_dir` is not set: systemd's
/// `STATE_DIRECTORY` for a service, else the platform's local data folder.
fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY") {
        return PathBuf::from(dir);
    }
    project_dirs()
        .map(|dirs| dirs.data_local_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("tbot-state"))
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "tbot")
}

impl Config {
    /// Reads and validates the file at `path`, taking the token from `TBOT_TOKEN`
    /// when that is set.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let fail = |problem: String| ConfigError {
            path: path.to_path_buf(),
            problems: vec![problem],
        };
        let text = std::fs::read_to_string(path)
            .map_err(|err| fail(format!("cannot read the file: {err}")))?;
        let env_token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty());
        let mut config = Config::parse(&text, env_token).map_err(|problems| ConfigError {
            path: path.to_path_buf(),
            problems,
        })?;
        config.source = Some(path.to_path_buf());
        if let Some(file) = &config.server.token_file {
            if readable_by_others(file) {
                config.warnings.push(format!(
                    "server.token_file {} can be read by every user of this machine: \
                     chmod o-r it (tbot only needs its own user or group to read it)",
                    file.display()
                ));
            }
        } else if std::env::var_os(TOKEN_ENV).is_none() && readable_by_others(path) {
            config.warnings.push(format!(
                "{} holds server.token and can be read by every user of this machine: chmod o-r it",
                path.display()
            ));
        }
        Ok(config)
    }

    /// Parses and validates configuration text; `env_token` overrides the file's token.
    pub fn parse(text: &str, env_token: Option<String>) -> Result<Config, Vec<String>> {
        let secrets = secret_strings(text);
        let redact = |problem: String| {
            secrets
                .iter()
                .fold(problem, |problem, secret| secret.redact(&problem))
        };
        let raw: RawConfig =
            toml::from_str(text).map_err(|err| vec![redact(syntax_problem(text, &err))])?;
        Config::check(raw, env_token).map_err(|problems| problems.into_iter().map(redact).collect())
    }

    fn check(raw: RawConfig, env_token: Option<String>) -> Result<Config, Vec<String>> {
        let mut problems = Vec::new();

        let url = check_url(&raw.server.url)
            .map_err(|p| problems.push(p))
            .ok();
        let token = resolve_token(&raw.server, env_token)
            .map_err(|p| problems.push(p))
            .ok();
        if raw.server.check_interval.is_zero() {
            problems.push("server.check_interval must be longer than 0s".into());
        }
        if raw.server.heartbeat_interval.is_zero() {
            problems.push("server.heartbeat_interval must be longer than 0s".into());
        }
        if raw.server.long_poll > MAX_LONG_POLL {
            problems.push(format!(
                "server.long_poll must be at most {} (the protocol's limit), not {}",
                humantime::format_duration(MAX_LONG_POLL),
                humantime::format_duration(raw.server.long_poll)
            ));
        }
        let client_identity = match (raw.server.client_cert, raw.server.client_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                problems.push(
                    "server.client_cert is set but server.client_key is not: give both, or neither"
                        .into(),
                );
                None
            }
            (None, Some(_)) => {
                problems.push(
                    "server.client_key is set but server.client_cert is not: give both, or neither"
                        .into(),
                );
                None
            }
        };
        if raw.agent.name.trim().is_empty() {
            problems.push("agent.name must not be empty".into());
        }
        if raw.agent.concurrency == 0 {
            problems.push("agent.concurrency must be at least 1".into());
        }
        if !is_log_level(&raw.log.level) {
            problems.push(format!(
                "log.level {:?} is not a log level (trace, debug, info, warn, error)",
                raw.log.level
            ));
        }
        let queues = check_queues(&raw.queue, &mut problems);
        let metrics_listen = raw.metrics.listen.as_deref().and_then(|listen| {
            listen
                .parse::<SocketAddr>()
                .map_err(|_| {
                    problems.push(format!(
                        "metrics.listen {listen:?} is not an address and port, such as \"127.0.0.1:9469\""
                    ))
                })
                .ok()
        });

        if let Some(token) = &token {
            problems = problems.iter().map(|p| token.redact(p)).collect();
        }
        match (url, token) {
            (Some(url), Some(token)) if problems.is_empty() => Ok(Config {
                warnings: plain_http_warning(&url)
                    .into_iter()
                    .chain(metrics_listen.and_then(open_metrics_warning))
                    .collect(),
                source: None,
                server: ServerConfig {
                    url,
                    token,
                    token_file: raw.server.token_file,
                    check_interval: raw.server.check_interval,
                    heartbeat_interval: raw.server.heartbeat_interval,
                    long_poll: raw.server.long_poll,
                    tls: TlsFiles {
                        ca_file: raw.server.ca_file,
                        client_identity,
                    },
                },
                agent: AgentConfig {
                    name: raw.agent.name,
                    state_dir: raw.agent.state_dir.unwrap_or_else(default_state_dir),
                    concurrency: raw.agent.concurrency,
                },
                log: LogConfig {
                    level: raw.log.level,
                    format: raw.log.format,
                },
                metrics_listen,
                queues,
            }),
            _ => Err(problems),
        }
    }

    /// The queue called `name`, if this agent serves it.
    pub fn queue(&self, name: &str) -> Option<&QueueConfig> {
        self.queues.iter().find(|q| q.name == name)
    }
}

/// Turns a TOML error into one problem with its line and column, and the key of the
/// line (or its table header). A value is never quoted: the token may be on the line,
/// under a misspelt key, in the wrong table, or on a line broken by a typo.
fn syntax_problem(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim();
    let Some(span) = err.span() else {
        return message.to_string();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    let source = text.lines().nth(line - 1).unwrap_or("").trim();
    let shown = if let Some(table) = table_header(source) {
        Some(format!("[{table}]"))
    } else {
        source
            .split_once('=')
            .map(|(key, _)| key.trim())
            .filter(|key| !key.is_empty() && !key.contains(['"', '\'']))
            .map(|key| format!("{key} = …"))
    };
    match shown {
        Some(shown) => format!("line {line}, column {column} (`{shown}`): {message}"),
        None => format!("line {line}, column {column}: {message}"),
    }
}

/// The table a header line opens: `server` for `[server]  # the job side`, `queue` for
/// `[[queue]]`.
fn table_header(line: &str) -> Option<&str> {
    let inner = line.trim().strip_prefix('[')?.trim_start_matches('[');
    Some(inner.split(']').next()?.trim())
}

/// Every quoted string of the file that could be a secret: those of the `[server]`
/// table (but the first value of a key known to hold none) and those of any key that
/// reads like a token, secret or password, wherever it stands. Whatever the typo, they
/// are blotted out of every message about the file.
fn secret_strings(text: &str) -> Vec<Secret> {
    const PLAIN_KEYS: [&str; 5] = [
        "url",
        "check_interval",
        "heartbeat_interval",
        "long_poll",
        "token_file",
    ];
    let mut table = "";
    let mut secrets = Vec::new();
    for line in text.lines() {
        if let Some(header) = table_header(line) {
            table = header;
            continue;
        }
        let key = line.split('=').next().unwrap_or("").trim();
        let lower = key.to_ascii_lowercase();
        let secret_key = ["tok", "secret", "pass"]
            .iter()
            .any(|word| lower.contains(word));
        if table != "server" && !secret_key {
            continue;
        }
        let mut strings = line
            .split(['"', '\''])
            .skip(1)
            .step_by(2)
            .filter(|s| !s.is_empty());
        if PLAIN_KEYS.contains(&key) {
            strings.next();
        }
        secrets.extend(strings.map(Secret::new));
    }
    secrets
}

/// Whether users other than the owner and group may read `path`.
fn readable_by_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|meta| meta.permissions().mode() & 0o004 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// A warning for `http://` to a host that is not this machine: the token and the
/// files would cross the network unencrypted.
fn plain_http_warning(url: &Url) -> Option<String> {
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    (url.scheme() == "http" && !loopback).then(|| {
        format!(
            "server.url uses plain http to {}: the agent token and every file cross the network \
             unencrypted; use https",
            url.host_str().unwrap_or("")
        )
    })
}

/// A warning when the metrics can be read from other machines: they name the queues,
/// and need no token.
fn open_metrics_warning(listen: SocketAddr) -> Option<String> {
    (!listen.ip().is_loopback()).then(|| {
        format!(
            "metrics.listen {listen} can be reached from other machines without a token: \
             the metrics name every queue; limit it with a firewall, or listen on 127.0.0.1"
        )
    })
}

/// A plain level, or a list of `target=level` directives for finer control.
fn is_log_level(level: &str) -> bool {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    if level.contains('=') || level.contains(',') {
        return tracing_subscriber::EnvFilter::try_new(level).is_ok();
    }
    LEVELS.contains(&level.trim().to_ascii_lowercase().as_str())
}

fn check_url(text: &str) -> Result<Url, String> {
    const LOOKS_LIKE: &str =
        "write it with its scheme, such as \"https://jobs.example.com\" or \"http://127.0.0.1:8470\"";
    let url = Url::parse(text)
        .map_err(|err| format!("server.url {text:?} is not a URL ({err}): {LOOKS_LIKE}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "server.url {text:?} must start with https:// (or http://), not {}: {LOOKS_LIKE}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("server.url {text:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("server.url must not carry a user name or password; use server.token".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("server.url must not have a query (?...) or fragment (#...)".into());
    }
    Ok(url)
}

fn resolve_token(server: &RawServer, env_token: Option<String>) -> Result<Secret, String> {
    if server.token.is_some() && server.token_file.is_some() {
        return Err("set server.token or server.token_file, not both".into());
    }
    let token = match (env_token, &server.token, &server.token_file) {
        (Some(token), _, _) => token,
        (None, Some(token), _) => token.clone(),
        (None, None, Some(file)) => std::fs::read_to_string(file)
            .map_err(|err| format!("server.token_file {}: {err}", file.display()))?
            .trim()
            .to_string(),
        (None, None, None) => {
            return Err(format!(
                "no agent token: set server.token, server.token_file or the {TOKEN_ENV} environment variable"
            ))
        }
    };
    if token.trim().is_empty() {
        return Err(format!(
            "the agent token is empty (server.token, server.token_file or {TOKEN_ENV})"
        ));
    }
    if token.chars().any(|c| c.is_control() || c == ' ') {
        return Err("the agent token contains spaces or control characters".into());
    }
    Ok(Secret(token))
}
