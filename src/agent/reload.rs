//! Reloading the configuration on SIGHUP (`systemctl reload tbot`): the file is read
//! and checked as `check-config` does; a file with problems changes nothing, a valid
//! one is applied without a restart and without disturbing the deliveries in flight,
//! which keep the queue and connection they started with.

use std::time::Duration;

use tracing::{error, info, warn};

use super::connection::Connection;
use super::queue_set::Queue;
use super::Agent;
use crate::config::{Config, QueueConfig};

/// What a reload found different, in words for its one log line.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Changes {
    /// Applied at once.
    pub(super) applied: Vec<String>,
    /// Kept as they were until the next restart.
    pub(super) need_restart: Vec<String>,
}

/// Whether the check loop's timers must be set again after a reload.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Reloaded {
    /// Nothing changed in how the agent works: the file was refused or identical.
    Nothing,
    /// The new configuration is in effect.
    Applied,
}

impl Agent {
    /// Re-reads the configuration file and applies it, or says why not.
    pub(super) fn reload(&mut self, in_flight: usize) -> Reloaded {
        self.service.reloading();
        let outcome = match self.load_for_reload() {
            Ok((new, connection)) => {
                self.reload_refused = None;
                self.apply(new, connection)
            }
            Err(why) => {
                error!("configuration not reloaded, tbot carries on with the previous one: {why}");
                let (hour, minute, _) = time::OffsetDateTime::now_utc().to_hms();
                self.reload_refused = Some(format!(
                    "the reload at {hour:02}:{minute:02} UTC was refused (see the log), running on the previous configuration"
                ));
                Reloaded::Nothing
            }
        };
        let status = self.status_line(in_flight);
        self.service.ready(status);
        outcome
    }

    /// The configuration file as it is now, if it can be applied, and the connection
    /// to the server it describes, its TLS files read afresh (a renewed certificate
    /// keeps its file name).
    fn load_for_reload(&self) -> Result<(Config, Connection), String> {
        let Some(path) = &self.config.source else {
            return Err("this agent was not started from a configuration file".into());
        };
        let new = Config::load(path).map_err(|err| err.to_string())?;
        if new.server.url != self.config.server.url {
            // Deliveries are known by the server's ids: the journal stays with one job
            // side, as at start-up.
            return Err(format!(
                "server.url changed from {} to {}, but the journal in {} belongs to the first: \
                 deliveries are known by that server's ids. Restart with a new agent.state_dir \
                 once the old server's deliveries are finished",
                self.config.server.url,
                new.server.url,
                self.config.agent.state_dir.display()
            ));
        }
        let connection = Connection::new(&new.server).map_err(|err| format!("{err:#}"))?;
        Ok((new, connection))
    }

    /// Puts `new` in effect, reaching the server over `connection` from now on; logs
    /// what changed in one line.
    fn apply(&mut self, mut new: Config, connection: Connection) -> Reloaded {
        let changes = changes(&self.config, &new);
        // What cannot change live stays as it is until the next start.
        new.agent.state_dir = self.config.agent.state_dir.clone();
        new.metrics_listen = self.config.metrics_listen;
        for warning in &new.warnings {
            warn!("{warning}");
        }
        self.worker.client().switch_to(connection);
        if let Err(err) =
            crate::logging::reconfigure(&new.log.level, new.log.format, &new.server.token)
        {
            warn!("cannot apply the new [log] settings: {err}");
        }
        self.worker.set_concurrency(new.agent.concurrency);
        self.worker.queues().replace(
            new.queues
                .iter()
                .map(|queue| Queue::new(queue, &self.instance))
                .collect(),
        );
        for removed in self
            .config
            .queues
            .iter()
            .filter(|queue| new.queue(&queue.name).is_none())
        {
            self.events.metrics().forget_queue(&removed.name);
        }
        self.queue_state
            .retain(|name, _| new.queues.iter().any(|queue| &queue.name == name));
        self.looks
            .retain(|name, _| new.queues.iter().any(|queue| &queue.name == name));
        self.config = new;
        if !changes.need_restart.is_empty() {
            warn!(
                "needs a restart to take effect, kept as it was until then: {}",
                changes.need_restart.join("; ")
            );
        }
        if changes.applied.is_empty() {
            info!("configuration reloaded: nothing changed");
        } else {
            info!("configuration reloaded: {}", changes.applied.join("; "));
        }
        Reloaded::Applied
    }
}

/// What differs between `old` and `new`, in words.
pub(super) fn changes(old: &Config, new: &Config) -> Changes {
    let mut changes = Changes::default();
    let mut applied = |what: String| changes.applied.push(what);
    for queue in &new.queues {
        match old.queue(&queue.name) {
            None => applied(format!("queue {} added", queue.name)),
            Some(before) if before != queue => applied(format!(
                "queue {} changed ({})",
                queue.name,
                queue_differences(before, queue).join(", ")
            )),
            Some(_) => {}
        }
    }
    for queue in &old.queues {
        if new.queue(&queue.name).is_none() {
            applied(format!(
                "queue {} removed (what it has in flight finishes)",
                queue.name
            ));
        }
    }
    let durations = [
        (
            "server.check_interval",
            old.server.check_interval,
            new.server.check_interval,
        ),
        (
            "server.heartbeat_interval",
            old.server.heartbeat_interval,
            new.server.heartbeat_interval,
        ),
        (
            "server.long_poll",
            old.server.long_poll,
            new.server.long_poll,
        ),
    ];
    for (key, before, after) in durations {
        if before != after {
            applied(format!("{key} {} → {}", human(before), human(after)));
        }
    }
    if old.server.token != new.server.token {
        applied("server.token replaced (new connections use it)".into());
    }
    if old.server.tls != new.server.tls {
        applied("server TLS files (ca_file, client_cert, client_key) changed".into());
    }
    if old.agent.name != new.agent.name {
        applied(format!(
            "agent.name {} → {}",
            old.agent.name, new.agent.name
        ));
    }
    if old.agent.concurrency != new.agent.concurrency {
        applied(format!(
            "agent.concurrency {} → {}",
            old.agent.concurrency, new.agent.concurrency
        ));
    }
    if old.log.level != new.log.level {
        applied(format!("log.level {} → {}", old.log.level, new.log.level));
    }
    if old.log.format != new.log.format {
        applied(format!(
            "log.format {} → {}",
            old.log.format.name(),
            new.log.format.name()
        ));
    }
    if old.metrics_listen != new.metrics_listen {
        let shown = |listen: Option<std::net::SocketAddr>| {
            listen.map_or_else(|| "off".to_string(), |listen| listen.to_string())
        };
        changes.need_restart.push(format!(
            "metrics.listen {} → {}",
            shown(old.metrics_listen),
            shown(new.metrics_listen)
        ));
    }
    if old.agent.state_dir != new.agent.state_dir {
        changes.need_restart.push(format!(
            "agent.state_dir {} → {}",
            old.agent.state_dir.display(),
            new.agent.state_dir.display()
        ));
    }
    changes
}

/// The settings of a queue that differ, by key.
fn queue_differences(old: &QueueConfig, new: &QueueConfig) -> Vec<&'static str> {
    [
        ("kind", old.kind != new.kind),
        ("hotfolder", old.hotfolder != new.hotfolder),
        ("naming", old.naming != new.naming),
        ("max_file_size", old.max_file_size != new.max_file_size),
        ("stall_after", old.stall_after != new.stall_after),
        ("layout", old.profile.layout != new.profile.layout),
        ("subfolder", old.profile.subfolder != new.profile.subfolder),
        ("ticket", old.profile.ticket != new.profile.ticket),
        ("trigger", old.profile.trigger != new.profile.trigger),
        (
            "max_waiting",
            old.profile.max_waiting != new.profile.max_waiting,
        ),
        (
            "accepted_folder",
            old.profile.accepted_folder != new.profile.accepted_folder,
        ),
        (
            "rejected_folder",
            old.profile.rejected_folder != new.profile.rejected_folder,
        ),
    ]
    .into_iter()
    .filter_map(|(key, differs)| differs.then_some(key))
    .collect()
}

fn human(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra_agent: &str, queues: &str) -> Config {
        Config::parse(
            &format!(
                "[server]\nurl = \"http://127.0.0.1:8470\"\ntoken = \"t\"\ncheck_interval = \"60s\"\n\
                 [agent]\nname = \"a\"\nstate_dir = \"/tmp/s\"\n{extra_agent}\n{queues}"
            ),
            None,
        )
        .expect("valid")
    }

    const INDIGO: &str =
        "[[queue]]\nname = \"indigo\"\nkind = \"printer\"\nhotfolder = \"/tmp/i\"\n";
    const PROOF: &str = "[[queue]]\nname = \"proof\"\nkind = \"printer\"\nhotfolder = \"/tmp/p\"\n";

    #[test]
    fn queues_added_removed_and_changed_are_each_named() {
        let old = config("", &format!("{INDIGO}{PROOF}"));
        let new = config(
            "concurrency = 2",
            &format!(
                "{}{}",
                INDIGO.replace("/tmp/i", "/tmp/j"),
                PROOF.replace("proof", "plate")
            ),
        );
        let changes = changes(&old, &new);
        assert_eq!(
            changes.applied,
            [
                "queue indigo changed (hotfolder)",
                "queue plate added",
                "queue proof removed (what it has in flight finishes)",
                "agent.concurrency 4 → 2",
            ]
        );
        assert!(changes.need_restart.is_empty());
    }

    #[test]
    fn a_new_state_dir_waits_for_a_restart() {
        let old = config("", INDIGO);
        let new = config("", INDIGO);
        assert_eq!(changes(&old, &new), Changes::default());
        let mut moved = new.clone();
        moved.agent.state_dir = "/var/lib/elsewhere".into();
        let changes = changes(&old, &moved);
        assert!(changes.applied.is_empty());
        assert_eq!(
            changes.need_restart,
            ["agent.state_dir /tmp/s → /var/lib/elsewhere"]
        );
    }
}
