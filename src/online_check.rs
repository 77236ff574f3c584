//! `tbot check-config --online`: what `check-config` checks, and then what only the
//! machine and the job side can tell: each hotfolder is there and writable by this
//! user, its staging folder on the same file system, the server answers and takes the
//! token, and the two clocks agree. One line per check, so an admin installing tbot
//! sees at once what is left to fix.
//!
//! Nothing is created: run as another user (root, say), making `.tbot` would leave it
//! owned by the wrong user for the agent.

use std::path::Path;

use time::OffsetDateTime;

use crate::agent::client::{ClientError, JobSideClient};
use crate::agent::staging::STAGING_DIR;
use crate::client_cert_probe::asks_for_client_certificate;
use crate::config::Config;

/// Clocks further apart than this make leases unreliable to judge by eye.
const CLOCK_SKEW_LIMIT: time::Duration = time::Duration::minutes(1);

/// One check and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub passed: bool,
    /// What was checked and what was found, for a person.
    pub line: String,
}

impl Check {
    fn passed(line: String) -> Check {
        Check { passed: true, line }
    }

    fn failed(line: String) -> Check {
        Check {
            passed: false,
            line,
        }
    }
}

/// Runs every check for `config`.
pub async fn run(config: &Config) -> Vec<Check> {
    let mut checks: Vec<Check> = config
        .queues
        .iter()
        .map(|queue| hotfolder(&queue.name, &queue.hotfolder))
        .collect();
    checks.extend(server(config).await);
    checks
}

/// The hotfolder of queue `name` at `root`: a folder this user may write, and, when
/// tbot has made its staging folder there already, that folder tbot's and on the same
/// file system (the final move must be a rename, never a copy).
fn hotfolder(name: &str, root: &Path) -> Check {
    let what = format!("queue {name}: hotfolder {}", root.display());
    let meta = match std::fs::metadata(root) {
        Ok(meta) if meta.is_dir() => meta,
        Ok(_) => return Check::failed(format!("{what} is not a folder")),
        Err(err) => return Check::failed(format!("{what} cannot be used: {err}")),
    };
    if let Err(err) = rustix::fs::access(root, rustix::fs::Access::WRITE_OK) {
        return Check::failed(format!(
            "{what} is not writable by this user: {}",
            std::io::Error::from(err)
        ));
    }
    let staging = root.join(STAGING_DIR);
    match std::fs::symlink_metadata(&staging) {
        Err(_) => Check::passed(format!(
            "{what} is writable; tbot makes its staging folder there at start"
        )),
        Ok(staged) if !staged.is_dir() => Check::failed(format!(
            "{what}: {} is a link or not a folder; remove it and tbot makes its own",
            staging.display()
        )),
        Ok(staged) => {
            use std::os::unix::fs::MetadataExt;
            if staged.dev() != meta.dev() {
                Check::failed(format!(
                    "{what}: {} is on another file system, so files could not be moved in \
                     in one step; remove what is mounted there",
                    staging.display()
                ))
            } else {
                Check::passed(format!(
                    "{what} is writable, its staging folder on the same file system"
                ))
            }
        }
    }
}

/// The server: reachable, taking the token, its clock close to ours.
async fn server(config: &Config) -> Vec<Check> {
    let url = &config.server.url;
    let client = match JobSideClient::new(&config.server) {
        Ok(client) => client,
        Err(err) => return vec![Check::failed(format!("server {url}: {err:#}"))],
    };
    let sent = OffsetDateTime::now_utc();
    match client.whoami().await {
        Ok(Some(who)) => {
            let skew = who.server_time - sent;
            let clock = if skew.abs() > CLOCK_SKEW_LIMIT {
                Check::failed(format!(
                    "the server's clock is {} off this machine's: set both by NTP",
                    humantime::format_duration(skew.unsigned_abs())
                ))
            } else {
                Check::passed("the server's clock agrees with this machine's".into())
            };
            vec![
                Check::passed(format!(
                    "server {url} takes the token, as agent {} (protocol {})",
                    who.agent, who.protocol
                )),
                clock,
            ]
        }
        Ok(None) => vec![Check::passed(format!(
            "server {url} answers but speaks protocol 1, without whoami: the token is \
             checked at the first heartbeat"
        ))],
        Err(ClientError::Refused { status: 401, .. }) => vec![Check::failed(format!(
            "server {url} refuses the token (401): check server.token"
        ))],
        Err(err) => {
            // Only a connection that broke says nothing of why: a refusal with a status
            // or a certificate error speaks for itself.
            let said = err.to_string();
            let unasked = config.server.tls.client_identity.is_none()
                && !said.contains("client certificate")
                && (said.contains("Canceled") || said.contains("connection"));
            let asks = unasked && asks_for_client_certificate(url).await == Some(true);
            vec![Check::failed(if asks {
                format!(
                    "server {url}: {err}; the server asks for a client certificate: set \
                     server.client_cert and server.client_key"
                )
            } else {
                format!("server {url}: {err}")
            })]
        }
    }
}
