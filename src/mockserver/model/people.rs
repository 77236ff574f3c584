//! Who may do what: user profiles and their permissions. Seed 001: only a site owner
//! may send to production; seed 002: operators and administrators close out orders.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::error::{refuse, ErrorKind, ModelError};
use super::Model;

/// One thing a profile may allow. Seeing jobs, orders and queues needs none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Create jobs and orders, upload files, choose queues, ask for approval.
    CreateJobs,
    /// Approve, hold, archive, complete and retain jobs.
    ManageJobs,
    /// Send to Production and Send Again.
    SendToProduction,
    /// Close out store orders.
    CloseOutOrders,
    /// Turn AutoSend on and off and change the server's rules, faults and clock.
    ChangeSettings,
}

impl Permission {
    /// The permission as a person reads it in a refusal.
    pub fn describe(self) -> &'static str {
        match self {
            Permission::CreateJobs => "create-jobs",
            Permission::ManageJobs => "manage-jobs",
            Permission::SendToProduction => "send-to-production",
            Permission::CloseOutOrders => "close-out-orders",
            Permission::ChangeSettings => "change-settings",
        }
    }
}

/// A user profile: what the people who have it may do.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub permissions: BTreeSet<Permission>,
}

/// The profiles every server starts with. Only site owners may send to production or
/// turn AutoSend on; operators and administrators run jobs and close out orders.
pub fn default_profiles() -> BTreeMap<String, Profile> {
    use Permission::*;
    let profiles: [(&str, &[Permission]); 5] = [
        (
            "site_owner",
            &[
                CreateJobs,
                ManageJobs,
                SendToProduction,
                CloseOutOrders,
                ChangeSettings,
            ],
        ),
        ("administrator", &[CreateJobs, ManageJobs, CloseOutOrders]),
        ("operator", &[CreateJobs, ManageJobs, CloseOutOrders]),
        ("customer_service", &[CloseOutOrders]),
        ("designer", &[CreateJobs]),
    ];
    profiles
        .into_iter()
        .map(|(name, permissions)| {
            (
                name.to_string(),
                Profile {
                    permissions: permissions.iter().copied().collect(),
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

    /// Whether `user` may do what `permission` allows; unknown users may do nothing.
    pub fn may(&self, user: &str, permission: Permission) -> bool {
        self.permissions_of(user).contains(&permission)
    }

    /// Everything `user`'s profile allows.
    pub fn permissions_of(&self, user: &str) -> BTreeSet<Permission> {
        self.users
            .get(user)
            .and_then(|profile| self.profiles.get(profile))
            .map(|profile| profile.permissions.clone())
            .unwrap_or_default()
    }

    /// Refuses, naming the user, profile and permission, unless `user` may.
    pub fn check_permission(&self, user: &str, permission: Permission) -> Result<(), ModelError> {
        let profile = self.users.get(user).ok_or_else(|| {
            refuse(
                ErrorKind::Forbidden,
                "unknown_user",
                format!("there is no user {user:?}"),
            )
        })?;
        if !self.may(user, permission) {
            return Err(refuse(
                ErrorKind::Forbidden,
                "permission_denied",
                format!(
                    "user {user} has profile {profile}, which does not have the {} permission",
                    permission.describe()
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::model;
    use super::*;

    #[test]
    fn only_a_site_owner_sends_or_changes_settings() {
        let mut model = model();
        model.add_user("olga", "operator").unwrap();
        for permission in [Permission::SendToProduction, Permission::ChangeSettings] {
            assert!(model.may("owner", permission));
            assert!(!model.may("olga", permission));
            assert!(!model.may("designer", permission));
        }
    }

    #[test]
    fn operators_run_jobs_and_close_out_but_designers_only_create() {
        let mut model = model();
        model.add_user("olga", "operator").unwrap();
        assert!(model.may("olga", Permission::ManageJobs));
        assert!(model.may("olga", Permission::CloseOutOrders));
        assert!(model.may("designer", Permission::CreateJobs));
        assert!(!model.may("designer", Permission::ManageJobs));
        assert!(!model.may("designer", Permission::CloseOutOrders));
    }

    #[test]
    fn a_refusal_names_the_profile_and_the_permission() {
        let model = model();
        let err = model
            .check_permission("designer", Permission::ManageJobs)
            .unwrap_err();
        assert_eq!(err.code, "permission_denied");
        assert!(
            err.message.contains("profile designer") && err.message.contains("manage-jobs"),
            "{}",
            err.message
        );
        let err = model
            .check_permission("nobody", Permission::CreateJobs)
            .unwrap_err();
        assert_eq!(err.code, "unknown_user");
    }

    #[test]
    fn an_unknown_profile_is_refused_with_the_list() {
        let err = model().add_user("x", "boss").unwrap_err();
        assert!(err.message.contains("site_owner"), "{}", err.message);
    }
}
