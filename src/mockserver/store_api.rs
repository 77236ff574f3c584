//! The store connection: `POST /api/v1/store/orders`, as a web-to-print store sends
//! its orders, authenticated with the store token the server was started with
//! (`--store-token`). Sending the same store order twice creates it once.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api_error::{ApiError, ApiJson};
use super::file_spec::{read_file_specs, FileSpec};
use super::model::{Address, LineItem, Payment, StoreOrder};
use super::{bearer_token, AppState};

/// Largest store order body: line items carry their files inline.
const MAX_ORDER_BODY: usize = 256 * 1024 * 1024;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/store/orders", post(receive_order))
        .layer(DefaultBodyLimit::max(MAX_ORDER_BODY))
}

/// A store order as the store sends it; fields beyond these are ignored.
#[derive(Deserialize)]
struct OrderRequest {
    store_order_id: String,
    order_number: String,
    customer: String,
    payment: Payment,
    line_items: Vec<LineItemRequest>,
}

#[derive(Deserialize)]
struct LineItemRequest {
    product: String,
    name: String,
    quantity: u32,
    price: String,
    shipping: String,
    ship_to: Address,
    #[serde(default)]
    files: Vec<FileSpec>,
    ticket: Option<crate::protocol::JobTicket>,
}

/// A request that carries the store token. Checked from the headers alone, before a
/// byte of the (possibly large) body is read; a server started without a token takes
/// no store orders.
struct FromStore;

impl FromRequestParts<Arc<AppState>> for FromStore {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let Some(expected) = &state.store_token else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no_store",
                "this server takes no store orders: start it with --store-token",
            ));
        };
        match bearer_token(&parts.headers) {
            Some(token) if !token.is_empty() && token == expected.expose() => Ok(FromStore),
            _ => Err(ApiError::unauthorized()),
        }
    }
}

async fn receive_order(
    State(state): State<Arc<AppState>>,
    _store: FromStore,
    ApiJson(request): ApiJson<OrderRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut line_items = Vec::new();
    let mut files = Vec::new();
    let mut contents = Vec::new();
    for item in request.line_items {
        let (new_files, bytes) = read_file_specs(item.files)?;
        files.push(new_files);
        contents.push(bytes);
        line_items.push(LineItem {
            product: item.product,
            name: item.name,
            quantity: item.quantity,
            price: item.price,
            shipping: item.shipping,
            ship_to: item.ship_to,
            ticket: item.ticket,
            job: String::new(),
        });
    }
    let order = StoreOrder {
        store_order_id: request.store_order_id,
        customer: request.customer,
        payment: request.payment,
        line_items,
        closeout: None,
        settlement_error: None,
    };
    let now = state.clock.now();
    let received = state.change(|model| {
        let received = model.receive_store_order(&request.order_number, order, files, now)?;
        if received.created {
            // The bytes are stored before the order is saved, so a saved job has them.
            for (job, bytes) in received.jobs.iter().zip(contents) {
                for (file, stored) in model.jobs()[job].files.iter().zip(bytes) {
                    if let Some(stored) = stored {
                        state.files.put(&file.id, stored);
                    }
                }
            }
        }
        Ok::<_, ApiError>(received)
    })??;
    let status = if received.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({
            "order_number": received.order_number,
            "jobs": received.jobs,
            "created": received.created,
        })),
    ))
}
