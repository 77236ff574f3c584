//! The `tbot` command: the agent daemon, its configuration check, the bundled mock job
//! side, a client to drive that mock from the shell, and the demo.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use tbot::agent::Agent;
use tbot::config::{default_config_path, Config, LogFormat};
use tbot::control::Control;
use tbot::health::State;
use tbot::mockserver::model::{SettingsChange, Template};
use tbot::mockserver::{MockServer, MockSettings, ServerTls, UserEntry};
use tbot::operator_client::{segment, OperatorClient};

#[derive(Parser)]
#[command(
    name = "tbot",
    version,
    about = "Takes approved print jobs from the job side and drops them, verified and whole, into device hotfolders"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent until SIGTERM or Ctrl-C.
    Run {
        /// Configuration file [default: the platform's standard path]
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a configuration file and exit: 0 when it is valid.
    CheckConfig {
        /// Configuration file [default: the platform's standard path]
        path: Option<PathBuf>,
        /// Also check the hotfolders on this machine and the server (reachable, takes
        /// the token, clocks agree); exit 1 when one of those fails.
        #[arg(long)]
        online: bool,
    },
    /// Show, per queue, what is in flight, waiting to be reported, dropped and failed.
    Status {
        /// Configuration file [default: the platform's standard path]
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Run the bundled mock job side (in memory) for trying tbot out.
    MockServer(MockServerArgs),
    /// Do what a person does on the mock job side: create, approve, send jobs...
    Mock(MockArgs),
    /// Show jobs travelling from the mock job side into three hotfolders, verified.
    Demo {
        /// Folder for the demo's hotfolders, state and configuration.
        #[arg(long, default_value = "tbot-demo")]
        dir: PathBuf,
    },
}

#[derive(clap::Args)]
struct MockServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8470")]
    listen: SocketAddr,
    /// A TOML file with agents, users and rules (see docs/api.md).
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
    /// Add a user as NAME=PROFILE, such as alice=site_owner (repeatable).
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

#[derive(clap::Args)]
struct MockArgs {
    /// The mock server's URL.
    #[arg(long, default_value = "http://127.0.0.1:8470", env = "TBOT_MOCK_URL")]
    server: String,
    /// The user acting (sending needs a profile with the send-to-production permission).
    #[arg(long, default_value = "owner")]
    user: String,
    #[command(subcommand)]
    action: MockAction,
}

#[derive(Subcommand)]
enum MockAction {
    /// List jobs, sorted by order number.
    Jobs {
        /// Group the list by order number.
        #[arg(long)]
        group: bool,
    },
    /// Show one job with its deliveries.
    Job { id: String },
    /// Create a job with files from disk.
    CreateJob {
        #[arg(long)]
        name: String,
        #[arg(long)]
        order: Option<String>,
        /// Queue preselected for this job (repeatable).
        #[arg(long = "queue")]
        queues: Vec<String>,
        /// A production file to upload (repeatable).
        #[arg(long = "file")]
        files: Vec<PathBuf>,
    },
    /// Move a job in progress to awaiting approval.
    RequestApproval { id: String },
    /// Approve a job (with AutoSend on, it goes to production).
    Approve { id: String },
    /// Put a job on hold.
    Hold { id: String },
    /// Archive a job.
    Archive { id: String },
    /// Set the queues preselected for a job.
    SetQueues {
        id: String,
        #[arg(long = "queue")]
        queues: Vec<String>,
    },
    /// Create an order or set the queues preselected for its jobs.
    Order {
        number: String,
        #[arg(long = "queue")]
        queues: Vec<String>,
    },
    /// Send to Production (or Send Again) one or more jobs.
    Send {
        #[arg(required = true)]
        jobs: Vec<String>,
        /// Queues to send to; without any, each job's preselected queues.
        #[arg(long = "queue")]
        queues: Vec<String>,
    },
    /// Try to send a whole order (always refused: only jobs go to production).
    SendOrder { number: String },
    /// Show an order's details: line items, addresses, amounts, payment, each job's
    /// state, and its closeout.
    OrderDetails { number: String },
    /// Close out a store order: packing slip, invoice, and settlement for a card.
    Closeout {
        number: String,
        /// Go ahead although not every job of the order is ready.
        #[arg(long)]
        confirm: bool,
    },
    /// Print a closed-out order's packing slip or invoice (HTML, to open and print).
    Document {
        number: String,
        /// packing-slip or invoice.
        #[arg(value_parser = ["packing-slip", "invoice"])]
        kind: String,
    },
    /// Complete a store job whose order is closed out.
    Complete { id: String },
    /// Retain a store job whose order is closed out.
    Retain { id: String },
    /// List the queues a person can choose (connected ones; --all for every one).
    Queues {
        #[arg(long)]
        all: bool,
    },
    /// List every delivery and its state.
    Deliveries,
    /// Turn AutoSend on or off.
    Autosend {
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Set the faults the server injects into agent requests (none given: all off).
    Faults {
        /// Seed for the random choices, to repeat a run.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Share of agent requests answered 503, 0.0 to 1.0.
        #[arg(long, default_value_t = 0.0)]
        error_rate: f64,
        /// Cut every download off after this many bytes.
        #[arg(long)]
        drop_after: Option<u64>,
        /// Share of downloads cut off at a random point.
        #[arg(long, default_value_t = 0.0)]
        truncate_rate: f64,
        /// Share of downloads with a byte changed.
        #[arg(long, default_value_t = 0.0)]
        corrupt_rate: f64,
        /// Send downloads no faster than this, such as 1MiB.
        #[arg(long)]
        bytes_per_second: Option<bytesize::ByteSize>,
        /// Ignore Range and always send whole files.
        #[arg(long)]
        ignore_ranges: bool,
        /// Answer every agent request 503 for this long, such as 10m.
        #[arg(long, value_parser = humantime::parse_duration)]
        down_for: Option<Duration>,
    },
    /// List the agent requests the server answered (with ranges and statuses).
    Requests,
    /// Move the server's clock forward, such as `49h`.
    AdvanceClock {
        #[arg(value_parser = humantime::parse_duration)]
        by: Duration,
    },
}

fn parse_user(text: &str) -> Result<UserEntry, String> {
    let (name, profile) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=PROFILE"))?;
    Ok(UserEntry {
        name: name.to_string(),
        profile: profile.to_string(),
    })
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tbot: cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("tbot: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { config } => match config_path(config) {
            Ok(path) => run_agent(&path).await,
            Err(code) => Ok(code),
        },
        Command::CheckConfig { path, online } => match config_path(path) {
            Ok(path) => Ok(check_config(&path, online).await),
            Err(code) => Ok(code),
        },
        Command::Status { config, json } => match config_path(config) {
            Ok(path) => status(&path, json),
            Err(code) => Ok(code),
        },
        Command::MockServer(args) => mock_server(args).await.map(|()| ExitCode::SUCCESS),
        Command::Mock(args) => mock(args).await.map(|()| ExitCode::SUCCESS),
        Command::Demo { dir } => {
            // The agent's steps are the show; the mock server's own lines would be noise.
            tbot::logging::init("info,tbot::mockserver=warn", LogFormat::Text, None);
            tbot::demo::run(&dir).await.map(|()| ExitCode::SUCCESS)
        }
    }
}

/// The configuration file: the one given, else the platform's standard one, which must
/// then exist (the error names where tbot looked and how to give another).
fn config_path(given: Option<PathBuf>) -> Result<PathBuf, ExitCode> {
    if let Some(path) = given {
        return Ok(path);
    }
    let path = default_config_path();
    if path.exists() {
        return Ok(path);
    }
    eprintln!(
        "tbot: no configuration file given, and none at {} (tbot looks at /etc/tbot/tbot.toml \
         when it runs as a systemd service, else at tbot.toml in this user's configuration \
         folder); give one with --config, starting from tbot.example.toml",
        path.display()
    );
    Err(ExitCode::from(2))
}

async fn check_config(path: &Path, online: bool) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            for warning in &config.warnings {
                eprintln!("tbot: warning: {warning}");
            }
            // The TLS files are read as the agent will read them.
            if let Err(err) = tbot::agent::client::JobSideClient::new(&config.server) {
                eprintln!("tbot: {}: {err:#}", path.display());
                return ExitCode::from(2);
            }
            println!(
                "{}: valid; agent {} serves {} queue(s) from {}",
                path.display(),
                config.agent.name,
                config.queues.len(),
                config.server.url
            );
            if !online {
                return ExitCode::SUCCESS;
            }
            let checks = tbot::online_check::run(&config).await;
            for check in &checks {
                let mark = if check.passed { "ok  " } else { "FAIL" };
                println!("{mark} {}", check.line);
            }
            if checks.iter().all(|check| check.passed) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("tbot: {err}");
            ExitCode::from(2)
        }
    }
}

/// `tbot status`: the picture, and the monitoring-plugin exit code (0 OK, 1 WARNING,
/// 2 CRITICAL, 3 UNKNOWN when the configuration or the journal cannot be read).
fn status(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let unknown = |why: &dyn std::fmt::Display| {
        println!("UNKNOWN: {why}");
        Ok(ExitCode::from(State::Unknown as u8))
    };
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(err) => return unknown(&err),
    };
    let status = match tbot::status::read(&config) {
        Ok(status) => status,
        Err(err) => return unknown(&format!("{err:#}")),
    };
    let text = if json {
        serde_json::to_string_pretty(&status)? + "\n"
    } else {
        tbot::status::render(&status)
    };
    // The journal keeps what the server said; the token never shows, whatever it echoed.
    print!("{}", config.server.token.redact(&text));
    Ok(ExitCode::from(status.health.state as u8))
}

async fn run_agent(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("tbot: {err}");
            return Ok(ExitCode::from(2));
        }
    };
    tbot::logging::init(
        &config.log.level,
        config.log.format,
        Some(&config.server.token),
    );
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    Agent::new(config, Control::from_signals()?)?.run().await?;
    Ok(ExitCode::SUCCESS)
}

async fn mock_server(args: MockServerArgs) -> anyhow::Result<()> {
    tbot::logging::init("info", LogFormat::Text, None);
    let mut settings = match &args.config {
        Some(path) => MockSettings::load(path)?,
        None => MockSettings::default(),
    };
    for token in &args.agent_tokens {
        settings.add_agent_token(token);
    }
    if !args.users.is_empty() {
        settings.users = args.users;
    }
    settings.state_dir = args.state_dir;
    if args
        .store_token
        .as_deref()
        .is_some_and(|token| token.trim().is_empty())
    {
        anyhow::bail!("--store-token is empty: give the token the store sends its orders with");
    }
    settings.store_token = args.store_token.map(tbot::config::Secret::new);
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
        // Until operators log in with passwords, anyone who reaches it can act as any
        // user: say so where the person starting it reads.
        eprintln!(
            "tbot: warning: the mock job side listens on {}, which other machines can reach; \
             its operator API trusts the user named in each request, so keep it on a network \
             you trust (or listen on 127.0.0.1, the default)",
            server.addr
        );
    }
    Control::from_signals()?.shutdown().wait().await;
    server.stop().await;
    Ok(())
}

async fn mock(args: MockArgs) -> anyhow::Result<()> {
    let client = OperatorClient::new(&args.server, &args.user)?;
    let answer: Value = match args.action {
        MockAction::Jobs { group } => {
            client
                .get(if group {
                    "/jobs?group=order_number"
                } else {
                    "/jobs"
                })
                .await?
        }
        MockAction::Job { id } => client.get(&format!("/jobs/{}", segment(&id))).await?,
        MockAction::CreateJob {
            name,
            order,
            queues,
            files,
        } => {
            // Every file is read before the job is made: one that cannot be read
            // leaves nothing behind on the server.
            let mut contents = Vec::new();
            for path in files {
                let file_name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .with_context(|| format!("{} has no usable file name", path.display()))?
                    .to_string();
                let bytes = tokio::fs::read(&path)
                    .await
                    .with_context(|| format!("cannot read {}", path.display()))?;
                contents.push((file_name, bytes));
            }
            let id = client.create_job(&name, order.as_deref(), &queues).await?;
            for (file_name, bytes) in contents {
                client.upload(&id, &file_name, bytes).await?;
            }
            client.get(&format!("/jobs/{}", segment(&id))).await?
        }
        MockAction::RequestApproval { id } => {
            client
                .post(
                    &format!("/jobs/{}/request-approval", segment(&id)),
                    json!({}),
                )
                .await?
        }
        MockAction::Approve { id } => {
            client
                .post(&format!("/jobs/{}/approve", segment(&id)), json!({}))
                .await?
        }
        MockAction::Hold { id } => {
            client
                .post(&format!("/jobs/{}/hold", segment(&id)), json!({}))
                .await?
        }
        MockAction::Archive { id } => {
            client
                .post(&format!("/jobs/{}/archive", segment(&id)), json!({}))
                .await?
        }
        MockAction::SetQueues { id, queues } => {
            client
                .put(
                    &format!("/jobs/{}/queues", segment(&id)),
                    json!({ "queues": queues }),
                )
                .await?
        }
        MockAction::Order { number, queues } => {
            client
                .post("/orders", json!({"number": number, "queues": queues}))
                .await?
        }
        MockAction::Send { jobs, queues } => {
            let chosen = (!queues.is_empty()).then_some(queues.as_slice());
            client.send(&jobs, chosen).await?
        }
        MockAction::SendOrder { number } => {
            client
                .post(&format!("/orders/{}/send", segment(&number)), json!({}))
                .await?
        }
        MockAction::OrderDetails { number } => {
            client.get(&format!("/orders/{}", segment(&number))).await?
        }
        MockAction::Closeout { number, confirm } => {
            client
                .post(
                    &format!("/orders/{}/closeout", segment(&number)),
                    json!({ "confirm": confirm }),
                )
                .await?
        }
        MockAction::Document { number, kind } => {
            print!(
                "{}",
                client
                    .page(&format!("/orders/{}/{}", segment(&number), kind))
                    .await?
            );
            return Ok(());
        }
        MockAction::Complete { id } => {
            client
                .post(&format!("/jobs/{}/complete", segment(&id)), json!({}))
                .await?
        }
        MockAction::Retain { id } => {
            client
                .post(&format!("/jobs/{}/retain", segment(&id)), json!({}))
                .await?
        }
        MockAction::Queues { all } => {
            client
                .get(if all { "/queues?all=true" } else { "/queues" })
                .await?
        }
        MockAction::Deliveries => client.get("/deliveries").await?,
        MockAction::Autosend { state } => {
            client
                .put("/settings", json!({ "autosend": state == "on" }))
                .await?
        }
        MockAction::Faults {
            seed,
            error_rate,
            drop_after,
            truncate_rate,
            corrupt_rate,
            bytes_per_second,
            ignore_ranges,
            down_for,
        } => {
            let faults = json!({
                "seed": seed,
                "error_rate": error_rate,
                "drop_after": drop_after,
                "truncate_rate": truncate_rate,
                "corrupt_rate": corrupt_rate,
                "bytes_per_second": bytes_per_second.map(|b| b.as_u64()),
                "ignore_ranges": ignore_ranges,
                "down_for": down_for.map(|d| humantime::format_duration(d).to_string()),
            });
            client.put("/faults", faults).await?
        }
        MockAction::Requests => client.get("/requests").await?,
        MockAction::AdvanceClock { by } => {
            client
                .post(
                    "/clock/advance",
                    json!({ "by": humantime::format_duration(by).to_string() }),
                )
                .await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}
