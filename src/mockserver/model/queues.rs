//! Queues as agents announce them in heartbeats, and the agents serving them.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Model;
use crate::protocol::{self, HeartbeatRequest, QueueKind, QueueStatus};

/// A queue as the server knows it from heartbeats.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Queue {
    pub name: String,
    pub kind: QueueKind,
    pub status: QueueStatus,
    pub detail: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub last_heartbeat: OffsetDateTime,
    /// The agents serving it, by the names their tokens have here: they decide leases.
    pub agents: BTreeSet<String>,
    /// The same agents by the names they are configured with, for a person.
    #[serde(default)]
    pub agent_names: BTreeSet<String>,
}

/// An agent as its last heartbeat showed it: the name it is configured with (its
/// `[agent] name`, which a person recognises), its token's name here, its version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentSeen {
    pub name: String,
    pub token_name: String,
    pub version: String,
    #[serde(with = "time::serde::rfc3339")]
    pub last_heartbeat: OffsetDateTime,
}

impl Queue {
    /// Its status as a person reads it: `ready`, or `unavailable: hotfolder missing`.
    pub fn status_text(&self) -> String {
        let status = protocol::wire_name(&self.status);
        match &self.detail {
            Some(detail) => format!("{status}: {detail}"),
            None => status,
        }
    }
}

impl Model {
    /// Records a heartbeat of `agent` (the name its token gives it): the queues it
    /// names are connected from now on.
    pub fn heartbeat(&mut self, agent: &str, request: &HeartbeatRequest, now: OffsetDateTime) {
        let seen = AgentSeen {
            name: request.agent.clone(),
            token_name: agent.to_string(),
            version: request.version.clone(),
            last_heartbeat: now,
        };
        match self
            .agents
            .iter_mut()
            .find(|known| known.token_name == seen.token_name && known.name == seen.name)
        {
            Some(known) => *known = seen,
            None => self.agents.push(seen),
        }
        for announced in &request.queues {
            let queue = self
                .queues
                .entry(announced.name.clone())
                .or_insert_with(|| Queue {
                    name: announced.name.clone(),
                    kind: announced.kind,
                    status: announced.status,
                    detail: None,
                    last_heartbeat: now,
                    agents: BTreeSet::new(),
                    agent_names: BTreeSet::new(),
                });
            queue.kind = announced.kind;
            queue.status = announced.status;
            queue.detail = announced.detail.clone();
            queue.last_heartbeat = now;
            queue.agents.insert(agent.to_string());
            queue.agent_names.insert(request.agent.clone());
        }
    }

    /// Whether a queue has sent a heartbeat within `queue_ttl`.
    pub fn is_connected(&self, queue: &Queue, now: OffsetDateTime) -> bool {
        now - queue.last_heartbeat <= self.settings.queue_ttl
    }

    /// The queues a person can choose when sending: those connected now.
    pub fn connected_queues(&self, now: OffsetDateTime) -> Vec<&Queue> {
        self.queues
            .values()
            .filter(|queue| self.is_connected(queue, now))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{announce, announce_as, at, model};
    use time::OffsetDateTime;

    #[test]
    fn agents_sharing_a_token_are_told_apart_by_their_configured_names() {
        let mut model = model();
        announce_as(&mut model, "agent-1", "pressroom-1", &["indigo"], at(0));
        announce_as(&mut model, "agent-1", "pressroom-2", &["indigo"], at(1));
        announce_as(&mut model, "agent-1", "pressroom-1", &["indigo"], at(5));
        let seen: Vec<(&str, OffsetDateTime)> = model
            .agents
            .iter()
            .map(|agent| (agent.name.as_str(), agent.last_heartbeat))
            .collect();
        assert_eq!(seen, [("pressroom-1", at(5)), ("pressroom-2", at(1))]);
        let names: Vec<&String> = model.queues["indigo"].agent_names.iter().collect();
        assert_eq!(names, ["pressroom-1", "pressroom-2"]);
        // Leases still go by the token.
        let tokens: Vec<&String> = model.queues["indigo"].agents.iter().collect();
        assert_eq!(tokens, ["agent-1"]);
    }

    #[test]
    fn a_queue_is_connected_for_the_ttl_after_its_last_heartbeat() {
        let mut model = model();
        announce(&mut model, "agent-1", &["indigo"], at(0));
        let ttl = i64::try_from(model.settings.queue_ttl.as_secs()).unwrap();
        let queue = model.queues["indigo"].clone();
        assert!(model.is_connected(&queue, at(ttl)));
        assert!(!model.is_connected(&queue, at(ttl + 1)));
        assert_eq!(model.connected_queues(at(ttl + 1)).len(), 0);
    }
}
