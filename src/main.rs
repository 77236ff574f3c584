//! The `tbot` command: the agent daemon, its configuration check, the bundled mock job
//! side, a client to drive that mock from the shell, and the demo.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use tbot::agent::Agent;
use tbot::config::{default_config_path, Config, LogFormat};
use tbot::control::Control;
use tbot::health::State;

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
    MockServer(tbot::mock_server_command::MockServerArgs),
    /// Do what a person does on the mock job side: create, approve, send jobs...
    Mock(tbot::mock_command::MockArgs),
    /// Show jobs travelling from the mock job side into three hotfolders, verified.
    Demo {
        /// Folder for the demo's hotfolders, state and configuration.
        #[arg(long, default_value = "tbot-demo")]
        dir: PathBuf,
        /// Keep the job side and the agent running afterwards, to try the web page
        /// (Ctrl-C stops).
        #[arg(long)]
        keep_serving: bool,
    },
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
        Command::MockServer(args) => tbot::mock_server_command::run(args)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Mock(args) => tbot::mock_command::run(args)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Demo { dir, keep_serving } => {
            // The agent's steps are the show; the mock server's own lines would be noise.
            tbot::logging::init("info,tbot::mockserver=warn", LogFormat::Text, None);
            tbot::demo::run(&dir, keep_serving)
                .await
                .map(|()| ExitCode::SUCCESS)
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
