//! The buttons on a job: one type for the operator API, the web page and their
//! permission, so both offer and refuse the same things.

use std::str::FromStr;

use time::OffsetDateTime;

use super::error::{refuse, ErrorKind, ModelError};
use super::jobs::JobState;
use super::people::Permission;
use super::Model;

/// What a person can do to one job, beside sending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    RequestApproval,
    Approve,
    Hold,
    Archive,
    Complete,
    Retain,
}

impl JobAction {
    pub const ALL: [JobAction; 6] = [
        JobAction::RequestApproval,
        JobAction::Approve,
        JobAction::Hold,
        JobAction::Archive,
        JobAction::Complete,
        JobAction::Retain,
    ];

    /// The action's name in URLs and forms.
    pub fn name(self) -> &'static str {
        match self {
            JobAction::RequestApproval => "request-approval",
            JobAction::Approve => "approve",
            JobAction::Hold => "hold",
            JobAction::Archive => "archive",
            JobAction::Complete => "complete",
            JobAction::Retain => "retain",
        }
    }

    /// The button's label.
    pub fn label(self) -> &'static str {
        match self {
            JobAction::RequestApproval => "Request approval",
            JobAction::Approve => "Approve",
            JobAction::Hold => "Hold",
            JobAction::Archive => "Archive",
            JobAction::Complete => "Complete",
            JobAction::Retain => "Retain",
        }
    }

    /// Whether a job's tile offers it in `state`. Only what a person sees: the rules
    /// that refuse it are the model's own.
    pub fn offered_in(self, state: JobState) -> bool {
        use JobState::*;
        match self {
            JobAction::RequestApproval => state == InProgress,
            JobAction::Approve => matches!(state, InProgress | AwaitingApproval | OnHold),
            JobAction::Hold => matches!(state, InProgress | AwaitingApproval | Approved),
            JobAction::Archive => !matches!(state, Archived | SendingToProduction),
            JobAction::Complete | JobAction::Retain => state == WaitingForOrderCloseout,
        }
    }

    /// What a user's profile must allow to do it.
    pub fn permission(self) -> Permission {
        match self {
            JobAction::RequestApproval => Permission::CreateJobs,
            _ => Permission::ManageJobs,
        }
    }
}

impl FromStr for JobAction {
    type Err = ModelError;

    fn from_str(name: &str) -> Result<JobAction, ModelError> {
        JobAction::ALL
            .into_iter()
            .find(|action| action.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = JobAction::ALL.iter().map(|a| a.name()).collect();
                refuse(
                    ErrorKind::NotFound,
                    "unknown_action",
                    format!("jobs have no action {name:?} ({})", names.join(", ")),
                )
            })
    }
}

impl Model {
    /// Does `action` to job `job_id` as `user`, when their profile allows it.
    pub fn act_on_job(
        &mut self,
        user: &str,
        job_id: &str,
        action: JobAction,
        now: OffsetDateTime,
    ) -> Result<(), ModelError> {
        self.check_permission(user, action.permission())?;
        match action {
            JobAction::RequestApproval => self.request_approval(job_id),
            JobAction::Approve => self.approve(job_id, now),
            JobAction::Hold => self.hold(job_id),
            JobAction::Archive => self.archive(job_id),
            JobAction::Complete => self.finish_store_job(job_id, false),
            JobAction::Retain => self.finish_store_job(job_id, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{at, model};
    use super::*;

    #[test]
    fn every_action_is_found_by_its_name() {
        for action in JobAction::ALL {
            assert_eq!(action.name().parse::<JobAction>().unwrap(), action);
        }
        let err = "print".parse::<JobAction>().unwrap_err();
        assert_eq!(err.code, "unknown_action");
        assert!(err.message.contains("approve"), "{}", err.message);
    }

    #[test]
    fn a_designer_may_ask_for_approval_but_not_approve() {
        let mut model = model();
        let job = model
            .create_job("flyer", None, vec![], vec![])
            .unwrap()
            .id
            .clone();
        model
            .act_on_job("designer", &job, JobAction::RequestApproval, at(0))
            .unwrap();
        let err = model
            .act_on_job("designer", &job, JobAction::Approve, at(1))
            .unwrap_err();
        assert_eq!(err.code, "permission_denied");
        assert_eq!(model.jobs[&job].state, JobState::AwaitingApproval);
        model
            .act_on_job("owner", &job, JobAction::Approve, at(2))
            .unwrap();
        assert_eq!(model.jobs[&job].state, JobState::Approved);
    }
}
