//! What a person does on the job side, as an HTTP API under `/api/v1/operator`:
//! create and approve jobs, choose queues, send to production, turn AutoSend on.
//! `tbot mock ...` drives it from the shell; `docs/api.md` describes it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api_error::{invalid, ApiError, ApiJson};
use super::auth::{Accounts, Operator};
use super::documents;
use super::faults::Faults;
use super::file_spec::{read_file_specs, FileSpec};
use super::file_store::StoredFile;
use super::model::{
    check_order_number, unknown_job, unknown_order, Closeout, CloseoutRequest, FileLocation,
    JobAction, NewFile, Permission, Settings, SettingsChange,
};
use super::AppState;
use crate::operator_views::{
    ClockView, DeliveryList, JobGroups, JobList, JobView, LoggedIn, OrderDetails, QueueList,
    QueueView, RequestList, SendAnswer,
};
use crate::protocol::{FileRole, JobTicket};

/// Largest file a person can upload to the in-memory mock server.
const MAX_UPLOAD: usize = 4 * 1024 * 1024 * 1024;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/operator/tokens", post(log_in))
        .route("/api/v1/operator/jobs", get(list_jobs).post(create_job))
        .route("/api/v1/operator/jobs/{id}", get(show_job))
        .route(
            "/api/v1/operator/jobs/{id}/files/{name}",
            put(upload_file).layer(DefaultBodyLimit::max(MAX_UPLOAD)),
        )
        .route("/api/v1/operator/jobs/{id}/queues", put(set_job_queues))
        .route("/api/v1/operator/jobs/{id}/ticket", put(set_job_ticket))
        .route("/api/v1/operator/jobs/{id}/{action}", post(job_action))
        .route(
            "/api/v1/operator/orders",
            get(list_orders).post(upsert_order),
        )
        .route(
            "/api/v1/operator/orders/{number}/queues",
            put(set_order_queues),
        )
        .route("/api/v1/operator/orders/{number}/send", post(send_order))
        .route("/api/v1/operator/orders/{number}", get(show_order))
        .route("/api/v1/operator/orders/{number}/closeout", post(close_out))
        .route(
            "/api/v1/operator/orders/{number}/{document}",
            get(show_document),
        )
        .route("/api/v1/operator/send", post(send))
        .route("/api/v1/operator/queues", get(list_queues))
        .route("/api/v1/operator/agents", get(list_agents))
        .route("/api/v1/operator/deliveries", get(list_deliveries))
        .route(
            "/api/v1/operator/settings",
            get(show_settings).put(change_settings),
        )
        .route("/api/v1/operator/faults", get(show_faults).put(set_faults))
        .route("/api/v1/operator/requests", get(list_requests))
        .route("/api/v1/operator/clock", get(show_clock))
        .route("/api/v1/operator/clock/advance", post(advance_clock))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogIn {
    name: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateJob {
    name: String,
    order_number: Option<String>,
    #[serde(default)]
    queues: Vec<String>,
    #[serde(default)]
    files: Vec<FileSpec>,
    #[serde(flatten)]
    details: JobDetails,
}

/// Who ordered a job and what its device needs (protocol 1.1).
#[derive(Deserialize, Default)]
struct JobDetails {
    customer: Option<String>,
    ticket: Option<JobTicket>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueChoice {
    queues: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpsertOrder {
    number: String,
    queues: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    jobs: Vec<String>,
    /// Absent: each job's preselected queues.
    queues: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    #[serde(with = "humantime_serde")]
    by: Duration,
}

#[derive(Deserialize)]
struct JobListQuery {
    group: Option<String>,
}

#[derive(Deserialize)]
struct QueueListQuery {
    #[serde(default)]
    all: bool,
}

/// Logs a user in with their password and answers an API token that acts as them
/// (what `tbot mock login` prints).
async fn log_in(
    State(state): State<Arc<AppState>>,
    ApiJson(login): ApiJson<LogIn>,
) -> Result<(StatusCode, Json<LoggedIn>), ApiError> {
    if !Accounts::log_in(&state, &login.name, &login.password).await {
        tracing::warn!(
            "a log-in as {:?} was refused: wrong name or password",
            login.name
        );
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong_login",
            "wrong name or password",
        ));
    }
    let profile = state.model().profile_of(&login.name).map(String::from);
    let token = state.accounts.issue_api_token(&login.name);
    tracing::info!("{} logged in for an API token", login.name);
    Ok((
        StatusCode::CREATED,
        Json(LoggedIn {
            token,
            user: login.name,
            profile,
        }),
    ))
}

/// Refuses unless `user`'s profile has `permission`.
fn require(state: &AppState, user: &str, permission: Permission) -> Result<(), ApiError> {
    Ok(state.model().check_permission(user, permission)?)
}

async fn list_jobs(
    State(state): State<Arc<AppState>>,
    _: Operator,
    Query(query): Query<JobListQuery>,
) -> Result<Response, ApiError> {
    let jobs = JobView::all(&state.model());
    match query.group.as_deref() {
        None => Ok(Json(JobList { jobs }).into_response()),
        Some("order_number") => Ok(Json(JobGroups::of(jobs)).into_response()),
        Some(other) => Err(invalid(format!(
            "jobs can be grouped by order_number, not {other:?}"
        ))),
    }
}

async fn show_job(
    State(state): State<Arc<AppState>>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let model = state.model();
    let job = model
        .jobs()
        .get(&id)
        .ok_or_else(|| ApiError::from(unknown_job(&id)))?;
    Ok(Json(JobView::of(&model, job)))
}

async fn create_job(
    State(state): State<Arc<AppState>>,
    Operator(user): Operator,
    ApiJson(request): ApiJson<CreateJob>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    require(&state, &user, Permission::CreateJobs)?;
    let (new_files, contents) = read_file_specs(request.files)?;
    let view = state.change(|model| {
        let job = model
            .create_job(
                &request.name,
                request.order_number.as_deref(),
                request.queues,
                new_files,
            )?
            .id
            .clone();
        let details = request.details;
        model.set_job_ticket(&job, details.customer, details.ticket)?;
        let job = model.jobs()[&job].clone();
        // The bytes are stored before the job is saved, so a saved job has its files.
        for (file, content) in job.files.iter().zip(contents) {
            if let Some(stored) = content {
                state.files.put(&file.id, stored);
            }
        }
        Ok::<_, ApiError>(JobView::of(model, &job))
    })??;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn set_job_ticket(
    State(state): State<Arc<AppState>>,
    Operator(user): Operator,
    Path(id): Path<String>,
    ApiJson(details): ApiJson<JobDetails>,
) -> Result<Json<JobView>, ApiError> {
    require(&state, &user, Permission::CreateJobs)?;
    let view = state.change(|model| {
        model.set_job_ticket(&id, details.customer, details.ticket)?;
        let job = &model.jobs()[&id];
        Ok::<_, ApiError>(JobView::of(model, job))
    })??;
    Ok(Json(view))
}

/// Uploads one file's bytes to a job; size and SHA-256 are computed here.
async fn upload_file(
    State(state): State<Arc<AppState>>,
    Operator(user): Operator,
    Path((id, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require(&state, &user, Permission::CreateJobs)?;
    let stored = StoredFile::new(body);
    let file = state.change(|model| {
        let file = model.add_file(
            &id,
            NewFile {
                name,
                size: stored.bytes.len() as i64,
                sha256: stored.sha256.clone(),
                location: FileLocation::Stored,
                role: FileRole::Content,
            },
        )?;
        state.files.put(&file.id, stored);
        Ok::<_, ApiError>(file)
    })??;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(file).unwrap_or_default()),
    ))
}

async fn job_action(
    State(state): State<Arc<AppState>>,
    Operator(user): Operator,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<JobView>, ApiError> {
    let action: JobAction = action.parse()?;
    let now = state.clock.now();
    state.change(|model| {
        model.act_on_job(&user, &id, action, now)?;
        Ok(Json(JobView::of(model, &model.jobs()[&id])))
    })?
}

async fn set_job_queues(
    State(state): State<Arc<AppState>>,
    Operator(user): Operator,
    Path(id): Path<String>,
    ApiJson(choice): ApiJson<QueueChoice>,
) -> Result<Json<JobView>, ApiError> {
    require(&state, &user, Permission::CreateJobs)?;
    let now = state.clock.now();
    state.change(|model| {
        model.set_job_queues(&id, choice.queues, now)?;
        Ok(Json(JobView::of(model, &model.jobs()[&id])))
    })?
}

/// An order's details: its line items, addresses, amounts and payment when it came
/// from a store, each job's state, and its closeout.
async fn show_order(
    State(state): State<Arc<AppState>>,
    _: Operator,
    Path(number): Path<String>,
) -> Result<Json<OrderDetails>, ApiError> {
    let model = state.model();
    let order = model
        .orders()
        .get(&number)
        .ok_or_else(|| ApiError::from(unknown_order(&number)))?;
    Ok(Json(OrderDetails::of(&model, order)))
}

/// Closes out a store order as the user acting.
async fn close_out(
    State(state): State<Arc<AppState>>,
    Operator(user): Operator,
    Path(number): Path<String>,
    ApiJson(request): ApiJson<CloseoutRequest>,
) -> Result<Json<Closeout>, ApiError> {
    let now = state.clock.now();
    let fault = state.faults.get().payment;
    let closeout =
        state.change(|model| model.close_out(&user, &number, &request, fault, now))??;
    Ok(Json(closeout))
}

/// The packing slip or the invoice of a closed-out order, as a page to print.
async fn show_document(
    State(state): State<Arc<AppState>>,
    _: Operator,
    Path((number, document)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let page = documents::of_order(&state.model(), &number, &document)?;
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response())
}

async fn list_orders(State(state): State<Arc<AppState>>, _: Operator) -> Json<Value> {
    Json(json!({ "orders": state.model().orders().values().collect::<Vec<_>>() }))
}

async fn upsert_order(
    State(state): State<Arc<AppState>>,
    Operator(user): Operator,
    ApiJson(request): ApiJson<UpsertOrder>,
) -> Result<Json<Value>, ApiError> {
    require(&state, &user, Permission::CreateJobs)?;
    check_order_number(&request.number)?;
    let now = state.clock.now();
    state.change(|model| {
        match request.queues {
            Some(queues) => model.set_order_queues(&request.number, queues, now),
            None => {
                model.upsert_order(&request.number, None);
            }
        }
        Json(json!(model.orders()[&request.number]))
    })
}

async fn set_order_queues(
    State(state): State<Arc<AppState>>,
    Operator(user): Operator,
    Path(number): Path<String>,
    ApiJson(choice): ApiJson<QueueChoice>,
) -> Result<Json<Value>, ApiError> {
    require(&state, &user, Permission::CreateJobs)?;
    check_order_number(&number)?;
    let now = state.clock.now();
    state.change(|model| {
        model.set_order_queues(&number, choice.queues, now);
        Json(json!(model.orders()[&number]))
    })
}

async fn send_order(
    State(state): State<Arc<AppState>>,
    _: Operator,
    Path(number): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.model().send_order(&number)?;
    Ok(Json(json!({})))
}

/// Send to Production (or Send Again) for one or many jobs, as the user acting.
/// Answers per job.
async fn send(
    State(state): State<Arc<AppState>>,
    Operator(user): Operator,
    ApiJson(request): ApiJson<SendRequest>,
) -> Result<Json<SendAnswer>, ApiError> {
    let now = state.clock.now();
    let results = state
        .change(|model| model.send(&user, &request.jobs, request.queues.as_deref(), now))??;
    Ok(Json(SendAnswer { results }))
}

async fn list_queues(
    State(state): State<Arc<AppState>>,
    _: Operator,
    Query(query): Query<QueueListQuery>,
) -> Json<QueueList> {
    let now = state.clock.now();
    let model = state.model();
    let queues = model
        .queues()
        .values()
        .map(|queue| QueueView {
            queue: queue.clone(),
            connected: model.is_connected(queue, now),
        })
        .filter(|view| query.all || view.connected)
        .collect();
    Json(QueueList { queues })
}

/// The agents heard from: the name each is configured with, its token's name here,
/// its version and last heartbeat.
async fn list_agents(State(state): State<Arc<AppState>>, _: Operator) -> Json<Value> {
    Json(json!({ "agents": state.model().agents() }))
}

async fn list_deliveries(State(state): State<Arc<AppState>>, _: Operator) -> Json<DeliveryList> {
    Json(DeliveryList {
        deliveries: state.model().deliveries().values().cloned().collect(),
    })
}

async fn show_settings(State(state): State<Arc<AppState>>, _: Operator) -> Json<Settings> {
    Json(state.model().settings().clone())
}

async fn change_settings(
    State(state): State<Arc<AppState>>,
    Operator(user): Operator,
    ApiJson(change): ApiJson<SettingsChange>,
) -> Result<Json<Settings>, ApiError> {
    require(&state, &user, Permission::ChangeSettings)?;
    let now = state.clock.now();
    state.change(|model| {
        model.change_settings(&change, now);
        Json(model.settings().clone())
    })
}

async fn show_faults(State(state): State<Arc<AppState>>, _: Operator) -> Json<Faults> {
    Json(state.faults.get())
}

/// Replaces the faults in force (an empty object clears them all).
async fn set_faults(
    State(state): State<Arc<AppState>>,
    Operator(user): Operator,
    ApiJson(faults): ApiJson<Faults>,
) -> Result<Json<Faults>, ApiError> {
    require(&state, &user, Permission::ChangeSettings)?;
    for (name, rate) in [
        ("error_rate", faults.error_rate),
        ("truncate_rate", faults.truncate_rate),
        ("corrupt_rate", faults.corrupt_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return Err(invalid(format!(
                "{name} must be between 0 and 1, not {rate}"
            )));
        }
    }
    state.faults.set(faults);
    Ok(Json(state.faults.get()))
}

async fn list_requests(State(state): State<Arc<AppState>>, _: Operator) -> Json<RequestList> {
    Json(RequestList {
        requests: state.requests.all(),
        held_claims: state.requests.held_claims(),
    })
}

async fn show_clock(State(state): State<Arc<AppState>>, _: Operator) -> Json<ClockView> {
    clock_view(&state)
}

fn clock_view(state: &AppState) -> Json<ClockView> {
    Json(ClockView {
        now: state.clock.now(),
    })
}

async fn advance_clock(
    State(state): State<Arc<AppState>>,
    Operator(user): Operator,
    ApiJson(advance): ApiJson<Advance>,
) -> Result<Json<ClockView>, ApiError> {
    require(&state, &user, Permission::ChangeSettings)?;
    state.clock.advance(advance.by);
    state.wake_claims();
    Ok(clock_view(&state))
}
