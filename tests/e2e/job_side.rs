//! The job side's rules, tried through the mock server's HTTP APIs as a person and an
//! agent would.

use std::time::Duration;

use serde_json::{json, Value};
use tbot::mockserver::MockServer;
use tbot::operator_client::OperatorClient;

use crate::support::*;

/// Announces queues as the agent with [`TOKEN`] would, with a real heartbeat.
async fn announce(server: &MockServer, queues: &[&str]) {
    let queues: Vec<Value> = queues
        .iter()
        .map(|q| json!({"name": q, "kind": "printer", "status": "ready"}))
        .collect();
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/agent/heartbeat", server.url()))
        .bearer_auth(TOKEN)
        .json(&json!({"agent": "test", "version": "0", "queues": queues}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn job(owner: &OperatorClient, name: &str, order: Option<&str>, queues: &[&str]) -> String {
    let job = owner
        .post("/jobs", json!({"name": name, "order_number": order, "queues": queues, "files": [{"name": "a.pdf", "content": "a"}]}))
        .await
        .unwrap();
    job["id"].as_str().unwrap().to_string()
}

async fn state(owner: &OperatorClient, job: &str) -> Value {
    owner.get(&format!("/jobs/{job}")).await.unwrap()["state"].clone()
}

async fn listed(owner: &OperatorClient) -> usize {
    owner.get("/queues").await.unwrap()["queues"]
        .as_array()
        .unwrap()
        .len()
}

fn error_of(results: &Value, index: usize) -> String {
    assert_eq!(results["results"][index]["ok"], json!(false), "{results}");
    results["results"][index]["error"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn only_an_approved_job_can_be_sent_and_the_refusal_names_the_state() {
    let server = start_server(|_| {}).await;
    announce(&server, &["indigo"]).await;
    let owner = operator(&server, "owner");
    let in_progress = job(&owner, "a", None, &["indigo"]).await;
    let awaiting = job(&owner, "b", None, &["indigo"]).await;
    owner
        .post(&format!("/jobs/{awaiting}/request-approval"), json!({}))
        .await
        .unwrap();
    let held = job(&owner, "c", None, &["indigo"]).await;
    owner
        .post(&format!("/jobs/{held}/hold"), json!({}))
        .await
        .unwrap();
    let archived = job(&owner, "d", None, &["indigo"]).await;
    owner
        .post(&format!("/jobs/{archived}/archive"), json!({}))
        .await
        .unwrap();
    let approved = job(&owner, "e", None, &["indigo"]).await;
    owner
        .post(&format!("/jobs/{approved}/approve"), json!({}))
        .await
        .unwrap();

    let results = owner
        .send(
            &[
                in_progress.clone(),
                awaiting,
                held,
                archived,
                approved.clone(),
            ],
            None,
        )
        .await
        .unwrap();
    for (index, label) in ["in progress", "awaiting approval", "on hold", "archived"]
        .iter()
        .enumerate()
    {
        let error = error_of(&results, index);
        assert!(
            error.contains(label) && error.contains("only an approved job"),
            "{error}"
        );
    }
    assert_eq!(results["results"][4]["ok"], json!(true), "{results}");
    assert_eq!(
        state(&owner, &approved).await,
        json!("sending_to_production")
    );
    assert_eq!(state(&owner, &in_progress).await, json!("in_progress"));
    // A job on its way cannot be sent again until it has arrived.
    let twice = owner
        .send(std::slice::from_ref(&approved), None)
        .await
        .unwrap();
    assert!(error_of(&twice, 0).contains("sending to production"));
    server.stop().await;
}

#[tokio::test]
async fn sending_needs_the_permission_on_the_user_profile() {
    let server = start_server(|_| {}).await;
    announce(&server, &["indigo"]).await;
    let owner = operator(&server, "owner");
    let approved = job(&owner, "a", None, &["indigo"]).await;
    owner
        .post(&format!("/jobs/{approved}/approve"), json!({}))
        .await
        .unwrap();

    let designer = operator(&server, "designer");
    let refused = designer
        .send(std::slice::from_ref(&approved), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("403")
            && refused.contains("designer")
            && refused.contains("send-to-production permission"),
        "{refused}"
    );
    let stranger = operator(&server, "nobody");
    assert!(stranger
        .send(std::slice::from_ref(&approved), None)
        .await
        .unwrap_err()
        .to_string()
        .contains("no user"));
    assert_eq!(state(&owner, &approved).await, json!("approved"));
    assert!(owner.send(&[approved], None).await.unwrap()["results"][0]["ok"] == json!(true));
    server.stop().await;
}

#[tokio::test]
async fn queues_are_preselected_from_job_then_order_and_one_is_required() {
    let server = start_server(|_| {}).await;
    announce(&server, &["indigo", "ctp"]).await;
    let owner = operator(&server, "owner");
    owner
        .post("/orders", json!({"number": "MC-1", "queues": ["ctp"]}))
        .await
        .unwrap();
    let from_order = job(&owner, "order's choice", Some("MC-1"), &[]).await;
    let from_job = job(&owner, "job's choice", Some("MC-1"), &["indigo"]).await;
    let none = job(&owner, "no choice", None, &[]).await;
    for id in [&from_order, &from_job, &none] {
        owner
            .post(&format!("/jobs/{id}/approve"), json!({}))
            .await
            .unwrap();
    }
    let results = owner
        .send(&[from_order.clone(), from_job.clone(), none.clone()], None)
        .await
        .unwrap();
    assert!(error_of(&results, 2).contains("at least one queue"));
    let queues_of = |job: &str| {
        let job = job.to_string();
        let owner = &owner;
        async move {
            let deliveries = deliveries(owner).await;
            deliveries
                .iter()
                .filter(|d| d["job"] == json!(job))
                .map(|d| d["queue"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(queues_of(&from_order).await, ["ctp"]);
    assert_eq!(queues_of(&from_job).await, ["indigo"]);
    // An explicit choice of no queue is refused too.
    let empty = owner
        .send(std::slice::from_ref(&none), Some(&[]))
        .await
        .unwrap();
    assert!(error_of(&empty, 0).contains("at least one queue"));
    server.stop().await;
}

#[tokio::test]
async fn an_order_cannot_be_sent_as_such() {
    let server = start_server(|_| {}).await;
    let owner = operator(&server, "owner");
    let first = job(&owner, "a", Some("MC-7"), &[]).await;
    let refused = owner
        .post("/orders/MC-7/send", json!({}))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("an order cannot be sent") && refused.contains(&first),
        "{refused}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_queue_silent_for_48_hours_is_hidden_until_its_next_heartbeat() {
    let server = start_server(|_| {}).await;
    announce(&server, &["indigo"]).await;
    let owner = operator(&server, "owner");
    assert_eq!(listed(&owner).await, 1);
    owner
        .post("/clock/advance", json!({"by": "47h"}))
        .await
        .unwrap();
    assert_eq!(listed(&owner).await, 1, "hidden before 48 hours");
    owner
        .post("/clock/advance", json!({"by": "2h"}))
        .await
        .unwrap();
    assert_eq!(listed(&owner).await, 0, "still listed after 49 hours");
    assert_eq!(
        owner.get("/queues?all=true").await.unwrap()["queues"][0]["connected"],
        json!(false)
    );

    let id = job(&owner, "a", None, &["indigo"]).await;
    owner
        .post(&format!("/jobs/{id}/approve"), json!({}))
        .await
        .unwrap();
    let refused = owner.send(std::slice::from_ref(&id), None).await.unwrap();
    assert!(error_of(&refused, 0).contains("not connected"));
    let unknown = owner
        .send(std::slice::from_ref(&id), Some(&["nowhere".to_string()]))
        .await
        .unwrap();
    assert!(error_of(&unknown, 0).contains("not known"));

    announce(&server, &["indigo"]).await;
    assert_eq!(listed(&owner).await, 1, "back after a heartbeat");
    assert_eq!(
        owner.send(&[id], None).await.unwrap()["results"][0]["ok"],
        json!(true)
    );
    server.stop().await;
}

#[tokio::test]
async fn autosend_sends_approved_jobs_and_holds_those_without_a_queue() {
    let server = start_server(|_| {}).await;
    announce(&server, &["indigo"]).await;
    let owner = operator(&server, "owner");
    let already = job(&owner, "approved before", None, &["indigo"]).await;
    owner
        .post(&format!("/jobs/{already}/approve"), json!({}))
        .await
        .unwrap();
    assert!(
        deliveries(&owner).await.is_empty(),
        "AutoSend is off by default"
    );

    owner
        .put("/settings", json!({"autosend": true}))
        .await
        .unwrap();
    assert_eq!(
        state(&owner, &already).await,
        json!("sending_to_production"),
        "turning AutoSend on sends approved jobs"
    );

    let with_queue = job(&owner, "with queue", None, &["indigo"]).await;
    let without = job(&owner, "without queue", Some("MC-3"), &[]).await;
    owner
        .post(&format!("/jobs/{with_queue}/approve"), json!({}))
        .await
        .unwrap();
    owner
        .post(&format!("/jobs/{without}/approve"), json!({}))
        .await
        .unwrap();
    assert_eq!(
        state(&owner, &with_queue).await,
        json!("sending_to_production")
    );
    assert_eq!(
        state(&owner, &without).await,
        json!("sending_to_production")
    );
    let count_for =
        |all: &[Value], job: &str| all.iter().filter(|d| d["job"] == json!(job)).count();
    let all = deliveries(&owner).await;
    assert_eq!(count_for(&all, &with_queue), 1);
    assert_eq!(count_for(&all, &without), 0, "a job without a queue waits");

    owner
        .put("/orders/MC-3/queues", json!({"queues": ["indigo"]}))
        .await
        .unwrap();
    assert_eq!(
        count_for(&deliveries(&owner).await, &without),
        1,
        "it goes once a queue is assigned"
    );

    owner
        .put("/settings", json!({"autosend": false}))
        .await
        .unwrap();
    let manual = job(&owner, "manual", None, &["indigo"]).await;
    owner
        .post(&format!("/jobs/{manual}/approve"), json!({}))
        .await
        .unwrap();
    assert_eq!(state(&owner, &manual).await, json!("approved"));
    server.stop().await;
}

#[tokio::test]
async fn job_lists_are_sorted_and_grouped_by_order_number() {
    let server = start_server(|_| {}).await;
    let owner = operator(&server, "owner");
    let b1 = job(&owner, "b1", Some("MC-B"), &[]).await;
    let loose = job(&owner, "loose", None, &[]).await;
    let a1 = job(&owner, "a1", Some("MC-A"), &[]).await;
    let b2 = job(&owner, "b2", Some("MC-B"), &[]).await;
    let sorted: Vec<String> = owner.get("/jobs").await.unwrap()["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sorted, [a1.clone(), b1.clone(), b2.clone(), loose.clone()]);
    let grouped = owner.get("/jobs?group=order_number").await.unwrap();
    let groups = grouped["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3);
    assert_eq!(groups[0]["order_number"], json!("MC-A"));
    assert_eq!(groups[1]["jobs"].as_array().unwrap().len(), 2);
    assert_eq!(groups[2]["order_number"], Value::Null);
    server.stop().await;
}

#[tokio::test]
async fn leases_expire_and_the_delivery_is_handed_out_again() {
    let server = start_server(|settings| settings.model.lease = Duration::from_secs(60)).await;
    announce(&server, &["indigo"]).await;
    let owner = operator(&server, "owner");
    let id = job(&owner, "a", None, &["indigo"]).await;
    owner
        .post(&format!("/jobs/{id}/approve"), json!({}))
        .await
        .unwrap();
    owner.send(&[id], None).await.unwrap();
    let claim = || async {
        reqwest::Client::new()
            .post(format!("{}/api/v1/agent/claim", server.url()))
            .bearer_auth(TOKEN)
            .json(&json!({"queues": ["indigo"], "max": 8, "wait_s": 0}))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["deliveries"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(claim().await, 1);
    assert_eq!(
        claim().await,
        0,
        "leased deliveries are not handed out twice"
    );
    owner
        .post("/clock/advance", json!({"by": "61s"}))
        .await
        .unwrap();
    assert_eq!(claim().await, 1, "an expired lease returns the delivery");
    let no_token = reqwest::Client::new()
        .post(format!("{}/api/v1/agent/claim", server.url()))
        .json(&json!({"queues": ["indigo"], "max": 8}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    let body: Value = no_token.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("unauthorized"));
    server.stop().await;
}

/// Started with a state folder, the job side carries on after a restart: the delivery
/// it completed is still completed, an approved job and its uploaded file are still
/// there, and that job, sent after the restart, reaches the hotfolder verified.
#[tokio::test]
async fn with_a_state_folder_the_job_side_survives_a_restart() {
    let saved = tempfile::tempdir().expect("state folder");
    let keep = |settings: &mut tbot::mockserver::MockSettings| {
        settings.state_dir = Some(saved.path().to_path_buf());
    };
    let server = start_server(keep).await;
    let floor = Floor::new(&["indigo"]);
    let config = one_queue_config(&server.url(), &floor, "");
    let agent = RunningAgent::start(&config);
    let owner = operator(&server, "owner");
    wait_connected(&owner, &["indigo-7900"]).await;
    let cards = sample_bytes(100_000, 1);
    send_file(&owner, "Cards", "indigo-7900", "cards.pdf", cards).await;
    wait_deliveries_settled(&owner, &["completed"]).await;
    let flyer = owner
        .create_job("Flyer", None, &["indigo-7900".to_string()])
        .await
        .expect("job");
    let flyer_bytes = sample_bytes(50_000, 2);
    owner
        .upload(&flyer, "flyer.pdf", flyer_bytes.clone())
        .await
        .expect("upload");
    owner
        .post(&format!("/jobs/{flyer}/approve"), json!({}))
        .await
        .expect("approve");
    agent.stop().await;
    let address = server.addr;
    server.stop().await;

    let server = start_server_at(address, keep).await;
    let owner = operator(&server, "owner");
    let before = deliveries(&owner).await;
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0]["state"], json!("completed"), "{before:?}");
    assert_eq!(state(&owner, &flyer).await, json!("approved"));
    let agent = RunningAgent::start(&config);
    wait_connected(&owner, &["indigo-7900"]).await;
    let sent = owner
        .send(std::slice::from_ref(&flyer), None)
        .await
        .expect("send");
    assert_eq!(sent["results"][0]["ok"], json!(true), "{sent}");
    let hotfolder = floor.path("indigo");
    let dropped = wait_until(
        "the flyer in the hotfolder",
        Duration::from_secs(30),
        || {
            let flyer = format!("{flyer}_flyer.pdf");
            let found = visible_files(&hotfolder).contains(&flyer);
            std::future::ready(found.then(|| hotfolder.join(flyer)))
        },
    )
    .await;
    assert_eq!(
        sha256_file(&dropped),
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&flyer_bytes))
    );
    agent.stop().await;
    server.stop().await;
}

/// An operator client of the server at `url`, logged in as `owner` with the password.
async fn logged_in(url: &str) -> OperatorClient {
    let mut owner = OperatorClient::new(url).unwrap();
    owner
        .log_in("owner", OWNER_PASSWORD)
        .await
        .expect("the owner logs in");
    owner
}

/// `tbot mock-server` as a process on a free port, keeping its work in `state_dir`;
/// its URL, read from the line it prints when it listens.
fn mock_server_process(state_dir: &std::path::Path) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tbot"))
        .args([
            "mock-server",
            "--listen",
            "127.0.0.1:0",
            "--agent-token",
            TOKEN,
            "--user",
            &format!("owner=site_owner:{OWNER_PASSWORD}"),
        ])
        .arg("--state-dir")
        .arg(state_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mock server starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut first)
        .expect("the listening line");
    let url = first.trim().rsplit(' ').next().expect("a URL").to_string();
    (child, url)
}

#[tokio::test]
async fn a_killed_job_side_keeps_every_change_it_acknowledged() {
    let saved = tempfile::tempdir().expect("state folder");
    let (mut server, url) = mock_server_process(saved.path());
    let owner = logged_in(&url).await;
    let mut jobs = Vec::new();
    for n in 0..5 {
        let job = owner
            .create_job(&format!("Job {n}"), Some("MC-77"), &["indigo".to_string()])
            .await
            .expect("job");
        owner
            .upload(&job, "page.pdf", sample_bytes(10_000, n))
            .await
            .expect("upload");
        jobs.push(job);
    }
    owner
        .post(&format!("/jobs/{}/approve", jobs[4]), json!({}))
        .await
        .expect("approve");
    // No clean stop: the last answer came back, then the process is gone.
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(saved.path().join("jobside.sqlite3").exists());

    let (mut server, url) = mock_server_process(saved.path());
    let owner = logged_in(&url).await;
    for (n, job) in jobs.iter().enumerate() {
        let shown = owner.get(&format!("/jobs/{job}")).await.expect("job kept");
        assert_eq!(shown["order_number"], json!("MC-77"), "{shown}");
        assert_eq!(shown["files"][0]["size"], json!(10_000), "{shown}");
        let expected = if n == 4 { "approved" } else { "in_progress" };
        assert_eq!(shown["state"], json!(expected), "{shown}");
    }
    server.kill().unwrap();
    server.wait().unwrap();
}

#[tokio::test]
async fn tbot_mock_create_job_with_a_file_it_cannot_read_creates_nothing() {
    let server = start_server(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let readable = dir.path().join("cover.pdf");
    std::fs::write(&readable, b"%PDF cover").unwrap();
    let missing = dir.path().join("content.pdf");
    let (readable, missing) = (
        readable.display().to_string(),
        missing.display().to_string(),
    );
    let output = run_tbot_mock(
        &server,
        &[
            "create-job",
            "--name",
            "Book",
            "--file",
            &readable,
            "--file",
            &missing,
        ],
    )
    .await;
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("cannot read") && said.contains("content.pdf"),
        "{said}"
    );
    let jobs = operator(&server, "owner").get("/jobs").await.unwrap();
    assert_eq!(jobs["jobs"], json!([]), "{jobs}");
    server.stop().await;
}

#[tokio::test]
async fn tbot_mock_reaches_an_order_whose_number_holds_a_slash() {
    let server = start_server(|_| {}).await;
    let owner = operator(&server, "owner");
    owner
        .post("/orders", json!({"number": "MC/7?x"}))
        .await
        .expect("order made");
    let output = run_tbot_mock(&server, &["--json", "order-details", "MC/7?x"]).await;
    let shown: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(shown["number"], json!("MC/7?x"), "{shown}");
    server.stop().await;
}

#[tokio::test]
async fn a_job_side_that_reuses_delivery_ids_gets_a_refusal_not_a_false_completion() {
    let floor = Floor::new(&["indigo"]);
    let server = start_server(|_| {}).await;
    let config = one_queue_config(&server.url(), &floor, "");
    let agent = RunningAgent::start(&config);
    let owner = operator(&server, "owner");
    wait_connected(&owner, &["indigo-7900"]).await;
    let first = send_file(
        &owner,
        "Cards",
        "indigo-7900",
        "cards.pdf",
        sample_bytes(5_000, 1),
    )
    .await;
    wait_deliveries_settled(&owner, &["completed"]).await;
    let address = server.addr;
    server.stop().await;

    // Started again without its saved state: its ids begin again at d-1, J-1001.
    let server = start_server_at(address, |_| {}).await;
    let owner = operator(&server, "owner");
    wait_connected(&owner, &["indigo-7900"]).await;
    let second = send_file(
        &owner,
        "Poster",
        "indigo-7900",
        "poster.pdf",
        sample_bytes(7_000, 2),
    )
    .await;
    assert_eq!(first, second, "the new server reuses the job id too");
    let settled = wait_deliveries_settled(&owner, &["completed", "failed"]).await;
    assert_eq!(settled[0]["state"], json!("failed"), "{settled:?}");
    let reason = settled[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("reuses delivery ids"), "{reason}");
    // The poster never reached the device, and nothing claimed it did.
    assert!(!visible_files(&floor.path("indigo"))
        .iter()
        .any(|name| name.contains("poster")));
    agent.stop().await;
    server.stop().await;
}
