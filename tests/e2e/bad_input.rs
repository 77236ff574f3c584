//! Untrusted metadata from the server (PROTOCOL.md, "Bad input"): every bad case fails
//! its delivery for good, with a reason naming the problem, and writes nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::Json;
use serde_json::{json, Value};

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
    let fails: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let recorder = fails.clone();
    let claims = Arc::new(Mutex::new(0));
    let app = axum::Router::new()
        .route(
            "/api/v1/agent/heartbeat",
            post(|| async { Json(json!({"server_time": "2026-11-21T10:00:00Z", "check_interval_s": null, "extra": 1})) }),
        )
        .route(
            "/api/v1/agent/claim",
            post(move || {
                let claims = claims.clone();
                async move {
                    let mut count = claims.lock().unwrap();
                    *count += 1;
                    let deliveries = if *count == 1 {
                        json!([{
                            "id": "d-77", "queue": "indigo-7900", "lease_expires_at": "2099-01-01T00:00:00Z",
                            "job": {"id": "J-1", "name": "Cards", "order_number": null, "send_count": 1},
                            "files": [{"name": "cards.pdf", "size": 4, "url": "/api/v1/agent/files/F-1"}]
                        }])
                    } else {
                        json!([])
                    };
                    Json(json!({ "deliveries": deliveries }))
                }
            }),
        )
        .route(
            "/api/v1/agent/deliveries/{id}/fail",
            post(move |axum::extract::Path(id): axum::extract::Path<String>, Json(body): Json<Value>| {
                let recorder = recorder.clone();
                async move {
                    recorder.lock().unwrap().push((id, body));
                    Json(json!({}))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let floor = Floor::new(&["indigo"]);
    let agent = RunningAgent::start(&one_queue_config(&url, &floor, ""));
    let (id, body) = wait_until(
        "the malformed delivery to be failed",
        Duration::from_secs(10),
        || async { fails.lock().unwrap().first().cloned() },
    )
    .await;
    assert_eq!(id, "d-77");
    assert_eq!(body["retryable"], json!(false));
    assert!(
        body["reason"].as_str().unwrap().contains("sha256"),
        "{body}"
    );
    assert!(visible_files(&floor.path("indigo")).is_empty());
    agent.stop().await;
}
