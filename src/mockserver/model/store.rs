//! Orders that arrive from an online store (seed 002): each line item becomes a job of
//! the order, its production template deciding the queues preselected for it and
//! whether it arrives approved. Sending the same store order again creates nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::closeout::Closeout;
use super::error::{refuse, ErrorKind, ModelError};
use super::jobs::{check_order_number, NewFile};
use super::Model;

/// How the customer paid; only a credit card is settled at closeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payment {
    CreditCard,
    Invoice,
    PurchaseOrder,
}

impl Payment {
    /// How the order is paid, in words.
    pub fn label(self) -> &'static str {
        match self {
            Payment::CreditCard => "credit card",
            Payment::Invoice => "invoice",
            Payment::PurchaseOrder => "purchase order",
        }
    }
}

/// Where a line item ships.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub name: String,
    pub street: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

/// One product of a store order, as the store sent it; `job` is the job made of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LineItem {
    pub product: String,
    pub name: String,
    pub quantity: u32,
    /// Amounts as the store wrote them ("49.00"): they are never recomputed here.
    pub price: String,
    pub shipping: String,
    pub ship_to: Address,
    /// What the device needs to produce it (protocol 1.1); its quantity is the line
    /// item's unless it says otherwise.
    #[serde(default)]
    pub ticket: Option<crate::protocol::JobTicket>,
    #[serde(default)]
    pub job: String,
}

/// A store's order, kept with the order it became.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreOrder {
    pub store_order_id: String,
    pub customer: String,
    pub payment: Payment,
    pub line_items: Vec<LineItem>,
    /// Its closeout, once done.
    #[serde(default)]
    pub closeout: Option<Closeout>,
    /// Why the last settlement failed, while the order stays open.
    #[serde(default)]
    pub settlement_error: Option<String>,
}

/// A production template: the queues a store product's jobs go to, and whether they
/// arrive approved or awaiting approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Template {
    pub queues: Vec<String>,
    pub approved: bool,
}

/// What became of a store order sent in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub order_number: String,
    pub jobs: Vec<String>,
    /// False when the store had sent this order before.
    pub created: bool,
}

impl Model {
    /// Takes an order from the store: one job per line item, with `files[i]` for line
    /// item `i`. The same `store_order_id` again answers with what it made the first
    /// time and makes nothing.
    pub fn receive_store_order(
        &mut self,
        order_number: &str,
        mut order: StoreOrder,
        files: Vec<Vec<NewFile>>,
        now: OffsetDateTime,
    ) -> Result<Received, ModelError> {
        if let Some(known) = self.orders.values().find(|known| {
            known.store.as_ref().map(|s| &s.store_order_id) == Some(&order.store_order_id)
        }) {
            return Ok(Received {
                order_number: known.number.clone(),
                jobs: known.jobs.clone(),
                created: false,
            });
        }
        let templates = self.check_store_order(order_number, &order)?;
        let customer = order.customer.clone();
        for ((item, files), template) in order.line_items.iter_mut().zip(files).zip(templates) {
            let job = self
                .create_job(&item.name, Some(order_number), template.queues, files)?
                .id
                .clone();
            let mut ticket = item.ticket.clone().unwrap_or_default();
            ticket.quantity = ticket.quantity.or(Some(u64::from(item.quantity)));
            self.set_job_ticket(&job, Some(customer.clone()), Some(ticket))?;
            if template.approved {
                self.approve(&job, now)?;
            } else {
                self.request_approval(&job)?;
            }
            item.job = job;
        }
        let entry = self.order_entry(order_number);
        entry.store = Some(order);
        Ok(Received {
            order_number: order_number.to_string(),
            jobs: entry.jobs.clone(),
            created: true,
        })
    }

    /// Refuses a store order that breaks a rule, before anything is made of it; the
    /// template of each line item.
    fn check_store_order(
        &self,
        order_number: &str,
        order: &StoreOrder,
    ) -> Result<Vec<Template>, ModelError> {
        let invalid = |code, message: String| Err(refuse(ErrorKind::Invalid, code, message));
        if order_number.trim().is_empty() || order.store_order_id.trim().is_empty() {
            return invalid(
                "invalid_order",
                "a store order needs an order_number and a store_order_id".into(),
            );
        }
        check_order_number(order_number)?;
        if self.orders.contains_key(order_number) {
            return Err(refuse(
                ErrorKind::Conflict,
                "order_exists",
                format!("order {order_number} exists already, made here or by another store order"),
            ));
        }
        if order.line_items.is_empty() {
            return invalid(
                "invalid_order",
                format!("store order {}: it has no line items", order.store_order_id),
            );
        }
        let mut templates = Vec::new();
        for (n, item) in order.line_items.iter().enumerate() {
            let at = format!("store order {}, line item {}", order.store_order_id, n + 1);
            let Some(template) = self.templates.get(&item.product) else {
                let known: Vec<&String> = self.templates.keys().collect();
                return invalid(
                    "unknown_product",
                    format!(
                        "{at}: there is no production template {:?} (templates: {known:?})",
                        item.product
                    ),
                );
            };
            if item.name.trim().is_empty() {
                return invalid("invalid_order", format!("{at}: the line item needs a name"));
            }
            if item.quantity == 0 {
                return invalid(
                    "invalid_order",
                    format!("{at}: the quantity must be at least 1"),
                );
            }
            for (field, amount) in [("price", &item.price), ("shipping", &item.shipping)] {
                if !is_amount(amount) {
                    return invalid(
                        "invalid_order",
                        format!("{at}: {field} {amount:?} is not an amount such as \"49.00\""),
                    );
                }
            }
            templates.push(template.clone());
        }
        Ok(templates)
    }

    /// Sets the production templates store orders are made with (at start, like users).
    pub fn set_templates(&mut self, templates: BTreeMap<String, Template>) {
        self.templates = templates;
    }
}

/// Most digits before the point: a print order never costs a billion.
const MAX_WHOLE_DIGITS: usize = 9;

/// An amount as stores write them: digits, and at most two after a point.
fn is_amount(text: &str) -> bool {
    let (whole, cents) = text.split_once('.').unwrap_or((text, ""));
    !whole.is_empty()
        && whole.len() <= MAX_WHOLE_DIGITS
        && whole.bytes().all(|b| b.is_ascii_digit())
        && cents.len() <= 2
        && cents.bytes().all(|b| b.is_ascii_digit())
        && !(text.contains('.') && cents.is_empty())
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{announce, at, file, store_order, with_templates};
    use super::super::JobState;
    use super::*;

    #[test]
    fn each_line_item_becomes_a_job_its_template_configures_and_a_repeat_makes_nothing() {
        let mut model = with_templates();
        let sent = store_order("MC-88412", &["business-cards", "brochure"]);
        let files = vec![Vec::new(), Vec::new()];
        let received = model
            .receive_store_order("MC-5521", sent.clone(), files.clone(), at(0))
            .unwrap();
        assert!(received.created);
        let [cards, brochure] = received.jobs.as_slice() else {
            panic!("{received:?}")
        };
        assert_eq!(model.jobs[cards].state, JobState::Approved);
        assert_eq!(model.jobs[cards].queues, ["indigo"]);
        assert_eq!(model.jobs[brochure].state, JobState::AwaitingApproval);
        assert_eq!(
            model.jobs[brochure].order_number.as_deref(),
            Some("MC-5521")
        );
        let again = model
            .receive_store_order("MC-5521", sent, files, at(1))
            .unwrap();
        assert_eq!((again.created, &again.jobs), (false, &received.jobs));
        assert_eq!(model.jobs.len(), 2);
    }

    #[test]
    fn an_order_that_breaks_a_rule_is_refused_whole_and_names_the_line_item() {
        let mut model = with_templates();
        let unknown = model
            .receive_store_order(
                "MC-1",
                store_order("S-1", &["brochure", "poster"]),
                vec![vec![], vec![]],
                at(0),
            )
            .unwrap_err();
        assert_eq!(unknown.code, "unknown_product");
        assert!(
            unknown.message.contains("line item 2"),
            "{}",
            unknown.message
        );
        assert!(model.jobs.is_empty() && model.orders.is_empty());
        let mut priced = store_order("S-2", &["brochure"]);
        priced.line_items[0].price = "49,00".into();
        let price = model
            .receive_store_order("MC-2", priced, vec![vec![]], at(0))
            .unwrap_err();
        assert!(
            price.message.contains("price \"49,00\""),
            "{}",
            price.message
        );
        let mut nameless = store_order("S-3", &["brochure", "business-cards"]);
        nameless.line_items[1].name = " ".into();
        let name = model
            .receive_store_order("MC-3", nameless, vec![vec![], vec![]], at(0))
            .unwrap_err();
        assert!(name.message.contains("line item 2"), "{}", name.message);
        assert!(model.jobs.is_empty() && model.orders.is_empty());
    }

    #[test]
    fn a_store_job_whose_deliveries_complete_waits_for_its_order_closeout() {
        let mut model = with_templates();
        announce(&mut model, "agent-1", &["indigo"], at(0));
        let received = model
            .receive_store_order(
                "MC-5521",
                store_order("S-1", &["business-cards"]),
                vec![vec![file()]],
                at(0),
            )
            .unwrap();
        let job = &received.jobs[0];
        let sent = model
            .send("owner", std::slice::from_ref(job), None, at(1))
            .unwrap();
        assert!(sent[0].ok, "{sent:?}");
        let claimed = model.claim("agent-1", &["indigo".to_string()], 1, at(2));
        let state = model.complete("agent-1", &claimed[0].id, Vec::new(), at(3));
        assert_eq!(state, Ok(JobState::WaitingForOrderCloseout));
    }

    #[test]
    fn amounts_are_digits_with_at_most_two_decimals() {
        for good in ["49", "49.00", "0.5", "1200.10"] {
            assert!(is_amount(good), "{good}");
        }
        for bad in ["", "49.", ".50", "49.001", "-1", "4 9", "1e3", "1000000000"] {
            assert!(!is_amount(bad), "{bad}");
        }
    }
}
