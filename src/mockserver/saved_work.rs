//! The mock server's work kept in a folder when asked (`--state-dir`): `work.json` holds
//! the orders, jobs, deliveries and queues, written again after every request that may
//! have changed them, and `files/` holds the stored files (see
//! [`FileStore::saved_in`](super::FileStore::saved_in)). A restarted server carries on
//! where it stopped; users and rules still come from its start-up settings.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::file_store::write_whole;
use super::model::Model;
use super::AppState;

/// The work file of a state folder.
pub struct SavedWork {
    path: PathBuf,
    /// Held while writing, so two requests ending together write one after the other.
    writing: Mutex<()>,
}

impl SavedWork {
    pub fn new(state_dir: &Path) -> SavedWork {
        SavedWork {
            path: state_dir.join("work.json"),
            writing: Mutex::new(()),
        }
    }

    /// The work saved by an earlier run, if there is any.
    pub fn load(&self) -> anyhow::Result<Option<Model>> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => {
                return Err(err).with_context(|| format!("cannot read {}", self.path.display()))
            }
        };
        serde_json::from_slice(&text)
            .map(Some)
            .with_context(|| format!("{} is not a saved mock server state", self.path.display()))
    }

    /// Writes the work as it is now, whole. A failure is logged: the server carries on
    /// in memory, and only a restart would miss the change.
    fn save(&self, model: &Mutex<Model>) {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let work = {
            let model = model.lock().unwrap_or_else(|p| p.into_inner());
            serde_json::to_vec(&*model)
        };
        let written = work
            .map_err(std::io::Error::other)
            .and_then(|work| write_whole(&self.path, &work));
        if let Err(err) = written {
            tracing::error!(
                "cannot save the mock server's state to {}: {err}",
                self.path.display()
            );
        }
    }
}

/// Middleware: after a request that may have changed the work, saves it.
pub async fn save_after_change(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let may_change = !matches!(*request.method(), Method::GET | Method::HEAD);
    let response = next.run(request).await;
    if let (true, Some(saved)) = (may_change, &state.saved_work) {
        saved.save(&state.model);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_work_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("work.json"), "{\"jobs\": [").unwrap();
        let err = SavedWork::new(dir.path()).load().unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("work.json is not a saved mock server state"),
            "{message}"
        );
    }

    #[test]
    fn every_delivery_state_reads_back() {
        use super::super::model::{Delivery, DeliveryState};
        let at = time::OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
        let agent = || "floor-1".to_string();
        for state in [
            DeliveryState::Pending { not_before: None },
            DeliveryState::Pending {
                not_before: Some(at),
            },
            DeliveryState::Leased {
                agent: agent(),
                expires_at: at,
            },
            DeliveryState::Completed {
                agent: agent(),
                files: vec![],
            },
            DeliveryState::Failed {
                agent: agent(),
                reason: "hotfolder missing".into(),
            },
        ] {
            let delivery = Delivery {
                id: "D-1".into(),
                job: "J-1001".into(),
                queue: "indigo".into(),
                send_count: 1,
                state: state.clone(),
                leases: 1,
                last_failure: None,
                events: vec![],
            };
            let saved = serde_json::to_string(&delivery).unwrap();
            let read: Delivery = serde_json::from_str(&saved).unwrap();
            assert_eq!(read.state, state, "{saved}");
        }
    }

    #[test]
    fn no_work_file_is_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        assert!(SavedWork::new(dir.path()).load().unwrap().is_none());
    }
}
