//! Closing out a store order (seed 002): a packing slip carrying the whole order's
//! shipping, an invoice with the line items as the store sent them, and, for an
//! order paid by credit card, the settlement, through a payment step the server
//! simulates (with its own faults). What cannot be done here (different ship-to
//! addresses, changed line item values or shipping, a second packing slip) is refused
//! with the advice to close out in the store. A closeout retried after a timeout never
//! settles twice and never makes a second packing slip or invoice.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::{refuse, unknown_order, ErrorKind, ModelError};
use super::jobs::JobState;
use super::people::Permission;
use super::store::{Address, Payment, StoreOrder};
use super::Model;

/// What the payment step does this time, as the faults set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentFault {
    /// The card is declined: nothing is charged.
    Declined,
    /// The card is charged, but the answer is lost on the way back.
    Timeout,
}

/// What a person asks for when closing out: `confirm` answers the warning that not
/// every job is ready; the rest can only be changed in the store, and is refused.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CloseoutRequest {
    pub confirm: bool,
    pub line_items: Option<serde_json::Value>,
    pub shipping: Option<serde_json::Value>,
    pub packing_slips: Option<u32>,
}

/// A closed-out order's documents and settlement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Closeout {
    pub packing_slip: PackingSlip,
    pub invoice: Invoice,
    /// The charge, for an order paid by credit card.
    pub settlement: Option<Charge>,
    #[serde(with = "time::serde::rfc3339")]
    pub closed_at: OffsetDateTime,
}

/// The order's one packing slip: where it ships, what, and the whole order's shipping.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackingSlip {
    pub ship_to: Address,
    pub items: Vec<SlipItem>,
    pub shipping: String,
}

/// One line of the packing slip: what ships, how many.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlipItem {
    pub name: String,
    pub quantity: u32,
}

/// The invoice: the line items as the store sent them, and the total.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invoice {
    pub customer: String,
    pub payment: Payment,
    pub lines: Vec<InvoiceLine>,
    pub total: String,
}

/// One line of the invoice, the values as the store sent them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvoiceLine {
    pub name: String,
    pub quantity: u32,
    pub price: String,
    pub shipping: String,
}

/// A charge the simulated payment step made, once per idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub id: String,
    pub idempotency_key: String,
    pub amount: String,
}

impl Model {
    /// Closes out store order `number` as `user`, the payment step behaving as `fault`
    /// says. Closing out an order already closed answers with its closeout.
    pub fn close_out(
        &mut self,
        user: &str,
        number: &str,
        request: &CloseoutRequest,
        fault: Option<PaymentFault>,
        now: OffsetDateTime,
    ) -> Result<Closeout, ModelError> {
        self.check_permission(user, Permission::CloseOutOrders)?;
        let order = self
            .orders
            .get(number)
            .ok_or_else(|| unknown_order(number))?;
        let store = self.store_order(number)?;
        refuse_store_changes(number, request)?;
        if let Some(done) = &store.closeout {
            return Ok(done.clone());
        }
        let ship_to = one_ship_to(number, store)?;
        let not_ready: Vec<String> = order
            .jobs
            .iter()
            .filter(|job| {
                self.jobs
                    .get(*job)
                    .is_none_or(|job| job.state != JobState::WaitingForOrderCloseout)
            })
            .cloned()
            .collect();
        if !not_ready.is_empty() && !request.confirm {
            return Err(ModelError {
                jobs: not_ready.clone(),
                ..refuse(
                ErrorKind::Conflict,
                "jobs_not_ready",
                format!(
                    "not every job of order {number} is ready for closeout: {}; close out anyway with \"confirm\": true",
                    not_ready.join(", ")
                ),
            )
            });
        }
        let closeout = documents(store, ship_to, now);
        let settlement = match store.payment {
            Payment::CreditCard => Some(self.settle(number, &closeout.invoice.total, fault)?),
            Payment::Invoice | Payment::PurchaseOrder => None,
        };
        let closeout = Closeout {
            settlement,
            ..closeout
        };
        if let Some(store) = self
            .orders
            .get_mut(number)
            .and_then(|order| order.store.as_mut())
        {
            store.closeout = Some(closeout.clone());
            store.settlement_error = None;
        }
        Ok(closeout)
    }

    /// What closing out order `number` would make, for a person to check first: its
    /// packing slip and invoice. Nothing is charged or kept.
    pub fn closeout_preview(
        &self,
        number: &str,
        now: OffsetDateTime,
    ) -> Result<Closeout, ModelError> {
        let store = self.store_order(number)?;
        let ship_to = one_ship_to(number, store)?;
        Ok(documents(store, ship_to, now))
    }

    /// What the store sent for order `number`; refused for an order made here.
    fn store_order(&self, number: &str) -> Result<&StoreOrder, ModelError> {
        let order = self
            .orders
            .get(number)
            .ok_or_else(|| unknown_order(number))?;
        order.store.as_ref().ok_or_else(|| {
            refuse(
                ErrorKind::Conflict,
                "not_a_store_order",
                format!("order {number} did not come from a store: there is nothing to close out"),
            )
        })
    }

    /// The payment step: one charge per order, however often it is asked (the order
    /// number is the idempotency key).
    fn settle(
        &mut self,
        number: &str,
        amount: &str,
        fault: Option<PaymentFault>,
    ) -> Result<Charge, ModelError> {
        let key = format!("closeout-{number}");
        // Charged before (the answer lost): that charge stands, whatever comes now.
        if let Some(charge) = self.charges.get(&key) {
            return Ok(charge.clone());
        }
        if fault == Some(PaymentFault::Declined) {
            let reason = "the card was declined";
            if let Some(store) = self.orders.get_mut(number).and_then(|o| o.store.as_mut()) {
                store.settlement_error = Some(reason.into());
            }
            return Err(refuse(
                ErrorKind::Conflict,
                "payment_declined",
                format!(
                    "order {number} stays open: {reason}; settle it in the store, or try again"
                ),
            ));
        }
        let next = self.charges.len() + 1;
        let charge = self
            .charges
            .entry(key.clone())
            .or_insert_with(|| Charge {
                id: format!("CH-{next}"),
                idempotency_key: key,
                amount: amount.to_string(),
            })
            .clone();
        if fault == Some(PaymentFault::Timeout) {
            return Err(refuse(
                ErrorKind::Unavailable,
                "payment_timeout",
                format!("order {number} stays open: the payment step did not answer in time; close it out again (it will not be charged twice)"),
            ));
        }
        Ok(charge)
    }

    /// Completes or retains a store job: only once its order is closed out.
    pub fn finish_store_job(&mut self, job_id: &str, retain: bool) -> Result<(), ModelError> {
        let job = self.job(job_id)?;
        let closed = job
            .order_number
            .as_ref()
            .and_then(|number| self.orders.get(number))
            .and_then(|order| order.store.as_ref())
            .map(|store| store.closeout.is_some());
        let verb = if retain { "retained" } else { "completed" };
        match closed {
            None => {
                return Err(refuse(
                    ErrorKind::Conflict,
                    "not_a_store_job",
                    format!("job {job_id} is not from a store order and has no closeout to wait for"),
                ))
            }
            Some(false) => {
                return Err(refuse(
                    ErrorKind::Conflict,
                    "order_not_closed_out",
                    format!(
                        "job {job_id} can be {verb} only after its order {} is closed out: close out the order first",
                        job.order_number.as_deref().unwrap_or("")
                    ),
                ))
            }
            Some(true) => {}
        }
        let to = if retain {
            JobState::Retained
        } else {
            JobState::Completed
        };
        self.transition(job_id, &[JobState::WaitingForOrderCloseout], to, verb)
    }
}

/// The changes only the store can make, refused with the advice to close out there.
fn refuse_store_changes(number: &str, request: &CloseoutRequest) -> Result<(), ModelError> {
    let refused = |what: &str| {
        Err(refuse(
            ErrorKind::Invalid,
            "close_out_in_store",
            format!("order {number}: {what} cannot be done here; close out the order in the store instead"),
        ))
    };
    if request.line_items.is_some() {
        return refused("changing line item values");
    }
    if request.shipping.is_some() {
        return refused("changing the shipping of a line item");
    }
    if request.packing_slips.is_some_and(|slips| slips > 1) {
        return refused("making more than one packing slip");
    }
    Ok(())
}

/// The one address every line item ships to.
fn one_ship_to<'a>(number: &str, store: &'a StoreOrder) -> Result<&'a Address, ModelError> {
    let first = &store.line_items[0].ship_to;
    if store.line_items.iter().any(|item| &item.ship_to != first) {
        return Err(refuse(
            ErrorKind::Invalid,
            "different_ship_to",
            format!("order {number}: its line items ship to different addresses; close out the order in the store instead"),
        ));
    }
    Ok(first)
}

/// The packing slip and the invoice of `store`, unsettled.
fn documents(store: &StoreOrder, ship_to: &Address, now: OffsetDateTime) -> Closeout {
    let cents = |amount: &str| {
        let (whole, part) = amount.split_once('.').unwrap_or((amount, "0"));
        let part = format!("{part:0<2}");
        whole.parse::<u64>().unwrap_or(0) * 100 + part.parse::<u64>().unwrap_or(0)
    };
    let shown = |cents: u64| format!("{}.{:02}", cents / 100, cents % 100);
    let shipping: u64 = store.line_items.iter().map(|i| cents(&i.shipping)).sum();
    let prices: u64 = store.line_items.iter().map(|i| cents(&i.price)).sum();
    Closeout {
        packing_slip: PackingSlip {
            ship_to: ship_to.clone(),
            items: store
                .line_items
                .iter()
                .map(|item| SlipItem {
                    name: item.name.clone(),
                    quantity: item.quantity,
                })
                .collect(),
            shipping: shown(shipping),
        },
        invoice: Invoice {
            customer: store.customer.clone(),
            payment: store.payment,
            lines: store
                .line_items
                .iter()
                .map(|item| InvoiceLine {
                    name: item.name.clone(),
                    quantity: item.quantity,
                    price: item.price.clone(),
                    shipping: item.shipping.clone(),
                })
                .collect(),
            total: shown(prices + shipping),
        },
        settlement: None,
        closed_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{address, announce, at, file, store_order, with_templates};
    use super::*;

    /// An order MC-5521 of business cards and a brochure, the cards delivered and
    /// waiting for closeout, the brochure not sent.
    fn delivered() -> (Model, Vec<String>) {
        let mut model = with_templates();
        announce(&mut model, "agent-1", &["indigo"], at(0));
        let order = store_order("S-1", &["business-cards", "brochure"]);
        let jobs = model
            .receive_store_order("MC-5521", order, vec![vec![file()], vec![file()]], at(0))
            .unwrap()
            .jobs;
        model
            .send("owner", std::slice::from_ref(&jobs[0]), None, at(1))
            .unwrap();
        let claimed = model.claim("agent-1", &["indigo".to_string()], 1, at(2));
        model
            .complete("agent-1", &claimed[0].id, Vec::new(), at(3))
            .unwrap();
        (model, jobs)
    }

    fn confirmed() -> CloseoutRequest {
        CloseoutRequest {
            confirm: true,
            ..CloseoutRequest::default()
        }
    }

    #[test]
    fn jobs_not_ready_are_listed_and_the_closeout_goes_ahead_when_confirmed() {
        let (mut model, jobs) = delivered();
        let warned = model
            .close_out("owner", "MC-5521", &CloseoutRequest::default(), None, at(4))
            .unwrap_err();
        assert_eq!(warned.code, "jobs_not_ready");
        assert_eq!(warned.jobs, [jobs[1].clone()]);
        assert!(warned.message.contains(&jobs[1]) && !warned.message.contains(&jobs[0]));
        let closed = model
            .close_out("owner", "MC-5521", &confirmed(), None, at(5))
            .unwrap();
        assert_eq!(closed.packing_slip.shipping, "13.00");
        assert_eq!(closed.packing_slip.items.len(), 2);
        assert_eq!(closed.invoice.total, "111.00");
        assert_eq!(closed.invoice.lines[0].price, "49.00");
        assert_eq!(closed.settlement.as_ref().unwrap().amount, "111.00");
    }

    #[test]
    fn what_only_the_store_can_do_is_refused_with_that_advice() {
        let (mut model, _) = delivered();
        for request in [
            CloseoutRequest {
                line_items: Some(serde_json::json!([{"price": "1.00"}])),
                ..confirmed()
            },
            CloseoutRequest {
                shipping: Some(serde_json::json!("0.00")),
                ..confirmed()
            },
            CloseoutRequest {
                packing_slips: Some(2),
                ..confirmed()
            },
        ] {
            let refused = model
                .close_out("owner", "MC-5521", &request, None, at(4))
                .unwrap_err();
            assert_eq!(refused.code, "close_out_in_store");
            assert!(refused.message.contains("in the store instead"));
        }
        model
            .orders
            .get_mut("MC-5521")
            .unwrap()
            .store
            .as_mut()
            .unwrap()
            .line_items[1]
            .ship_to = address("9 Elm St");
        let split = model
            .close_out("owner", "MC-5521", &confirmed(), None, at(4))
            .unwrap_err();
        assert_eq!(split.code, "different_ship_to");
        assert!(model.charges.is_empty());
    }

    #[test]
    fn a_declined_card_leaves_the_order_open_and_a_timeout_never_charges_twice() {
        let (mut model, jobs) = delivered();
        let declined = model
            .close_out(
                "owner",
                "MC-5521",
                &confirmed(),
                Some(PaymentFault::Declined),
                at(4),
            )
            .unwrap_err();
        assert_eq!(declined.code, "payment_declined");
        let store = model.orders["MC-5521"].store.as_ref().unwrap();
        assert!(store.closeout.is_none() && store.settlement_error.is_some());
        let lost = model
            .close_out(
                "owner",
                "MC-5521",
                &confirmed(),
                Some(PaymentFault::Timeout),
                at(5),
            )
            .unwrap_err();
        assert_eq!(lost.code, "payment_timeout");
        // The card was charged: a decline now changes nothing of that.
        let done = model
            .close_out(
                "owner",
                "MC-5521",
                &confirmed(),
                Some(PaymentFault::Declined),
                at(6),
            )
            .unwrap();
        let again = model
            .close_out("owner", "MC-5521", &confirmed(), None, at(7))
            .unwrap();
        assert_eq!(model.charges.len(), 1);
        assert_eq!(done.settlement, again.settlement);
        assert_eq!(again.closed_at, at(6));
        let second_slip = CloseoutRequest {
            packing_slips: Some(2),
            ..confirmed()
        };
        let refused = model
            .close_out("owner", "MC-5521", &second_slip, None, at(8))
            .unwrap_err();
        assert_eq!(refused.code, "close_out_in_store");
        // Now the delivered job may be completed.
        model.finish_store_job(&jobs[0], false).unwrap();
        assert_eq!(model.jobs[&jobs[0]].state, JobState::Completed);
    }

    #[test]
    fn a_store_job_is_completed_or_retained_only_after_its_order_is_closed_out() {
        let (mut model, jobs) = delivered();
        let refused = model.finish_store_job(&jobs[0], true).unwrap_err();
        assert_eq!(refused.code, "order_not_closed_out");
        assert!(refused.message.contains("close out the order first"));
        assert_eq!(
            model.jobs[&jobs[0]].state,
            JobState::WaitingForOrderCloseout
        );
        let designer = model
            .close_out("designer", "MC-5521", &confirmed(), None, at(4))
            .unwrap_err();
        assert_eq!(designer.kind, ErrorKind::Forbidden);
        model
            .close_out("owner", "MC-5521", &confirmed(), None, at(5))
            .unwrap();
        model.finish_store_job(&jobs[0], true).unwrap();
        assert_eq!(model.jobs[&jobs[0]].state, JobState::Retained);
    }
}
