//! The job side's web page in a real browser (headless Chromium over WebDriver): a job
//! walked from creation to sent and delivered, live; an order through its closeout;
//! and every action a person may not take absent from the page and refused by the
//! server alike.

use std::time::Duration;

use serde_json::{json, Value};
use tbot::mockserver::MockServer;

use crate::browser::Browser;
use crate::support::*;

const STORE_TOKEN: &str = "store-secret-web";

/// A browser-less session of the web page as `name`: its cookie and CSRF token, read
/// the way a browser gets them.
async fn web_session(url: &str, name: &str, password: &str) -> (String, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = http.get(format!("{url}/login")).send().await.unwrap();
    let login_cookie = form.headers()["set-cookie"].to_str().unwrap().to_string();
    let login_cookie = login_cookie.split(';').next().unwrap().to_string();
    let page = form.text().await.unwrap();
    let token = attribute_after(&page, "name=\"login_token\" value=\"");
    let answer = http
        .post(format!("{url}/login"))
        .header("cookie", &login_cookie)
        .form(&[
            ("name", name),
            ("password", password),
            ("login_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 303, "{name} logs in");
    let session = answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap())
        .find(|value| value.starts_with("tbot_session="))
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let jobs = http
        .get(format!("{url}/"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = attribute_after(&jobs, "name=\"csrf\" value=\"");
    (session, csrf)
}

fn attribute_after(page: &str, marker: &str) -> String {
    let start = page
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {page}"))
        + marker.len();
    page[start..].split('"').next().unwrap().to_string()
}

/// A form posted with a session cookie: the status and the page.
async fn post_form(url: &str, session: &str, form: &[(&str, &str)]) -> (u16, String) {
    let answer = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(url)
        .header("cookie", session)
        .form(form)
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

#[tokio::test]
async fn a_job_goes_from_creation_to_delivered_on_the_web_page() {
    let floor = Floor::new(&["indigo"]);
    let server = start_store_server(STORE_TOKEN).await;
    let agent = RunningAgent::start(&one_queue_config(&server.url(), &floor, ""));
    let owner = operator(&server, "owner");
    wait_connected(&owner, &["indigo-7900"]).await;
    let job = owner
        .create_job(
            "Business <cards> & co",
            Some("MC-5521"),
            &["indigo-7900".into()],
        )
        .await
        .unwrap();
    let bytes = sample_bytes(30_000, 3);
    owner
        .upload(&job, "cards.pdf", bytes.clone())
        .await
        .unwrap();

    let browser = Browser::start().await;
    browser.log_in(&server.url(), "owner", OWNER_PASSWORD).await;
    let tile = format!("#job-{job}");
    // A name from the job side is text on the page, never markup.
    assert_eq!(
        browser.text(&format!("{tile} strong")).await.as_deref(),
        Some("Business <cards> & co")
    );
    assert_eq!(
        browser.attr(&tile, "data-state").await.as_deref(),
        Some("in_progress")
    );
    assert!(browser
        .text("section[data-order='MC-5521'] h2")
        .await
        .unwrap()
        .contains("Order MC-5521"));

    browser
        .click(&format!("{tile} button[data-action=approve]"))
        .await;
    browser
        .wait_for_attr(&tile, "data-state", "approved", Duration::from_secs(10))
        .await;

    // Send to Production: the window lists the queue with its kind and status, the
    // preselected one checked.
    browser.tick(&format!("{tile} input[name=job]")).await;
    browser.click("#send").await;
    browser.wait_for_text("h1", "Send to Production").await;
    let row = "tr[data-queue='indigo-7900']";
    assert!(browser
        .find(&format!("{row} input[name=queue]"))
        .await
        .is_selected()
        .await
        .unwrap());
    assert_eq!(
        browser
            .attr(&format!("{row} td.status"), "data-status")
            .await
            .as_deref(),
        Some("ready")
    );
    assert!(browser.text(row).await.unwrap().contains("printer"));
    // At least one queue: sending with none chosen is refused, saying so.
    browser.click(&format!("{row} input[name=queue]")).await;
    browser.click("#send-now").await;
    browser
        .wait_for_text("p.refusal", "Choose at least one queue")
        .await;
    browser.click(&format!("{row} input[name=queue]")).await;
    browser.click("#send-now").await;
    let result = browser
        .wait_for_text(&format!("li[data-job='{job}']"), "sent to indigo-7900")
        .await;
    assert_eq!(
        browser
            .attr(&format!("li[data-job='{job}']"), "data-ok")
            .await
            .as_deref(),
        Some("true"),
        "{result}"
    );

    // Back on the jobs page, the delivery's progress arrives without a reload.
    browser.click("#back").await;
    browser.wait_for_text("h1", "Jobs").await;
    browser
        .client
        .execute("window.sameDocument = true;", vec![])
        .await
        .unwrap();
    browser
        .wait_for_text(
            &format!("{tile} li[data-queue='indigo-7900']"),
            "delivered (1 files)",
        )
        .await;
    let same = browser
        .client
        .execute("return window.sameDocument === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same, json!(true), "the page was not reloaded");
    let dropped = floor
        .path("indigo")
        .join(format!("MC-5521_{job}_cards.pdf"));
    assert_eq!(
        sha256_file(&dropped),
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
    );
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-page.png");
    browser.screenshot(&shot).await;

    // A designer sees no send, approve or AutoSend buttons...
    browser.click("header form.logout button").await;
    browser.wait_for_text("h1", "Log in").await;
    let second = owner
        .create_job("Flyer", None, &["indigo-7900".into()])
        .await
        .unwrap();
    browser
        .log_in(&server.url(), "designer", DESIGNER_PASSWORD)
        .await;
    assert_eq!(browser.count("#send").await, 0);
    assert_eq!(browser.count("#send-again").await, 0);
    assert_eq!(browser.count("form.autosend").await, 0);
    assert_eq!(browser.count("button[data-action=approve]").await, 0);
    assert_eq!(
        browser
            .count(&format!(
                "#job-{second} button[data-action=request-approval]"
            ))
            .await,
        1
    );
    browser.close().await;

    // ...and the server refuses them all the same, with a valid session and token.
    let (session, csrf) = web_session(&server.url(), "designer", DESIGNER_PASSWORD).await;
    let (status, page) = post_form(
        &format!("{}/send", server.url()),
        &session,
        &[("csrf", &csrf), ("job", &second), ("queue", "indigo-7900")],
    )
    .await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("send-to-production permission"), "{page}");
    let (status, page) = post_form(
        &format!("{}/jobs/{second}/approve", server.url()),
        &session,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, 403, "{page}");
    let (status, _) = post_form(
        &format!("{}/settings/autosend", server.url()),
        &session,
        &[("csrf", &csrf), ("autosend", "true")],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        owner.get(&format!("/jobs/{second}")).await.unwrap()["state"],
        json!("in_progress")
    );
    assert_eq!(
        owner.get("/settings").await.unwrap()["autosend"],
        json!(false)
    );
    agent.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_form_without_its_sessions_csrf_token_changes_nothing() {
    let server = start_store_server(STORE_TOKEN).await;
    let owner = operator(&server, "owner");
    let job = owner.create_job("Poster", None, &[]).await.unwrap();
    let (session, csrf) = web_session(&server.url(), "owner", OWNER_PASSWORD).await;
    let approve = format!("{}/jobs/{job}/approve", server.url());
    let (status, page) = post_form(&approve, &session, &[("csrf", "forged")]).await;
    assert_eq!(status, 403, "{page}");
    // The operator API takes no cookies: a browser session cannot reach it.
    let api = format!("{}/api/v1/operator/jobs/{job}/approve", server.url());
    let refused = reqwest::Client::new()
        .post(&api)
        .header("cookie", &session)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let said: Value = refused.json().await.unwrap();
    assert_eq!(said["error"]["code"], json!("not_logged_in"));
    // A page on another port of this machine is the same site but another origin: its
    // form is refused even when it carries the right token.
    let foreign = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(&approve)
        .header("cookie", &session)
        .header("origin", "http://127.0.0.1:1")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status().as_u16(), 403);
    // Nor can another site put the page in a frame to steer clicks.
    let login = reqwest::get(format!("{}/login", server.url()))
        .await
        .unwrap();
    let policy = login.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(
        owner.get(&format!("/jobs/{job}")).await.unwrap()["state"],
        json!("in_progress")
    );
    let (status, _) = post_form(&approve, &session, &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    assert_eq!(
        owner.get(&format!("/jobs/{job}")).await.unwrap()["state"],
        json!("approved")
    );
    server.stop().await;
}

/// A store order of business cards, one line item per name, shipping to `streets`.
fn store_order(id: &str, number: &str, names: &[&str], streets: &[&str]) -> Value {
    let items: Vec<Value> = names
        .iter()
        .zip(streets)
        .map(|(name, street)| {
            json!({
                "product": "business-cards", "name": name, "quantity": 250,
                "price": "49.00", "shipping": "3.25",
                "ship_to": {"name": "J. Smith", "street": street, "city": "Springfield",
                            "postal_code": "12345", "country": "US"},
                "files": [{"name": "cards.pdf", "content": format!("%PDF {name}")}]
            })
        })
        .collect();
    json!({"store_order_id": id, "order_number": number, "customer": "Smith & Co",
           "payment": "credit_card", "line_items": items})
}

async fn post_store_order(server: &MockServer, order: &Value) -> Vec<String> {
    let (status, answer) = post_order(&server.url(), STORE_TOKEN, order).await;
    assert_eq!(status, 201, "{answer}");
    serde_json::from_value(answer["jobs"].clone()).expect("the order's jobs")
}

#[tokio::test]
async fn an_order_is_closed_out_on_the_web_page() {
    let floor = Floor::new(&["indigo"]);
    let server = start_store_server(STORE_TOKEN).await;
    let agent = RunningAgent::start(&one_queue_config(&server.url(), &floor, ""));
    let owner = operator(&server, "owner");
    wait_connected(&owner, &["indigo-7900"]).await;
    let jobs = post_store_order(
        &server,
        &store_order(
            "S-1",
            "MC-7001",
            &["Cards Smith", "Cards Jones"],
            &["1 Main St", "1 Main St"],
        ),
    )
    .await;
    post_store_order(
        &server,
        &store_order(
            "S-2",
            "MC-7002",
            &["Cards A", "Cards B"],
            &["1 Main St", "9 Elm St"],
        ),
    )
    .await;

    let browser = Browser::start().await;
    browser.log_in(&server.url(), "owner", OWNER_PASSWORD).await;
    // Send only the first job; it is delivered and waits for the order's closeout.
    browser
        .tick(&format!("#job-{} input[name=job]", jobs[0]))
        .await;
    browser.click("#send").await;
    browser.wait_for_text("h1", "Send to Production").await;
    browser.click("#send-now").await;
    browser
        .wait_for_text(&format!("li[data-job='{}']", jobs[0]), "sent to")
        .await;
    browser.click("#back").await;
    let first = format!("#job-{}", jobs[0]);
    browser
        .wait_for_attr(
            &first,
            "data-state",
            "waiting_for_order_closeout",
            Duration::from_secs(20),
        )
        .await;

    browser
        .click("section[data-order='MC-7001'] a.details")
        .await;
    browser.wait_for_text("h1", "Order details: MC-7001").await;
    assert_eq!(browser.count("#line-items tbody tr").await, 2);
    assert!(browser.text("main").await.unwrap().contains("Smith & Co"));
    browser.click("#closeout-order").await;
    browser.wait_for_text("h1", "Closeout order MC-7001").await;
    assert!(browser
        .text(".tab-body")
        .await
        .unwrap()
        .contains("Shipping for the whole order: 6.50"));
    browser.click("#tab-invoice").await;
    browser.wait_for_text(".tab-body", "Total: 104.50").await;
    browser.click("#tab-settlement").await;
    browser
        .wait_for_text(".tab-body", "The card is charged 104.50")
        .await;

    // Not every job is ready: the warning names the other one; Yes closes out.
    browser.click("#close-out").await;
    let warning = browser
        .wait_for_text("#not-ready", "Close the order out anyway?")
        .await;
    assert!(
        warning.contains(&jobs[1]) && warning.contains("approved"),
        "{warning}"
    );
    browser.click("#confirm-closeout").await;
    let closed = browser
        .wait_for_text("#closeout-state", "Closed out.")
        .await;
    assert!(
        closed.contains("Card settled: charge CH-1 of 104.50"),
        "{closed}"
    );
    browser.click("#closeout-state a[href$='/invoice']").await;
    browser.wait_for_text("h1", "Invoice, order MC-7001").await;
    browser.goto(&format!("{}/", server.url())).await;
    browser
        .click(&format!("#job-{} button[data-action=complete]", jobs[0]))
        .await;
    browser
        .wait_for_attr(&first, "data-state", "completed", Duration::from_secs(10))
        .await;

    // Line items that ship to two addresses are refused, saying where to close out.
    browser
        .goto(&format!("{}/orders/MC-7002/closeout", server.url()))
        .await;
    let refusal = browser
        .wait_for_text("p.refusal", "in the store instead")
        .await;
    assert!(refusal.contains("different"), "{refusal}");
    let order = owner.get("/orders/MC-7002").await.unwrap();
    assert_eq!(order["closed_out"], json!(false), "{order}");

    // A designer sees no way to close out, and the server refuses it anyway.
    browser.click("header form.logout button").await;
    browser
        .log_in(&server.url(), "designer", DESIGNER_PASSWORD)
        .await;
    browser
        .goto(&format!("{}/orders/MC-7002", server.url()))
        .await;
    browser.wait_for_text("h1", "Order details").await;
    assert_eq!(browser.count("#closeout-order").await, 0);
    browser
        .goto(&format!("{}/orders/MC-7002/closeout", server.url()))
        .await;
    browser
        .wait_for_text("p.refusal", "close-out-orders permission")
        .await;
    browser.close().await;
    agent.stop().await;
    server.stop().await;
}
