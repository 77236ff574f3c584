//! Orders from an online store through the mock job side's store connection: made
//! once however often the store sends them, shaped by their production templates,
//! delivered by a real agent, and ending in the wait for the order's closeout.

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tbot::config::Secret;

use crate::support::*;

const STORE_TOKEN: &str = "store-secret-7";

#[tokio::test]
async fn a_store_order_is_made_once_delivered_and_waits_for_its_closeout() {
    let floor = Floor::new(&["indigo"]);
    let server = start_store_server(STORE_TOKEN).await;
    let agent = RunningAgent::start(&one_queue_config(&server.url(), &floor, ""));
    let owner = operator(&server, "owner");
    wait_connected(&owner, &["indigo-7900"]).await;

    let cards = sample_bytes(40_000, 5);
    let order = json!({
        "store_order_id": "MC-88412", "order_number": "MC-5521", "customer": "Smith & Co",
        "payment": "credit_card", "channel": "web",
        "line_items": [{
            "product": "business-cards", "name": "Business cards - Smith",
            "quantity": 500, "price": "49.00", "shipping": "6.50",
            "ship_to": {"name": "J. Smith", "street": "1 Main St", "city": "Springfield",
                        "postal_code": "12345", "country": "US"},
            "files": [{"name": "cards.pdf",
                       "content_base64": base64::engine::general_purpose::STANDARD.encode(&cards)}]
        }]
    });
    let (status, refused) = post_order(&server.url(), "not-the-token", &order).await;
    assert_eq!(status, 401, "{refused}");
    let (status, made) = post_order(&server.url(), STORE_TOKEN, &order).await;
    assert_eq!((status, &made["created"]), (201, &json!(true)), "{made}");
    let job = made["jobs"][0].as_str().unwrap().to_string();
    let (status, again) = post_order(&server.url(), STORE_TOKEN, &order).await;
    assert_eq!((status, &again["jobs"]), (200, &made["jobs"]), "{again}");
    let jobs = owner.get("/jobs").await.unwrap();
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 1, "{jobs}");
    assert_eq!(jobs["jobs"][0]["state"], json!("approved"), "{jobs}");

    // Not delivered yet: the closeout warns, naming the job, until confirmed.
    let warned = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/operator/orders/MC-5521/closeout",
            server.url()
        ))
        .bearer_auth(server.state.accounts.issue_api_token("owner"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(warned.status().as_u16(), 409);
    let warned: Value = warned.json().await.unwrap();
    assert_eq!(warned["error"]["code"], json!("jobs_not_ready"), "{warned}");
    assert_eq!(warned["error"]["jobs"], json!([job]), "{warned}");

    let sent = owner.send(std::slice::from_ref(&job), None).await.unwrap();
    assert_eq!(sent["results"][0]["ok"], json!(true), "{sent}");
    let dropped = floor
        .path("indigo")
        .join(format!("MC-5521_{job}_cards.pdf"));
    wait_until(
        "the cards in the hotfolder",
        Duration::from_secs(20),
        || std::future::ready(dropped.exists().then_some(())),
    )
    .await;
    assert_eq!(std::fs::read(&dropped).unwrap(), cards);
    let waiting = wait_until(
        "the job to wait for closeout",
        Duration::from_secs(20),
        || async {
            let shown = owner.get(&format!("/jobs/{job}")).await.ok()?;
            (shown["state"] == json!("waiting_for_order_closeout")).then_some(shown)
        },
    )
    .await;
    assert_eq!(waiting["order_number"], json!("MC-5521"));

    // Completing the job waits for the order's closeout.
    let early = owner
        .post(&format!("/jobs/{job}/complete"), json!({}))
        .await;
    let early = early.expect_err("completed before closeout").to_string();
    assert!(early.contains("close out the order first"), "{early}");
    let details = owner.get("/orders/MC-5521").await.unwrap();
    assert_eq!(
        details["store"]["payment"],
        json!("credit_card"),
        "{details}"
    );
    assert_eq!(details["closed_out"], json!(false), "{details}");

    // The card is charged but the answer is lost; the closeout tried again settles
    // once, with one packing slip and one invoice.
    set_faults(&owner, json!({"payment": "timeout"})).await;
    let lost = owner.post("/orders/MC-5521/closeout", json!({})).await;
    let lost = lost.expect_err("a lost payment answer").to_string();
    assert!(lost.contains("will not be charged twice"), "{lost}");
    set_faults(&owner, json!({})).await;
    let closed = owner
        .post("/orders/MC-5521/closeout", json!({}))
        .await
        .unwrap();
    let again = owner
        .post("/orders/MC-5521/closeout", json!({}))
        .await
        .unwrap();
    assert_eq!(closed, again);
    assert_eq!(closed["settlement"]["id"], json!("CH-1"), "{closed}");
    assert_eq!(closed["invoice"]["total"], json!("55.50"), "{closed}");
    // Only someone logged in opens the documents.
    let anonymous = reqwest::get(format!(
        "{}/api/v1/operator/orders/MC-5521/packing-slip",
        server.url()
    ))
    .await
    .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let slip = owner.page("/orders/MC-5521/packing-slip").await.unwrap();
    assert!(slip.contains("@media print") && slip.contains("Shipping for the whole order: 6.50"));
    let invoice = owner.page("/orders/MC-5521/invoice").await.unwrap();
    assert!(
        invoice.contains("Smith &amp; Co") && !invoice.contains("Smith & Co"),
        "{invoice}"
    );
    owner
        .post(&format!("/jobs/{job}/complete"), json!({}))
        .await
        .expect("completed after closeout");
    assert_eq!(
        owner.get(&format!("/jobs/{job}")).await.unwrap()["state"],
        json!("completed")
    );
    agent.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_store_order_for_an_unknown_product_is_refused_and_makes_nothing() {
    let server = start_server(|settings| {
        settings.store_token = Some(Secret::new(STORE_TOKEN));
    })
    .await;
    let order = json!({
        "store_order_id": "MC-1", "order_number": "MC-1", "customer": "Smith & Co",
        "payment": "invoice",
        "line_items": [{"product": "poster", "name": "Poster", "quantity": 1,
                        "price": "10.00", "shipping": "0.00",
                        "ship_to": {"name": "J", "street": "S", "city": "C",
                                    "postal_code": "1", "country": "US"}}]
    });
    let (status, refused) = post_order(&server.url(), STORE_TOKEN, &order).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(
        refused["error"]["code"],
        json!("unknown_product"),
        "{refused}"
    );
    let jobs = operator(&server, "owner").get("/jobs").await.unwrap();
    assert_eq!(jobs["jobs"], json!([]), "{jobs}");
    server.stop().await;
}

#[tokio::test]
async fn an_order_number_a_browser_would_read_as_a_path_step_is_refused() {
    let server = start_store_server(STORE_TOKEN).await;
    let owner = operator(&server, "owner");
    for number in ["..", ".", " ", "MC\n1"] {
        let order = json!({
            "store_order_id": format!("S-{number}"), "order_number": number,
            "customer": "Smith & Co", "payment": "invoice",
            "line_items": [{"product": "business-cards", "name": "Cards", "quantity": 1,
                            "price": "10.00", "shipping": "0.00",
                            "ship_to": {"name": "J", "street": "S", "city": "C",
                                        "postal_code": "1", "country": "US"}}]
        });
        let (status, refused) = post_order(&server.url(), STORE_TOKEN, &order).await;
        assert_eq!(status, 422, "{number:?}: {refused}");
        let refused = owner
            .post("/orders", json!({"number": number}))
            .await
            .unwrap_err()
            .to_string();
        assert!(refused.contains("422"), "{number:?}: {refused}");
        let refused = owner
            .post("/jobs", json!({"name": "Cards", "order_number": number}))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("cannot be an order number"),
            "{number:?}: {refused}"
        );
    }
    assert_eq!(owner.get("/orders").await.unwrap()["orders"], json!([]));
    server.stop().await;
}
