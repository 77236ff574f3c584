//! Plain data for the model's rule tests: a server with an owner and a designer, a
//! clock the test moves by hand, and an agent announcing queues.

use std::time::Duration;

use time::OffsetDateTime;

use std::collections::BTreeMap;

use super::{
    Address, FileLocation, LineItem, Model, NewFile, Payment, Settings, StoreOrder, Template,
};
use crate::protocol::{AnnouncedQueue, HeartbeatRequest, QueueKind, QueueStatus};

/// `seconds` after a fixed start: tests pass time in, never read a clock.
pub(super) fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000) + time::Duration::seconds(seconds)
}

/// A model with the default rules, a 60 s lease, and the users `owner` (site owner)
/// and `designer`.
pub(super) fn model() -> Model {
    let mut model = Model::new(Settings {
        lease: Duration::from_secs(60),
        ..Settings::default()
    });
    model.add_user("owner", "site_owner").unwrap();
    model.add_user("designer", "designer").unwrap();
    model
}

/// The agent of token name `agent` announces `queues`, ready, at `now`.
pub(super) fn announce(model: &mut Model, agent: &str, queues: &[&str], now: OffsetDateTime) {
    announce_as(model, agent, &format!("{agent}-configured"), queues, now);
}

/// Like [`announce`], by an agent configured with the name `configured`.
pub(super) fn announce_as(
    model: &mut Model,
    agent: &str,
    configured: &str,
    queues: &[&str],
    now: OffsetDateTime,
) {
    let request = HeartbeatRequest {
        agent: configured.to_string(),
        version: "test".into(),
        queues: queues
            .iter()
            .map(|name| AnnouncedQueue {
                name: name.to_string(),
                kind: QueueKind::Printer,
                status: QueueStatus::Ready,
                detail: None,
            })
            .collect(),
    };
    model.heartbeat(agent, &request, now);
}

/// A small production file stored on the server.
pub(super) fn file() -> NewFile {
    NewFile {
        name: "cards.pdf".into(),
        size: 3,
        sha256: "00".repeat(32),
        location: FileLocation::Stored,
        role: crate::protocol::FileRole::Content,
    }
}

/// An approved job with one file, preselected for `queues`; its id.
pub(super) fn approved_job(model: &mut Model, queues: &[&str], now: OffsetDateTime) -> String {
    let file = file();
    let queues = queues.iter().map(|q| q.to_string()).collect();
    let id = model
        .create_job("Cards", Some("MC-1"), queues, vec![file])
        .unwrap()
        .id
        .clone();
    model.approve(&id, now).unwrap();
    id
}

/// A ship-to address on `street`.
pub(super) fn address(street: &str) -> Address {
    Address {
        name: "J. Smith".into(),
        street: street.into(),
        city: "Springfield".into(),
        postal_code: "12345".into(),
        country: "US".into(),
    }
}

/// Store order `id` paid by credit card, one line item per product, all shipping to
/// one address.
pub(super) fn store_order(id: &str, products: &[&str]) -> StoreOrder {
    StoreOrder {
        store_order_id: id.into(),
        customer: "Smith & Co".into(),
        payment: Payment::CreditCard,
        line_items: products
            .iter()
            .map(|product| LineItem {
                product: product.to_string(),
                name: format!("{product} - Smith"),
                quantity: 500,
                price: "49.00".into(),
                shipping: "6.50".into(),
                ship_to: address("1 Main St"),
                ticket: None,
                job: String::new(),
            })
            .collect(),
        closeout: None,
        settlement_error: None,
    }
}

/// [`model`] with two production templates: business cards arrive approved for
/// indigo, brochures await approval for indigo and imposition.
pub(super) fn with_templates() -> Model {
    let mut model = model();
    model.set_templates(BTreeMap::from([
        (
            "business-cards".to_string(),
            Template {
                queues: vec!["indigo".into()],
                approved: true,
            },
        ),
        (
            "brochure".to_string(),
            Template {
                queues: vec!["indigo".into(), "imposition".into()],
                approved: false,
            },
        ),
    ]));
    model
}
