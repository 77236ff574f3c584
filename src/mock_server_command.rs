//! `tbot mock-server`: the bundled job side started from the shell, with its agents,
//! users, store and production templates given as flags or in a file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::LogFormat;
use crate::control::Control;
use crate::mockserver::model::{SettingsChange, Template};
use crate::mockserver::{MockServer, MockSettings, ServerTls, UserEntry};

#[derive(clap::Args)]
pub struct MockServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8470")]
    listen: SocketAddr,
    /// A TOML file with agents, users (argon2 password hashes) and rules (see
    /// docs/api.md).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Keep jobs, deliveries and files in this folder, so a restart loses nothing
    /// (default: in memory only).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Accept this agent token (repeat for more agents).
    #[arg(
        long = "agent-token",
        env = "TBOT_MOCK_AGENT_TOKEN",
        value_delimiter = ','
    )]
    agent_tokens: Vec<String>,
    /// A person who logs in, as NAME=PROFILE:PASSWORD, such as ann=site_owner:plates
    /// (repeatable; profiles: site_owner, administrator, operator, customer_service,
    /// designer).
    #[arg(long = "user", value_parser = parse_user)]
    users: Vec<UserEntry>,
    /// Turn AutoSend on from the start.
    #[arg(long)]
    autosend: bool,
    /// A queue with no heartbeat for this long cannot be chosen.
    #[arg(long, value_parser = humantime::parse_duration)]
    queue_ttl: Option<Duration>,
    /// How long a claim leases a delivery.
    #[arg(long, value_parser = humantime::parse_duration)]
    lease: Option<Duration>,
    /// Serve HTTPS with this PEM certificate (chain); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Ask agents for a client certificate signed by this PEM authority (mutual TLS).
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Take orders from a web-to-print store that sends this token
    /// (POST /api/v1/store/orders).
    #[arg(long, env = "TBOT_MOCK_STORE_TOKEN")]
    store_token: Option<String>,
    /// A production template for store products, as NAME=QUEUE[,QUEUE...][:approved]
    /// (repeatable): its jobs are preselected for those queues, and arrive approved
    /// with `:approved`, else awaiting approval.
    #[arg(long = "template", value_parser = parse_template)]
    templates: Vec<(String, Template)>,
}

/// `--user NAME=PROFILE:PASSWORD`; the password is hashed at once and kept no other way.
fn parse_user(text: &str) -> Result<UserEntry, String> {
    let shape = || {
        let name = text.split_once('=').map_or(text, |(name, _)| name);
        format!("--user {name}=...: give NAME=PROFILE:PASSWORD")
    };
    let (name, rest) = text.split_once('=').ok_or_else(shape)?;
    let (profile, password) = rest.split_once(':').ok_or_else(shape)?;
    if name.trim().is_empty() || password.is_empty() {
        return Err(shape());
    }
    Ok(UserEntry::with_password(
        name.trim(),
        profile.trim(),
        password,
    ))
}

/// `--template NAME=QUEUE[,QUEUE...][:approved]`.
fn parse_template(text: &str) -> Result<(String, Template), String> {
    let shape = || format!("{text:?} is not NAME=QUEUE[,QUEUE...][:approved]");
    let (name, rest) = text.split_once('=').ok_or_else(shape)?;
    let (queues, approved) = match rest.strip_suffix(":approved") {
        Some(queues) => (queues, true),
        None => (rest, false),
    };
    let queues: Vec<String> = queues
        .split(',')
        .map(str::trim)
        .filter(|queue| !queue.is_empty())
        .map(String::from)
        .collect();
    if name.trim().is_empty() || queues.is_empty() {
        return Err(shape());
    }
    Ok((name.trim().to_string(), Template { queues, approved }))
}

pub async fn run(args: MockServerArgs) -> anyhow::Result<()> {
    crate::logging::init("info", LogFormat::Text, None);
    let mut settings = match &args.config {
        Some(path) => MockSettings::load(path)?,
        None => MockSettings::default(),
    };
    for token in &args.agent_tokens {
        settings.add_agent_token(token);
    }
    settings.users.extend(args.users);
    settings.state_dir = args.state_dir;
    if args
        .store_token
        .as_deref()
        .is_some_and(|token| token.trim().is_empty())
    {
        anyhow::bail!("--store-token is empty: give the token the store sends its orders with");
    }
    settings.store_token = args.store_token.map(crate::config::Secret::new);
    settings.templates.extend(args.templates);
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        settings.tls = Some(ServerTls {
            cert,
            key,
            client_ca: args.tls_client_ca,
        });
    }
    settings.model.apply(&SettingsChange {
        autosend: args.autosend.then_some(true),
        hold_claims: None,
        queue_ttl: args.queue_ttl,
        lease: args.lease,
        retry_hold: None,
    });
    if settings.users.is_empty() {
        anyhow::bail!("no user: give --user NAME=PROFILE:PASSWORD (or [[user]] in --config) so a person can log in");
    }
    if settings.agents.is_empty() {
        anyhow::bail!("no agent token: give --agent-token TOKEN (or [[agent]] in --config) so an agent can connect");
    }
    let users: Vec<String> = settings
        .users
        .iter()
        .map(|u| format!("{} ({})", u.name, u.profile))
        .collect();
    let server = MockServer::start(settings, args.listen).await?;
    println!("tbot mock server listening on {}", server.url());
    println!("users: {}", users.join(", "));
    if !server.addr.ip().is_loopback() {
        // Passwords and tokens cross the network in the clear without HTTPS.
        let exposure = if server.url().starts_with("https") {
            ";"
        } else {
            " over plain HTTP, passwords and tokens included; give --tls-cert and --tls-key, or"
        };
        eprintln!(
            "tbot: warning: the mock job side listens on {}, which other machines can reach{exposure} \
             keep it on a network you trust (or listen on 127.0.0.1, the default)",
            server.addr
        );
    }
    Control::from_signals()?.shutdown().wait().await;
    server.stop().await;
    Ok(())
}
