//! The packing slip and the invoice of a closed-out order as pages a person opens and
//! prints: HTML with a print style sheet. Everything in them came from a store and is
//! escaped.

use std::fmt::Write;

use super::model::{Closeout, Payment};

/// The print style both documents share.
const STYLE: &str =
    "body{font:11pt sans-serif;margin:2em}table{border-collapse:collapse;width:100%}\
td,th{border-bottom:1px solid #999;padding:.3em;text-align:left}td.n,th.n{text-align:right}\
@media print{body{margin:0}@page{size:A4;margin:15mm}}";

/// `text` safe inside HTML text and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>{STYLE}</style></head><body>{body}</body></html>",
        escape(title)
    )
}

/// The order's one packing slip.
pub fn packing_slip(number: &str, closeout: &Closeout) -> String {
    let slip = &closeout.packing_slip;
    let to = &slip.ship_to;
    let mut body = format!(
        "<h1>Packing slip, order {}</h1><p>Ship to:<br>{}<br>{}<br>{} {}<br>{}</p>\
         <table><tr><th>Item</th><th class=\"n\">Quantity</th></tr>",
        escape(number),
        escape(&to.name),
        escape(&to.street),
        escape(&to.postal_code),
        escape(&to.city),
        escape(&to.country)
    );
    for item in &slip.items {
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
            escape(&item.name),
            item.quantity
        );
    }
    let _ = write!(
        body,
        "</table><p>Shipping for the whole order: {}</p>",
        escape(&slip.shipping)
    );
    page(&format!("Packing slip {number}"), &body)
}

/// The order's invoice, with the settlement when the card was charged.
pub fn invoice(number: &str, closeout: &Closeout) -> String {
    let invoice = &closeout.invoice;
    let payment = match invoice.payment {
        Payment::CreditCard => "credit card",
        Payment::Invoice => "invoice",
        Payment::PurchaseOrder => "purchase order",
    };
    let mut body = format!(
        "<h1>Invoice, order {}</h1><p>Customer: {}<br>Payment: {payment}</p>\
         <table><tr><th>Item</th><th class=\"n\">Quantity</th><th class=\"n\">Price</th>\
         <th class=\"n\">Shipping</th></tr>",
        escape(number),
        escape(&invoice.customer)
    );
    for line in &invoice.lines {
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&line.name),
            line.quantity,
            escape(&line.price),
            escape(&line.shipping)
        );
    }
    let _ = write!(body, "</table><p>Total: {}</p>", escape(&invoice.total));
    if let Some(charge) = &closeout.settlement {
        let _ = write!(
            body,
            "<p>Settled by card: charge {} of {}</p>",
            escape(&charge.id),
            escape(&charge.amount)
        );
    }
    page(&format!("Invoice {number}"), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_store_sent_cannot_become_markup() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"co\"\u{7}"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;co&quot; "
        );
    }
}
