//! Who may do what: user profiles and their permissions (seed 001: only a site owner
//! may send to production).

use std::collections::BTreeMap;

use serde::Serialize;

use super::error::{refuse, ErrorKind, ModelError};
use super::Model;

/// A user profile: what the people who have it may do.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub send_to_production: bool,
}

/// The profiles every server starts with. Only site owners may send to production.
pub fn default_profiles() -> BTreeMap<String, Profile> {
    [
        ("site_owner", true),
        ("administrator", false),
        ("designer", false),
        ("customer_service", false),
    ]
    .into_iter()
    .map(|(name, send)| {
        (
            name.to_string(),
            Profile {
                send_to_production: send,
            },
        )
    })
    .collect()
}

impl Model {
    /// Adds a user with a profile; the profile must exist.
    pub fn add_user(&mut self, name: &str, profile: &str) -> Result<(), ModelError> {
        if !self.profiles.contains_key(profile) {
            return Err(refuse(
                ErrorKind::Invalid,
                "unknown_profile",
                format!(
                    "user {name}: there is no profile {profile:?} (profiles: {})",
                    self.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        self.users.insert(name.to_string(), profile.to_string());
        Ok(())
    }

    pub(super) fn check_send_permission(&self, user: &str) -> Result<(), ModelError> {
        let profile = self.users.get(user).ok_or_else(|| {
            refuse(
                ErrorKind::Forbidden,
                "unknown_user",
                format!("there is no user {user:?}"),
            )
        })?;
        let allowed = self
            .profiles
            .get(profile)
            .is_some_and(|p| p.send_to_production);
        if !allowed {
            return Err(refuse(
                ErrorKind::Forbidden,
                "permission_denied",
                format!(
                    "user {user} has profile {profile}, which does not have the send-to-production permission"
                ),
            ));
        }
        Ok(())
    }
}
