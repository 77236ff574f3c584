//! Reacting between checks: with long polling, a job sent on the server starts long
//! before the next check; without it, the agent still works at its check interval
//! and does not hammer the server.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

fn config(server_url: &str, floor: &Floor, check_interval: &str) -> String {
    one_queue_config(server_url, floor, "").replace(
        "check_interval = \"200ms\"",
        &format!("check_interval = \"{check_interval}\""),
    )
}

fn claims(requests: &[serde_json::Value]) -> usize {
    requests
        .iter()
        .filter(|r| r["path"] == json!("/api/v1/agent/claim"))
        .count()
}

#[tokio::test]
async fn a_job_sent_between_checks_starts_at_once_with_long_polling() {
    let server = start_server(|_| {}).await;
    let floor = Floor::new(&["indigo"]);
    let agent = RunningAgent::start(&config(&server.url(), &floor, "5m"));
    let owner = operator(&server, "owner");
    wait_connected(&owner, &["indigo-7900"]).await;
    // Once the agent's claim is held open on the server, send: only that claim can
    // pick the job up, the next check is five minutes away.
    wait_until(
        "the claim to be held open",
        Duration::from_secs(10),
        || async {
            let held = owner.get("/requests").await.ok()?["held_claims"].as_u64()?;
            (held >= 1).then_some(())
        },
    )
    .await;
    let job = send_file(
        &owner,
        "Urgent",
        "indigo-7900",
        "urgent.pdf",
        b"now".to_vec(),
    )
    .await;
    wait_until(
        "the job to reach the hotfolder between checks",
        Duration::from_secs(20),
        || async {
            visible_files(&floor.path("indigo"))
                .contains(&format!("{job}_urgent.pdf"))
                .then_some(())
        },
    )
    .await;
    assert!(
        claims(&requests(&owner).await) <= 3,
        "claims were not held: {:?}",
        requests(&owner).await
    );
    agent.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_server_that_does_not_hold_claims_is_served_at_the_check_interval() {
    let server = start_server(|settings| settings.model.hold_claims = false).await;
    let floor = Floor::new(&["indigo"]);
    let agent = RunningAgent::start(&config(&server.url(), &floor, "1s"));
    let owner = operator(&server, "owner");
    wait_connected(&owner, &["indigo-7900"]).await;
    let job = send_file(
        &owner,
        "Routine",
        "indigo-7900",
        "routine.pdf",
        b"later".to_vec(),
    )
    .await;
    wait_until(
        "the job to arrive at a check",
        Duration::from_secs(20),
        || async {
            visible_files(&floor.path("indigo"))
                .contains(&format!("{job}_routine.pdf"))
                .then_some(())
        },
    )
    .await;
    // Three more claims come at the next checks (the wait fails if the checks stop),
    // and no sooner than checks a second apart allow.
    let before = claims(&requests(&owner).await);
    let started = std::time::Instant::now();
    wait_until(
        "three more claims at the checks",
        Duration::from_secs(20),
        || async { (claims(&requests(&owner).await) >= before + 3).then_some(()) },
    )
    .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "3 claims in {took:?} with a 1 s check interval: a busy loop"
    );
    agent.stop().await;
    server.stop().await;
}
