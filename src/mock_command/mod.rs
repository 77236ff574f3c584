//! `tbot mock`: what a person does on the mock job side, from the shell.

mod print;
mod ticket_args;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::config::Secret;
use crate::mockserver::auth::PasswordHash;
use crate::mockserver::model::JobAction;
use crate::operator_client::{segment, OperatorClient};
use print::Shape;
use ticket_args::TicketArgs;

#[derive(clap::Args)]
pub struct MockArgs {
    /// The mock server's URL.
    #[arg(long, default_value = "http://127.0.0.1:8470", env = "TBOT_MOCK_URL")]
    server: String,
    /// The API token `tbot mock login` printed: every command acts as its user.
    #[arg(long, env = "TBOT_MOCK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the server's answers as JSON, for scripts.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    action: MockAction,
}

#[derive(Subcommand)]
pub(crate) enum MockAction {
    /// Log in as NAME and print an API token for the other commands (export it as
    /// TBOT_MOCK_TOKEN). The password is read from TBOT_MOCK_PASSWORD, else from the
    /// first line of standard input.
    Login { name: String },
    /// Print the argon2 hash of the password on standard input's first line, for
    /// `password_hash` in the mock server's users file.
    HashPassword,
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
    /// request-approval, approve, hold, archive, complete, retain.
    #[command(flatten)]
    Button(JobButton),
    /// Set who ordered a job and what its device needs (quantity, sides, color,
    /// media, finishing, due date, notes): what a job ticket tells the device. Each
    /// call sets them all anew.
    Ticket {
        id: String,
        #[command(flatten)]
        ticket: TicketArgs,
    },
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

/// The buttons on a job, each a command of its own (`tbot mock approve J-1001`).
#[derive(Subcommand)]
pub(crate) enum JobButton {
    /// Move a job in progress to awaiting approval.
    RequestApproval { id: String },
    /// Approve a job (with AutoSend on, it goes to production).
    Approve { id: String },
    /// Put a job on hold.
    Hold { id: String },
    /// Archive a job.
    Archive { id: String },
    /// Complete a store job whose order is closed out.
    Complete { id: String },
    /// Retain a store job whose order is closed out.
    Retain { id: String },
}

impl JobButton {
    /// The action it presses, and on which job.
    fn pressed(&self) -> (JobAction, &str) {
        match self {
            JobButton::RequestApproval { id } => (JobAction::RequestApproval, id),
            JobButton::Approve { id } => (JobAction::Approve, id),
            JobButton::Hold { id } => (JobAction::Hold, id),
            JobButton::Archive { id } => (JobAction::Archive, id),
            JobButton::Complete { id } => (JobAction::Complete, id),
            JobButton::Retain { id } => (JobAction::Retain, id),
        }
    }
}

impl MockAction {
    /// How the command's answer reads for a person.
    fn shape(&self) -> Shape {
        match self {
            MockAction::Jobs { .. } => Shape::Jobs,
            MockAction::Job { .. }
            | MockAction::CreateJob { .. }
            | MockAction::Button(_)
            | MockAction::Ticket { .. }
            | MockAction::SetQueues { .. } => Shape::Job,
            MockAction::Order { .. } => Shape::Order,
            MockAction::Send { .. } => Shape::Sent,
            MockAction::OrderDetails { .. } => Shape::OrderDetails,
            MockAction::Closeout { .. } => Shape::Closeout,
            MockAction::Queues { .. } => Shape::Queues,
            MockAction::Deliveries => Shape::Deliveries,
            MockAction::Autosend { .. } => Shape::Settings,
            MockAction::Faults { .. } => Shape::Faults,
            MockAction::Requests => Shape::Requests,
            MockAction::AdvanceClock { .. } => Shape::Clock,
            MockAction::Login { .. }
            | MockAction::HashPassword
            | MockAction::SendOrder { .. }
            | MockAction::Document { .. } => Shape::Done,
        }
    }
}

pub async fn run(args: MockArgs) -> anyhow::Result<()> {
    let shape = args.action.shape();
    let mut client = OperatorClient::new(&args.server)?;
    if let Some(token) = args.token {
        client = client.with_token(Secret::new(token));
    }
    let answer: Value = match args.action {
        MockAction::Login { name } => {
            let password = password_from_env_or_stdin()?;
            let token = client.log_in(&name, &password).await?;
            println!("{}", token.expose());
            return Ok(());
        }
        MockAction::HashPassword => {
            println!("{}", PasswordHash::of(&password_from_stdin()?).as_str());
            return Ok(());
        }
        MockAction::Jobs { group } => {
            client
                .get(if group {
                    "/jobs?group=order_number"
                } else {
                    "/jobs"
                })
                .await?
        }
        MockAction::Button(button) => {
            let (action, id) = button.pressed();
            let path = format!("/jobs/{}/{}", segment(id), action.name());
            client.post(&path, json!({})).await?
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
        MockAction::Ticket { id, ticket } => {
            client
                .put(&format!("/jobs/{}/ticket", segment(&id)), ticket.body())
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
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", print::render(shape, &answer));
    }
    // A send answers per job; one job refused is a refusal, for scripts as for people.
    let refused = answer["results"].as_array().map_or(0, |results| {
        results.iter().filter(|r| r["ok"] == json!(false)).count()
    });
    if refused > 0 {
        anyhow::bail!("{refused} of the jobs were not sent (see above)");
    }
    Ok(())
}
/// A password from `TBOT_MOCK_PASSWORD`, else from standard input: never from an
/// argument, which other users of the machine can read in the process list.
fn password_from_env_or_stdin() -> anyhow::Result<String> {
    match std::env::var("TBOT_MOCK_PASSWORD") {
        Ok(password) if !password.is_empty() => Ok(password),
        _ => password_from_stdin(),
    }
}

fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        anyhow::bail!("no password: give it on standard input (or in TBOT_MOCK_PASSWORD)");
    }
    Ok(password.to_string())
}
