//! After the drop: the job side hears when the device takes a file, and when a file
//! sits in the hotfolder too long.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// The events the server recorded for the only delivery.
async fn events(owner: &tbot::operator_client::OperatorClient) -> Vec<serde_json::Value> {
    deliveries(owner).await[0]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_file_the_device_takes_is_reported_picked_up() {
    let setup = OneQueue::start("").await;
    let (floor, owner) = (&setup.floor, &setup.owner);
    let job = send_file(
        owner,
        "Taken",
        "indigo-7900",
        "taken.pdf",
        b"plate".to_vec(),
    )
    .await;
    let dropped = floor.path("indigo").join(format!("{job}_taken.pdf"));
    wait_until("the drop", Duration::from_secs(20), || async {
        dropped.exists().then_some(())
    })
    .await;

    let taken_at = time::OffsetDateTime::now_utc();
    std::fs::remove_file(&dropped).unwrap();
    let seen = wait_until(
        "the pick-up to be reported",
        Duration::from_secs(20),
        || async {
            let events = events(owner).await;
            (!events.is_empty()).then_some(events)
        },
    )
    .await;
    // One event, and only once the file was gone: never while it sat there.
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["event"], json!("picked_up"));
    let at = time::OffsetDateTime::parse(
        seen[0]["at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        at >= taken_at - time::Duration::seconds(1),
        "reported at {at}, taken at {taken_at}"
    );
    assert_eq!(seen[0]["path"], json!(format!("{job}_taken.pdf")));
    setup.stop().await;
}

#[tokio::test]
async fn a_file_left_too_long_is_reported_stalled_and_the_queue_recovers() {
    let setup = OneQueue::start("stall_after = \"1s\"").await;
    let (floor, owner) = (&setup.floor, &setup.owner);
    let job = send_file(
        owner,
        "Waiting",
        "indigo-7900",
        "waiting.pdf",
        b"plate".to_vec(),
    )
    .await;
    let dropped = floor.path("indigo").join(format!("{job}_waiting.pdf"));

    let detail = wait_until(
        "the queue to be announced stalled",
        Duration::from_secs(20),
        || async {
            let queue = owner.get("/queues?all=true").await.ok()?["queues"][0].clone();
            (queue["status"] == json!("stalled"))
                .then(|| queue["detail"].as_str().unwrap_or_default().to_string())
        },
    )
    .await;
    assert!(
        detail.contains("1 dropped file") && detail.contains("not taking"),
        "{detail}"
    );
    let stalled = events(owner).await;
    assert_eq!(stalled.len(), 1, "{stalled:?}");
    assert_eq!(stalled[0]["event"], json!("stalled"));

    // The device comes back and takes the file.
    std::fs::remove_file(&dropped).unwrap();
    wait_until(
        "the queue to be ready again",
        Duration::from_secs(20),
        || async {
            let queue = owner.get("/queues?all=true").await.ok()?["queues"][0].clone();
            (queue["status"] == json!("ready")).then_some(())
        },
    )
    .await;
    let all: Vec<serde_json::Value> = events(owner)
        .await
        .into_iter()
        .map(|e| e["event"].clone())
        .collect();
    assert_eq!(all, [json!("stalled"), json!("picked_up")]);
    setup.stop().await;
}
