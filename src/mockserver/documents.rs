//! The packing slip and the invoice of a closed-out order as pages a person opens and
//! prints: HTML with a print style sheet. Everything in them came from a store; maud
//! escapes it.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use axum::http::StatusCode;

use super::api_error::ApiError;
use super::model::{unknown_order, Charge, Invoice, Model, PackingSlip};

/// The closed-out order's `document` (`packing-slip` or `invoice`) as a page of its own.
pub fn of_order(model: &Model, number: &str, document: &str) -> Result<String, ApiError> {
    let order = model
        .orders()
        .get(number)
        .ok_or_else(|| ApiError::from(unknown_order(number)))?;
    let Some(closeout) = order.store.as_ref().and_then(|s| s.closeout.as_ref()) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_closed_out",
            format!("order {number} is not closed out: it has no packing slip or invoice yet"),
        ));
    };
    match document {
        "packing-slip" => Ok(packing_slip(number, &closeout.packing_slip)),
        "invoice" => Ok(invoice(
            number,
            &closeout.invoice,
            closeout.settlement.as_ref(),
        )),
        other => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_document",
            format!("orders have no document {other:?} (packing-slip, invoice)"),
        )),
    }
}

/// The print style both documents share.
const STYLE: &str =
    "body{font:11pt sans-serif;margin:2em}table{border-collapse:collapse;width:100%}\
td,th{border-bottom:1px solid #999;padding:.3em;text-align:left}td.n,th.n{text-align:right}\
@media print{body{margin:0}@page{size:A4;margin:15mm}}";

fn standalone(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    }
    .into_string()
}

/// The order's one packing slip, as a page of its own.
pub fn packing_slip(number: &str, slip: &PackingSlip) -> String {
    standalone(
        &format!("Packing slip {number}"),
        packing_slip_body(number, slip),
    )
}

/// The order's invoice, with the settlement when the card was charged, as a page.
pub fn invoice(number: &str, invoice: &Invoice, settlement: Option<&Charge>) -> String {
    standalone(
        &format!("Invoice {number}"),
        invoice_body(number, invoice, settlement),
    )
}

/// The packing slip's content, also shown in the closeout window before it is made.
pub fn packing_slip_body(number: &str, slip: &PackingSlip) -> Markup {
    let to = &slip.ship_to;
    html! {
        h1 { "Packing slip, order " (number) }
        p.address {
            "Ship to:" br; (to.name) br; (to.street) br;
            (to.postal_code) " " (to.city) br; (to.country)
        }
        table {
            tr { th { "Item" } th.n { "Quantity" } }
            @for item in &slip.items {
                tr { td { (item.name) } td.n { (item.quantity) } }
            }
        }
        p { "Shipping for the whole order: " (slip.shipping) }
    }
}

/// The invoice's content, also shown in the closeout window before it is made.
pub fn invoice_body(number: &str, invoice: &Invoice, settlement: Option<&Charge>) -> Markup {
    html! {
        h1 { "Invoice, order " (number) }
        p { "Customer: " (invoice.customer) br; "Payment: " (invoice.payment.label()) }
        table {
            tr { th { "Item" } th.n { "Quantity" } th.n { "Price" } th.n { "Shipping" } }
            @for line in &invoice.lines {
                tr {
                    td { (line.name) } td.n { (line.quantity) }
                    td.n { (line.price) } td.n { (line.shipping) }
                }
            }
        }
        p { "Total: " (invoice.total) }
        @if let Some(charge) = settlement {
            p.settled { "Settled by card: charge " (charge.id) " of " (charge.amount) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::{Address, InvoiceLine, Payment, SlipItem};
    use super::*;

    #[test]
    fn what_the_store_sent_cannot_become_markup() {
        let hostile = "<script>alert('x')</script> & \"co\"";
        let slip = PackingSlip {
            ship_to: Address {
                name: hostile.into(),
                street: "1 Main St".into(),
                city: "Springfield".into(),
                postal_code: "12345".into(),
                country: "US".into(),
            },
            items: vec![SlipItem {
                name: hostile.into(),
                quantity: 500,
            }],
            shipping: "6.50".into(),
        };
        let page = packing_slip("MC<1>", &slip);
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(
            page.contains("&lt;script&gt;alert('x')&lt;/script&gt; &amp; &quot;co&quot;"),
            "{page}"
        );
        assert!(page.contains("Packing slip, order MC&lt;1&gt;"), "{page}");
        let invoice = invoice(
            "MC-1",
            &Invoice {
                customer: hostile.into(),
                payment: Payment::CreditCard,
                lines: vec![InvoiceLine {
                    name: "Cards".into(),
                    quantity: 1,
                    price: "49.00".into(),
                    shipping: "6.50".into(),
                }],
                total: "55.50".into(),
            },
            None,
        );
        assert!(invoice.contains("Customer: &lt;script&gt;"), "{invoice}");
        assert!(invoice.contains("@media print"), "{invoice}");
    }
}
