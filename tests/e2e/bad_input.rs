//! Untrusted metadata from the server (PROTOCOL.md, "Bad input"): every bad case fails
//! its delivery for good, with a reason naming the problem, and writes nothing.

use std::time::Duration;

use serde_json::{json, Value};

use crate::scripted::{ScriptedServer, Seen};
use crate::support::*;

/// Sends one job per case and checks that each fails with `retryable: false`, a reason
/// containing the expected words, and nothing in the hotfolder.
#[tokio::test]
async fn every_bad_case_fails_its_delivery_and_writes_nothing() {
    let setup = OneQueue::start("max_file_size = \"1MiB\"").await;
    let (floor, owner) = (&setup.floor, &setup.owner);

    let long_name = format!("{}.pdf", "n".repeat(200));
    let cases: Vec<(Value, &str)> = vec![
        (
            json!([{"name": "../escape.pdf", "content": "x"}]),
            "path separator",
        ),
        (
            json!([{"name": "sub/dir.pdf", "content": "x"}]),
            "path separator",
        ),
        (
            json!([{"name": "back\\slash.pdf", "content": "x"}]),
            "path separator",
        ),
        (
            json!([{"name": "nul\u{0}byte.pdf", "content": "x"}]),
            "control character",
        ),
        (
            json!([{"name": "line\nbreak.pdf", "content": "x"}]),
            "control character",
        ),
        (json!([{"name": ".", "content": "x"}]), "folder reference"),
        (json!([{"name": "..", "content": "x"}]), "folder reference"),
        (
            json!([{"name": ".hidden.pdf", "content": "x"}]),
            "starts with a dot",
        ),
        (
            json!([{"name": long_name, "content": "x"}]),
            "more than 200",
        ),
        (
            json!([{"name": "CON", "content": "x"}]),
            "reserved device name",
        ),
        (
            json!([{"name": "com1.pdf", "content": "x"}]),
            "reserved device name",
        ),
        (json!([{"name": "", "content": "x"}]), "empty"),
        (
            json!([{"name": "same.pdf", "content": "x"}, {"name": "same.pdf", "content": "y"}]),
            "two files",
        ),
        (
            json!([{"name": "Case.pdf", "content": "x"}, {"name": "case.PDF", "content": "y"}]),
            "two files",
        ),
        (
            json!([{"name": "negative.pdf", "content": "x", "size": -1}]),
            "negative",
        ),
        (
            json!([{"name": "huge.pdf", "content": "x", "size": 2_000_000}]),
            "max_file_size",
        ),
        (
            json!([{"name": "sum.pdf", "content": "x", "sha256": "abc"}]),
            "64 hexadecimal",
        ),
        (
            json!([{"name": "sum.pdf", "content": "x", "sha256": "z".repeat(64)}]),
            "64 hexadecimal",
        ),
    ];
    let mut expected = Vec::new();
    for (index, (files, words)) in cases.iter().enumerate() {
        let job = approved_job(
            owner,
            &format!("Hostile {index}"),
            None,
            &["indigo-7900"],
            files.clone(),
        )
        .await;
        expected.push((job, *words));
    }
    let jobs: Vec<String> = expected.iter().map(|(job, _)| job.clone()).collect();
    let sent = owner.send(&jobs, None).await.unwrap();
    assert!(
        sent["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["ok"] == json!(true)),
        "{sent}"
    );

    let settled = wait_deliveries_settled(owner, &["failed"]).await;
    assert_eq!(settled.len(), cases.len());
    for (job, words) in &expected {
        let delivery = settled.iter().find(|d| d["job"] == json!(job)).unwrap();
        let reason = delivery["reason"].as_str().unwrap();
        assert!(
            reason.contains(words),
            "job {job}: reason {reason:?} does not say {words:?}"
        );
        let shown = owner.get(&format!("/jobs/{job}")).await.unwrap();
        assert_eq!(shown["state"], json!("production_error"));
        assert!(shown["error"].as_str().unwrap().contains(words));
    }
    assert!(
        visible_files(&floor.path("indigo")).is_empty(),
        "{:?}",
        visible_files(&floor.path("indigo"))
    );
    assert!(staged_files(&floor.path("indigo")).is_empty());
    assert!(!floor.dir.path().join("escape.pdf").exists());
    setup.stop().await;
}

/// A server that leaves out a field the agent needs gets that delivery failed by id,
/// for good, and the agent carries on.
#[tokio::test]
async fn a_delivery_with_a_missing_field_is_failed_by_id() {
    let server = ScriptedServer::builder()
        .claim_deliveries(vec![json!({
            "id": "d-77", "queue": "indigo-7900", "lease_expires_at": "2099-01-01T00:00:00Z",
            "job": {"id": "J-1", "name": "Cards", "order_number": null, "send_count": 1},
            "files": [{"name": "cards.pdf", "size": 4, "url": "/api/v1/agent/files/F-1"}]
        })])
        .start()
        .await;
    let floor = Floor::new(&["indigo"]);
    let agent = RunningAgent::start(&one_queue_config(&server.url, &floor, ""));
    let fail = wait_until(
        "the malformed delivery to be failed",
        Duration::from_secs(10),
        || {
            std::future::ready(
                server
                    .seen_ending("/deliveries/d-77/fail")
                    .first()
                    .map(Seen::json),
            )
        },
    )
    .await;
    assert_eq!(fail["retryable"], json!(false));
    assert!(
        fail["reason"].as_str().unwrap().contains("sha256"),
        "{fail}"
    );
    assert!(visible_files(&floor.path("indigo")).is_empty());
    agent.stop().await;
}
