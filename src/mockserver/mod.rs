//! The bundled job side: a small in-memory server that speaks the agent protocol and
//! lets a person (or a test) create, approve and send jobs, so tbot can be tried and
//! tested on one machine.

mod agent_api;
mod api_error;
mod clock;
pub mod faults;
mod file_store;
pub mod model;
mod operator_api;
mod request_log;
mod saved_work;
mod settings;
mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use axum::serve::ListenerExt;
use axum::{middleware, Router};
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub use clock::Clock;
pub use faults::{FaultState, Faults};
pub use file_store::{FileStore, StoredFile};
pub use request_log::{RequestLog, RequestRecord};
pub use settings::{AgentToken, MockSettings, UserEntry};
pub use tls::ServerTls;

use crate::shutdown::Shutdown;
use model::Model;
use saved_work::SavedWork;
use tls::TlsListener;

/// Everything the request handlers share.
pub struct AppState {
    model: Mutex<Model>,
    pub files: FileStore,
    pub clock: Clock,
    /// Agent token to the agent's name on this server.
    agent_tokens: HashMap<String, String>,
    /// Woken whenever deliveries may have become claimable, to answer long polls.
    claimable: Notify,
    pub faults: FaultState,
    pub requests: RequestLog,
    /// Where the work is kept, when the server was started with a state folder.
    saved_work: Option<SavedWork>,
}

impl AppState {
    /// Locks the model. A handler that panicked while holding it leaves the state as it
    /// was at the panic; the mock carries on rather than failing every later request.
    pub fn model(&self) -> MutexGuard<'_, Model> {
        self.model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes long-polling claims after a change that may have made work.
    pub fn wake_claims(&self) {
        self.claimable.notify_waiters();
    }
}

/// A mock server running on a tokio task.
pub struct MockServer {
    pub addr: SocketAddr,
    /// Whether it serves HTTPS.
    tls: bool,
    pub state: Arc<AppState>,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

impl MockServer {
    /// Binds `listen` and serves until [`MockServer::stop`].
    pub async fn start(settings: MockSettings, listen: SocketAddr) -> anyhow::Result<MockServer> {
        let acceptor = settings.tls.as_ref().map(ServerTls::acceptor).transpose()?;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let mut model = Model::new(settings.model.clone());
        for user in &settings.users {
            model
                .add_user(&user.name, &user.profile)
                .map_err(|err| anyhow::anyhow!(err.message))?;
        }
        let (files, saved_work) = match &settings.state_dir {
            Some(dir) => {
                let saved_work = SavedWork::new(dir);
                if let Some(saved) = saved_work.load()? {
                    model.restore_work(saved);
                }
                (FileStore::saved_in(&dir.join("files"))?, Some(saved_work))
            }
            None => (FileStore::default(), None),
        };
        let state = Arc::new(AppState {
            model: Mutex::new(model),
            files,
            clock: Clock::default(),
            agent_tokens: settings
                .agents
                .iter()
                .map(|agent| (agent.token.expose().to_string(), agent.name.clone()))
                .collect(),
            claimable: Notify::new(),
            faults: FaultState::new(settings.faults.clone()),
            requests: RequestLog::default(),
            saved_work,
        });
        let app = router(state.clone());
        let shutdown = Shutdown::new();
        let stopped = shutdown.clone();
        let tls = acceptor.is_some();
        let task = tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let stopped = async move { stopped.wait().await };
            let served = match acceptor {
                // Tapped, so that the client's address reaches the request log.
                Some(acceptor) => {
                    let listener = TlsListener::new(listener, addr, acceptor).tap_io(|_| {});
                    axum::serve(listener, app)
                        .with_graceful_shutdown(stopped)
                        .await
                }
                None => {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(stopped)
                        .await
                }
            };
            if let Err(err) = served {
                tracing::error!("mock server stopped: {err}");
            }
        });
        Ok(MockServer {
            addr,
            tls,
            state,
            shutdown,
            task,
        })
    }

    /// The server's base URL, such as `http://127.0.0.1:8470`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops accepting requests and waits for the server task to end.
    pub async fn stop(self) {
        self.shutdown.trigger();
        let _ = self.task.await;
    }
}

fn router(state: Arc<AppState>) -> Router {
    let agent = agent_api::routes()
        .layer(middleware::from_fn_with_state(
            state.clone(),
            faults::refuse_requests,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_log::record,
        ));
    Router::new()
        .merge(agent)
        .merge(operator_api::routes())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            saved_work::save_after_change,
        ))
        .with_state(state)
}
