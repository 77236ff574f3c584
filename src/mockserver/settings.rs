//! What the mock server is started with: agent tokens, users and rules, from flags or a
//! small TOML file (see `docs/api.md`, "Starting the mock server").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use super::auth::PasswordHash;
use super::faults::Faults;
use super::model::Template;
use super::model::{Settings, SettingsChange};
use super::tls::ServerTls;
use crate::config::Secret;

/// One agent the server accepts, known by its token.
#[derive(Debug, Clone)]
pub struct AgentToken {
    pub name: String,
    pub token: Secret,
}

/// One person who drives the server, with a profile such as `site_owner` and the
/// hash of the password they log in with.
#[derive(Debug, Clone)]
pub struct UserEntry {
    pub name: String,
    pub profile: String,
    pub password: PasswordHash,
}

impl UserEntry {
    /// A user whose password is given in the clear (a flag, a test), hashed here.
    pub fn with_password(name: &str, profile: &str, password: &str) -> UserEntry {
        UserEntry {
            name: name.to_string(),
            profile: profile.to_string(),
            password: PasswordHash::of(password),
        }
    }
}

/// The mock server's start-up settings.
#[derive(Debug, Clone)]
pub struct MockSettings {
    pub model: Settings,
    pub agents: Vec<AgentToken>,
    pub users: Vec<UserEntry>,
    pub faults: Faults,
    /// Keep the work (jobs, deliveries, files) in this folder across restarts, rather
    /// than in memory only.
    pub state_dir: Option<PathBuf>,
    /// Serve HTTPS with these files, rather than plain HTTP.
    pub tls: Option<ServerTls>,
    /// The token a web-to-print store sends its orders with; none takes no orders.
    pub store_token: Option<Secret>,
    /// Production templates by store product: the queues its jobs go to, and whether
    /// they arrive approved.
    pub templates: BTreeMap<String, Template>,
}

impl Default for MockSettings {
    /// No agents, no users, and the rules of a real server.
    fn default() -> Self {
        MockSettings {
            model: Settings::default(),
            agents: Vec::new(),
            users: Vec::new(),
            faults: Faults::default(),
            state_dir: None,
            tls: None,
            store_token: None,
            templates: BTreeMap::new(),
        }
    }
}

/// The settings file's tables; its top-level keys are a [`SettingsChange`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTables {
    #[serde(default)]
    agent: Vec<RawAgent>,
    #[serde(default)]
    user: Vec<RawUser>,
    #[serde(default)]
    faults: Faults,
}

/// A `[[user]]` of the file: the users file keeps only argon2 hashes of passwords.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    profile: String,
    password_hash: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    name: String,
    token: String,
}

impl MockSettings {
    /// Reads a mock server file: `autosend`, `queue_ttl`, `lease`, `retry_hold`,
    /// `[[agent]] name/token`, `[[user]] name/profile/password_hash` and `[faults]`.
    pub fn load(path: &Path) -> anyhow::Result<MockSettings> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read mock server file {}", path.display()))?;
        let bad = |err: toml::de::Error| {
            anyhow::anyhow!("mock server file {}: {}", path.display(), err.message())
        };
        // The rules are top-level keys and the rest are tables: split them so each part
        // is read strictly and an unknown key anywhere is refused.
        let mut rules: toml::Table = toml::from_str(&text).map_err(bad)?;
        let tables: toml::Table = ["agent", "user", "faults"]
            .into_iter()
            .filter_map(|key| rules.remove(key).map(|value| (key.to_string(), value)))
            .collect();
        let raw: RawTables = tables.try_into().map_err(bad)?;
        let rules: SettingsChange = rules.try_into().map_err(bad)?;
        let mut settings = MockSettings::default();
        settings.model.apply(&rules);
        settings.agents = raw
            .agent
            .into_iter()
            .map(|agent| AgentToken {
                name: agent.name,
                token: Secret::new(agent.token),
            })
            .collect();
        settings.users = raw
            .user
            .into_iter()
            .map(|user| {
                let what = format!("mock server file {}: user {}", path.display(), user.name);
                Ok(UserEntry {
                    password: PasswordHash::parse(&user.password_hash, &what)?,
                    name: user.name,
                    profile: user.profile,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        settings.faults = raw.faults;
        Ok(settings)
    }

    /// Accepts one more agent token, named `agent-N` in the order given.
    pub fn add_agent_token(&mut self, token: &str) {
        let name = format!("agent-{}", self.agents.len() + 1);
        self.agents.push(AgentToken {
            name,
            token: Secret::new(token),
        });
    }
}
