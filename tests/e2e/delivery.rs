//! Deliveries end to end: files land whole, verified and once, named by the queue's
//! rule, and bad bytes never land.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use crate::scripted::ScriptedServer;
use crate::support::*;

#[tokio::test]
async fn multi_file_jobs_reach_every_chosen_queue_verified() {
    let server = start_server(|_| {}).await;
    let floor = Floor::new(&["indigo", "ctp"]);
    let config = agent_config_text(
        &server.url(),
        TOKEN,
        &floor.path("state"),
        &[
            ("indigo-7900", "printer", &floor.path("indigo")),
            ("trendsetter", "ctp", &floor.path("ctp")),
        ],
        "",
    );
    let agent = RunningAgent::start(&config);
    let owner = operator(&server, "owner");
    wait_connected(&owner, &["indigo-7900", "trendsetter"]).await;

    let cards = approved_job(
        &owner,
        "Business cards - Smith",
        Some("MC-5521"),
        &["indigo-7900", "trendsetter"],
        json!([{"name": "front.pdf", "content": "front side"}, {"name": "back.pdf", "content": "back side"}]),
    )
    .await;
    let flyer = approved_job(
        &owner,
        "Flyer",
        None,
        &["trendsetter"],
        json!([{"name": "flyer.pdf", "content": "flyer"}]),
    )
    .await;
    let sent = owner
        .send(&[cards.clone(), flyer.clone()], None)
        .await
        .unwrap();
    assert_eq!(
        sent["results"][0]["deliveries"].as_array().unwrap().len(),
        2,
        "{sent}"
    );
    assert_eq!(sent["results"][1]["ok"], json!(true), "{sent}");

    let settled = wait_deliveries_settled(&owner, &["completed"]).await;
    assert_eq!(settled.len(), 3);
    assert_eq!(
        visible_files(&floor.path("indigo")),
        [
            format!("MC-5521_{cards}_back.pdf"),
            format!("MC-5521_{cards}_front.pdf")
        ]
    );
    assert_eq!(
        visible_files(&floor.path("ctp")),
        [
            format!("{flyer}_flyer.pdf"),
            format!("MC-5521_{cards}_back.pdf"),
            format!("MC-5521_{cards}_front.pdf")
        ]
    );
    assert_eq!(
        std::fs::read_to_string(floor.path("ctp").join(format!("{flyer}_flyer.pdf"))).unwrap(),
        "flyer"
    );
    // The reported paths and checksums are those of the files on disk.
    for delivery in &settled {
        let folder = if delivery["queue"] == json!("indigo-7900") {
            "indigo"
        } else {
            "ctp"
        };
        for file in delivery["files"].as_array().unwrap() {
            let on_disk = floor.path(folder).join(file["path"].as_str().unwrap());
            assert_eq!(sha256_file(&on_disk), file["sha256"].as_str().unwrap());
        }
    }
    for job in [&cards, &flyer] {
        assert_eq!(
            owner.get(&format!("/jobs/{job}")).await.unwrap()["state"],
            json!("sent_to_production")
        );
    }
    assert!(staged_files(&floor.path("indigo")).is_empty());
    agent.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn send_again_keeps_the_first_copy_and_adds_a_second() {
    let setup = OneQueue::start("").await;
    let (floor, owner) = (&setup.floor, &setup.owner);

    let job = approved_job(
        owner,
        "Poster",
        Some("MC-1"),
        &["indigo-7900"],
        json!([{"name": "poster.pdf", "content": "v1"}]),
    )
    .await;
    owner.send(std::slice::from_ref(&job), None).await.unwrap();
    wait_deliveries_settled(owner, &["completed"]).await;
    let first = floor.path("indigo").join(format!("MC-1_{job}_poster.pdf"));
    let first_modified = std::fs::metadata(&first).unwrap().modified().unwrap();

    let again = owner.send(std::slice::from_ref(&job), None).await.unwrap();
    assert_eq!(again["results"][0]["ok"], json!(true), "{again}");
    let settled = wait_until("the second delivery", Duration::from_secs(20), || async {
        let all = deliveries(owner).await;
        (all.len() == 2 && all.iter().all(|d| d["state"] == json!("completed"))).then_some(all)
    })
    .await;
    assert_ne!(settled[0]["id"], settled[1]["id"]);
    assert_eq!(settled[1]["send_count"], json!(2));
    assert_eq!(
        visible_files(&floor.path("indigo")),
        [
            format!("MC-1_{job}_poster.pdf"),
            format!("MC-1_{job}_poster_2.pdf")
        ]
    );
    assert_eq!(
        std::fs::metadata(&first).unwrap().modified().unwrap(),
        first_modified,
        "the first copy was touched"
    );
    setup.stop().await;
}

#[tokio::test]
async fn bytes_that_do_not_match_never_reach_the_hotfolder() {
    let setup = OneQueue::start("").await;
    let (floor, owner) = (&setup.floor, &setup.owner);

    let wrong_sum = "0".repeat(64);
    let corrupted = approved_job(
        owner,
        "Corrupted",
        None,
        &["indigo-7900"],
        json!([{"name": "a.pdf", "content": "real bytes", "sha256": wrong_sum}]),
    )
    .await;
    let truncated = approved_job(
        owner,
        "Truncated",
        None,
        &["indigo-7900"],
        json!([{"name": "b.pdf", "content": "short", "size": 5000}]),
    )
    .await;
    owner.send(&[corrupted, truncated], None).await.unwrap();

    let failures = wait_until(
        "both deliveries to fail as retryable",
        Duration::from_secs(30),
        || async {
            let all = deliveries(owner).await;
            let reasons: Vec<String> = all
                .iter()
                .filter_map(|d| d["last_failure"].as_str().map(String::from))
                .collect();
            (reasons.len() == 2).then_some(reasons)
        },
    )
    .await;
    assert!(
        failures
            .iter()
            .any(|r| r.contains("checksum mismatch") && r.contains("3 attempts")),
        "{failures:?}"
    );
    assert!(
        failures
            .iter()
            .any(|r| r.contains("5000") && r.contains("b.pdf")),
        "{failures:?}"
    );
    // Retryable: back to pending for another try, never failed for good.
    assert!(deliveries(owner)
        .await
        .iter()
        .all(|d| d["state"] != json!("failed")));
    assert!(visible_files(&floor.path("indigo")).is_empty());
    assert!(staged_files(&floor.path("indigo")).is_empty());
    setup.stop().await;
}

#[tokio::test]
async fn two_agents_serving_one_queue_drop_each_delivery_once() {
    let server = start_server(|_| {}).await;
    let floor = Floor::new(&["shared"]);
    let agents: Vec<RunningAgent> = [(TOKEN, "state-a"), (TOKEN_2, "state-b")]
        .iter()
        .map(|(token, state)| {
            RunningAgent::start(&agent_config_text(
                &server.url(),
                token,
                &floor.path(state),
                &[("indigo-7900", "printer", &floor.path("shared"))],
                "",
            ))
        })
        .collect();
    let owner = operator(&server, "owner");
    wait_until(
        "both agents to announce the queue",
        Duration::from_secs(10),
        || async {
            let queues = owner.get("/queues").await.ok()?;
            (queues["queues"][0]["agents"].as_array()?.len() == 2).then_some(())
        },
    )
    .await;

    let mut jobs = Vec::new();
    for n in 0..24 {
        let content = format!("job {n} ").repeat(1000);
        jobs.push(
            approved_job(
                &owner,
                &format!("Job {n}"),
                Some("MC-9"),
                &["indigo-7900"],
                json!([{"name": "page.pdf", "content": content}]),
            )
            .await,
        );
    }
    owner.send(&jobs, None).await.unwrap();
    let settled = wait_deliveries_settled(&owner, &["completed"]).await;
    assert_eq!(settled.len(), 24);
    let expected: Vec<String> = {
        let mut names: Vec<String> = jobs
            .iter()
            .map(|job| format!("MC-9_{job}_page.pdf"))
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        visible_files(&floor.path("shared")),
        expected,
        "a delivery was dropped twice or not at all"
    );
    let served_by: BTreeSet<String> = settled
        .iter()
        .map(|d| d["agent"].as_str().unwrap().to_string())
        .collect();
    assert!(!served_by.is_empty());
    for agent in agents {
        agent.stop().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_file_on_another_host_is_fetched_without_the_token() {
    // A stand-in for object storage on another origin, recording what it is sent.
    let storage = ScriptedServer::builder()
        .file("/bucket/plate.tif", b"plate bytes".to_vec(), Duration::ZERO)
        .start()
        .await;
    let storage_url = format!("{}/bucket/plate.tif", storage.url);

    let server = start_server(|_| {}).await;
    let floor = Floor::new(&["ctp"]);
    let config = agent_config_text(
        &server.url(),
        TOKEN,
        &floor.path("state"),
        &[("trendsetter", "ctp", &floor.path("ctp"))],
        "",
    );
    let agent = RunningAgent::start(&config);
    let owner = operator(&server, "owner");
    wait_connected(&owner, &["trendsetter"]).await;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"plate bytes"));
    let job = approved_job(
        &owner,
        "Plates",
        None,
        &["trendsetter"],
        json!([{"name": "plate.tif", "url": storage_url, "size": 11, "sha256": sha}]),
    )
    .await;
    owner.send(std::slice::from_ref(&job), None).await.unwrap();
    wait_deliveries_settled(&owner, &["completed"]).await;

    assert_eq!(
        std::fs::read_to_string(floor.path("ctp").join(format!("{job}_plate.tif"))).unwrap(),
        "plate bytes"
    );
    let seen = storage.seen();
    assert!(!seen.is_empty(), "the storage host was never asked");
    assert!(
        seen.iter().all(|request| request.authorization.is_none()),
        "the token went to another host: {seen:?}"
    );
    agent.stop().await;
    server.stop().await;
}

/// The agent keeps its connections to the job side open and reuses them: many
/// deliveries' requests arrive over a handful of connections (the mock server records
/// each request's client address and port), not one connection each.
#[tokio::test]
async fn many_deliveries_share_a_few_connections() {
    let setup = OneQueue::start("").await;
    const JOBS: u64 = 12;
    for n in 0..JOBS {
        let name = format!("Flyer {n}");
        let file = format!("flyer{n}.pdf");
        let bytes = sample_bytes(20_000, n);
        send_file(&setup.owner, &name, "indigo-7900", &file, bytes).await;
    }
    let settled = wait_deliveries_settled(&setup.owner, &["completed"]).await;
    assert_eq!(settled.len(), JOBS as usize);
    let requests = requests(&setup.owner).await;
    let connections: BTreeSet<&str> = requests
        .iter()
        .map(|r| r["client"].as_str().expect("each request names its client"))
        .collect();
    // Each delivery needs at least a file download and a report.
    assert!(requests.len() >= 2 * JOBS as usize, "{requests:?}");
    // Up to `concurrency` (4) transfers, the claim, the heartbeat and the reporter can
    // each hold one at once.
    assert!(
        connections.len() <= 7,
        "{} requests came over {} connections: {connections:?}",
        requests.len(),
        connections.len()
    );
    setup.stop().await;
}

/// `concurrency` bounds the deliveries in flight: with 2, six slow transfers never have
/// more than two files downloading at once, and do have two.
#[tokio::test]
async fn concurrency_bounds_the_deliveries_in_flight() {
    let setup = OneQueue::start_edited("", |config| {
        config.replace("concurrency = 4", "concurrency = 2")
    })
    .await;
    let owner = &setup.owner;
    // 256 KiB at 1 MiB/s: about a quarter of a second a file.
    set_faults(owner, json!({"bytes_per_second": 1024 * 1024})).await;
    const JOBS: u64 = 6;
    for n in 0..JOBS {
        let name = format!("Poster {n}");
        let file = format!("poster{n}.pdf");
        let bytes = sample_bytes(256 * 1024, n);
        send_file(owner, &name, "indigo-7900", &file, bytes).await;
    }
    let hotfolder = setup.floor.path("indigo");
    let most = most_downloading_until_visible(&hotfolder, 256 * 1024, JOBS as usize).await;
    assert_eq!(most, 2, "files downloading at once, with concurrency = 2");
    setup.stop().await;
}

/// The files of one delivery transfer side by side: a CTP job of three separations
/// has all three downloading at once.
#[tokio::test]
async fn the_files_of_a_delivery_transfer_side_by_side() {
    let setup = OneQueue::start("").await;
    // 256 KiB at 1 MiB/s: about a quarter of a second a file.
    set_faults(&setup.owner, json!({"bytes_per_second": 1024 * 1024})).await;
    let plate = "x".repeat(256 * 1024);
    let separations = json!([
        {"name": "poster-cyan.tif", "content": plate},
        {"name": "poster-magenta.tif", "content": plate},
        {"name": "poster-yellow.tif", "content": plate},
    ]);
    let job = approved_job(&setup.owner, "Poster", None, &["indigo-7900"], separations).await;
    setup.owner.send(&[job], None).await.expect("sent");
    let hotfolder = setup.floor.path("indigo");
    let most = most_downloading_until_visible(&hotfolder, 256 * 1024, 3).await;
    assert_eq!(most, 3, "separations downloading at once");
    setup.stop().await;
}

#[tokio::test]
async fn an_empty_file_is_dropped_and_reported_like_any_other() {
    let setup = OneQueue::start("").await;
    let (floor, owner) = (&setup.floor, &setup.owner);
    let job = send_file(owner, "Blank", "indigo-7900", "blank.pdf", Vec::new()).await;
    wait_deliveries_settled(owner, &["completed"]).await;
    let dropped = floor.path("indigo").join(format!("{job}_blank.pdf"));
    assert_eq!(std::fs::metadata(&dropped).unwrap().len(), 0);
    // The device may be another user: a dropped file gets the permissions of any new
    // file, not those of tbot's private staging folder.
    let reference = floor.path("indigo").join("made-by-hand.txt");
    std::fs::write(&reference, "").unwrap();
    let mode = |path: &std::path::Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions())
    };
    assert_eq!(mode(&dropped) & 0o777, mode(&reference) & 0o777);
    assert!(staged_files(&floor.path("indigo")).is_empty());
    setup.stop().await;
}
