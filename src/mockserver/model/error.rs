//! Why the job side refuses an action: a kind the HTTP edge maps to a status code, a
//! stable code for scripts and a message for a person.

/// What kind of refusal an error is, so the HTTP edge can pick a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Forbidden,
    Conflict,
    Invalid,
    /// A step the server depends on did not answer in time.
    Unavailable,
}

/// A refused action: a kind, a stable code and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub message: String,
    /// The jobs a refusal is about, for a script or a page to show beside the message
    /// (the jobs of an order not ready for closeout).
    pub jobs: Vec<String>,
}

pub(super) fn refuse(
    kind: ErrorKind,
    code: &'static str,
    message: impl Into<String>,
) -> ModelError {
    ModelError {
        kind,
        code,
        message: message.into(),
        jobs: Vec::new(),
    }
}

/// The refusal for a job id the server does not know.
pub fn unknown_job(id: &str) -> ModelError {
    refuse(
        ErrorKind::NotFound,
        "unknown_job",
        format!("there is no job {id}"),
    )
}

/// The refusal for an order number the server does not know.
pub fn unknown_order(number: &str) -> ModelError {
    refuse(
        ErrorKind::NotFound,
        "unknown_order",
        format!("there is no order {number}"),
    )
}
