//! The bundled job side: a small in-memory server that speaks the agent protocol and
//! lets a person (or a test) create, approve and send jobs, so tbot can be tried and
//! tested on one machine.

mod agent_api;
mod api_error;
pub mod auth;
mod clock;
mod documents;
pub mod faults;
mod file_spec;
mod file_store;
pub mod model;
mod operator_api;
mod request_log;
mod settings;
mod store_api;
mod tls;
mod web;
mod work_store;

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
use api_error::ApiError;
use model::Model;
use tls::TlsListener;
use work_store::WorkStore;

/// Everything the request handlers share.
pub struct AppState {
    model: Mutex<Model>,
    pub files: FileStore,
    pub clock: Clock,
    /// Agent token to the agent's name on this server.
    agent_tokens: HashMap<String, String>,
    /// The token stores send their orders with; none takes no store orders.
    store_token: Option<crate::config::Secret>,
    /// Woken whenever deliveries may have become claimable, to answer long polls.
    claimable: Notify,
    pub faults: FaultState,
    pub requests: RequestLog,
    /// Operators' passwords, API tokens and sessions.
    pub accounts: auth::Accounts,
    /// Whether the server speaks HTTPS, so its cookies are marked `Secure`.
    pub https: bool,
    /// Where the work is kept, when the server was started with a state folder.
    store: Option<WorkStore>,
}

impl AppState {
    /// Locks the model, to read it; every change goes through [`AppState::change`]. A
    /// handler that panicked while holding it leaves the state as it was at the panic;
    /// the mock carries on rather than failing every later request.
    pub fn model(&self) -> MutexGuard<'_, Model> {
        self.model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The one way the work changes: locks the model, applies `change`, saves what it
    /// changed (committed before the caller answers), and wakes the claims held open,
    /// since work may have come. A save that fails is an error answer: nothing is
    /// acknowledged that a restart would not have.
    pub fn change<T>(&self, change: impl FnOnce(&mut Model) -> T) -> Result<T, ApiError> {
        let answer = self.change_leases(change);
        self.claimable.notify_waiters();
        answer
    }

    /// Like [`AppState::change`], for a change that can make no work claimable (a
    /// claim, a renewal, a report): held claims are not woken, or two of them would
    /// wake each other for ever.
    pub fn change_leases<T>(&self, change: impl FnOnce(&mut Model) -> T) -> Result<T, ApiError> {
        let mut model = self.model();
        let answer = change(&mut model);
        if let Some(store) = &self.store {
            store.save(&model).map_err(|err| {
                tracing::error!("{err:#}");
                ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "not_saved",
                    format!("the change could not be saved, so it is not acknowledged: {err:#}"),
                )
            })?;
        }
        Ok(answer)
    }

    /// Wakes long-polling claims after a change of the clock, which may have made work.
    pub fn wake_claims(&self) {
        self.claimable.notify_waiters();
    }
}

/// The token of an `Authorization: Bearer` header, as agents and stores send theirs.
pub(crate) fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
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
        model.set_templates(settings.templates.clone());
        let (files, store) = match &settings.state_dir {
            Some(dir) => {
                let (store, saved) = WorkStore::open(dir)?;
                if let Some(saved) = saved {
                    model.restore_work(saved);
                }
                (FileStore::saved_in(&dir.join("files"))?, Some(store))
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
            store_token: settings.store_token.clone(),
            claimable: Notify::new(),
            faults: FaultState::new(settings.faults.clone()),
            requests: RequestLog::default(),
            accounts: auth::Accounts::new(&settings.users),
            https: acceptor.is_some(),
            store,
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

    /// An operator client acting as `user`, with an API token issued in this process:
    /// for the demo and tests, which start the server themselves.
    pub fn operator(&self, user: &str) -> anyhow::Result<crate::operator_client::OperatorClient> {
        let token = self.state.accounts.issue_api_token(user);
        Ok(crate::operator_client::OperatorClient::new(&self.url())?
            .with_token(crate::config::Secret::new(token)))
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
        .merge(store_api::routes())
        .merge(web::routes())
        .with_state(state)
}
