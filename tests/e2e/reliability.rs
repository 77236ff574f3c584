//! Nothing lost, nothing twice: resumed transfers, crashes, hotfolders that go away or
//! fill up, and a server that goes down and comes back.

use std::time::Duration;

use serde_json::json;
use tbot::agent::journal::{Journal, Step};
use tbot::operator_client::OperatorClient;

use crate::scripted::{delivery, Answer, ScriptedServer, Seen};
use crate::support::*;

/// Ranged requests that continued a file (`Range: bytes=N-` with N > 0, answered 206).
async fn resumed_ranges(owner: &OperatorClient) -> Vec<String> {
    requests(owner)
        .await
        .iter()
        .filter(|r| r["status"] == json!(206))
        .filter_map(|r| r["range"].as_str().map(String::from))
        .filter(|range| !range.starts_with("bytes=0-"))
        .collect()
}

#[tokio::test]
async fn a_broken_download_resumes_from_the_staged_bytes() {
    let setup = OneQueue::start("").await;
    let (floor, owner) = (&setup.floor, &setup.owner);
    // Every response is cut after 400 KiB: the 1 MiB file can only arrive in pieces.
    set_faults(owner, json!({"drop_after": 400 * 1024})).await;
    let bytes = sample_bytes(1024 * 1024, 7);
    let job = send_file(owner, "Resumable", "indigo-7900", "big.pdf", bytes.clone()).await;
    wait_deliveries_settled(owner, &["completed"]).await;

    assert_eq!(
        std::fs::read(floor.path("indigo").join(format!("{job}_big.pdf"))).unwrap(),
        bytes
    );
    let resumed = resumed_ranges(owner).await;
    assert!(
        resumed.contains(&format!("bytes={}-", 400 * 1024)),
        "no resumed range in {resumed:?}"
    );
    assert!(
        resumed.contains(&format!("bytes={}-", 800 * 1024)),
        "no second resume in {resumed:?}"
    );
    setup.stop().await;
}

#[tokio::test]
async fn a_server_that_ignores_ranges_gets_the_file_started_over() {
    let setup = OneQueue::start("").await;
    let (floor, owner) = (&setup.floor, &setup.owner);
    // The first download breaks after 400 KiB; by the time the agent asks for the
    // rest, the server answers every request with the whole file.
    set_faults(owner, json!({"drop_after": 400 * 1024})).await;
    let bytes = sample_bytes(1024 * 1024, 8);
    let job = send_file(
        owner,
        "No ranges",
        "indigo-7900",
        "whole.pdf",
        bytes.clone(),
    )
    .await;
    wait_until(
        "the first download to start",
        Duration::from_secs(10),
        || async {
            requests(owner)
                .await
                .iter()
                .any(|r| r["path"].as_str().is_some_and(|p| p.contains("/files/")))
                .then_some(())
        },
    )
    .await;
    set_faults(owner, json!({"ignore_ranges": true})).await;
    wait_deliveries_settled(owner, &["completed"]).await;

    assert_eq!(
        std::fs::read(floor.path("indigo").join(format!("{job}_whole.pdf"))).unwrap(),
        bytes
    );
    let ranged: Vec<serde_json::Value> = requests(owner)
        .await
        .into_iter()
        .filter(|r| !r["range"].is_null())
        .collect();
    assert!(
        ranged
            .iter()
            .any(|r| r["range"] == json!(format!("bytes={}-", 400 * 1024))
                && r["status"] == json!(200)),
        "no ranged request answered with the whole file: {ranged:?}"
    );
    setup.stop().await;
}

#[tokio::test]
async fn corrupted_bytes_are_thrown_away_and_fetched_again() {
    let setup = OneQueue::start("").await;
    let (floor, owner) = (&setup.floor, &setup.owner);
    set_faults(owner, json!({"seed": 3, "corrupt_rate": 0.5})).await;
    let bytes = sample_bytes(300 * 1024, 9);
    let job = send_file(
        owner,
        "Corrupted at times",
        "indigo-7900",
        "plate.tif",
        bytes.clone(),
    )
    .await;
    wait_until("the file to arrive", Duration::from_secs(60), || async {
        std::fs::read(floor.path("indigo").join(format!("{job}_plate.tif"))).ok()
    })
    .await;
    assert_eq!(
        std::fs::read(floor.path("indigo").join(format!("{job}_plate.tif"))).unwrap(),
        bytes
    );
    assert_eq!(visible_files(&floor.path("indigo")).len(), 1);
    let downloads = requests(owner)
        .await
        .iter()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.contains("/files/")))
        .count();
    assert!(
        downloads >= 2,
        "the corrupted download was never fetched again ({downloads} downloads)"
    );
    setup.stop().await;
}

/// A renewal answered `lease_lost` stops the delivery: its staged bytes are removed,
/// nothing is dropped and nothing is reported (another agent has it now).
#[tokio::test]
async fn a_lost_lease_stops_the_delivery_and_drops_nothing() {
    // The file answers after 5 s, so the transfer outlasts the first renewal, which the
    // server refuses: the lease went to another agent.
    let bytes = sample_bytes(2 * 1024 * 1024, 5);
    let lost = json!({"error": {"code": "lease_lost", "message": "leased to another agent"}});
    let server = ScriptedServer::builder()
        .file("/f/slow", bytes.clone(), Duration::from_secs(5))
        .renewals_then(Answer::json(409, lost))
        .claim_deliveries(vec![delivery(
            "d-5",
            time::OffsetDateTime::now_utc() + time::Duration::seconds(3),
            &[("slow.pdf", "/f/slow", &bytes)],
        )])
        .start()
        .await;
    let floor = Floor::new(&["indigo"]);
    let agent = RunningAgent::start(&one_queue_config(&server.url, &floor, ""));
    wait_until(
        "the delivery to end with its lease lost",
        Duration::from_secs(10),
        || {
            let step = Journal::open_read_only(&floor.path("state"))
                .ok()
                .and_then(|journal| journal.entry("d-5").ok().flatten())
                .map(|entry| entry.step);
            std::future::ready((step == Some(Step::LeaseLost)).then_some(()))
        },
    )
    .await;
    assert!(!server.seen_ending("/d-5/renew").is_empty());
    assert!(staged_files(&floor.path("indigo")).is_empty());
    assert!(visible_files(&floor.path("indigo")).is_empty());
    assert!(
        server.seen_ending("/complete").is_empty() && server.seen_ending("/fail").is_empty(),
        "a delivery whose lease is lost is not reported"
    );
    agent.stop().await;
}

#[tokio::test]
async fn sigkill_mid_transfer_resumes_after_restart_and_drops_once() {
    let (server, floor, owner, mut agent) = agent_process_on_one_queue("").await;
    set_faults(&owner, json!({"bytes_per_second": 4 * 1024 * 1024})).await;
    let bytes = sample_bytes(6 * 1024 * 1024, 11);
    let job = send_file(
        &owner,
        "Killed mid-way",
        "indigo-7900",
        "poster.pdf",
        bytes.clone(),
    )
    .await;

    let staged = wait_until(
        "part of the file to be staged",
        Duration::from_secs(20),
        || async {
            let dir = floor.path("indigo").join(".tbot");
            std::fs::read_dir(&dir)
                .ok()?
                .filter_map(Result::ok)
                .find_map(|e| {
                    let len = e.metadata().ok()?.len();
                    (len > 1024 * 1024).then_some(len)
                })
        },
    )
    .await;
    let status = agent.signal("KILL").await;
    assert!(!status.success());
    assert!(
        visible_files(&floor.path("indigo")).is_empty(),
        "a partial file became visible"
    );

    set_faults(&owner, json!({})).await;
    agent.restart();
    wait_deliveries_settled(&owner, &["completed"]).await;
    assert_eq!(
        visible_files(&floor.path("indigo")),
        [format!("{job}_poster.pdf")]
    );
    assert_eq!(
        std::fs::read(floor.path("indigo").join(format!("{job}_poster.pdf"))).unwrap(),
        bytes
    );
    let resumed = resumed_ranges(&owner).await;
    assert_eq!(
        resumed.len(),
        1,
        "expected one resumed request, got {resumed:?}"
    );
    let from: u64 = resumed[0]
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(
        from >= staged - 1024 * 1024 && from < bytes.len() as u64,
        "resumed from {from}, {staged} were staged"
    );
    assert!(
        agent.log().contains("carrying on after a restart"),
        "{}",
        agent.log()
    );
    agent.signal("TERM").await;
    server.stop().await;
}

#[tokio::test]
async fn a_missing_hotfolder_makes_its_queue_unavailable_until_it_is_back() {
    let setup = OneQueue::start("").await;
    let (floor, owner) = (&setup.floor, &setup.owner);

    std::fs::rename(floor.path("indigo"), floor.path("indigo-away")).unwrap();
    let detail = wait_until(
        "the queue to be announced unavailable",
        Duration::from_secs(10),
        || async {
            let queue = owner.get("/queues?all=true").await.ok()?["queues"][0].clone();
            (queue["status"] == json!("unavailable"))
                .then(|| queue["detail"].as_str().unwrap_or_default().to_string())
        },
    )
    .await;
    assert!(
        detail.contains("does not exist") && detail.contains("indigo"),
        "{detail}"
    );
    let job = send_file(
        owner,
        "Waits",
        "indigo-7900",
        "waits.pdf",
        b"waiting".to_vec(),
    )
    .await;
    two_more_checks(owner).await;
    assert_eq!(
        deliveries(owner).await[0]["state"],
        json!("pending"),
        "claimed for a queue that cannot take it"
    );

    std::fs::rename(floor.path("indigo-away"), floor.path("indigo")).unwrap();
    wait_deliveries_settled(owner, &["completed"]).await;
    assert_eq!(
        visible_files(&floor.path("indigo")),
        [format!("{job}_waits.pdf")]
    );
    assert_eq!(
        owner.get("/queues").await.unwrap()["queues"][0]["status"],
        json!("ready")
    );
    setup.stop().await;
}

#[tokio::test]
async fn a_full_disk_loses_nothing_and_the_queue_recovers() {
    let floor = Floor::new(&[]);
    let Some(disk) = SmallDisk::mount(floor.path("disk"), "12m") else {
        eprintln!("skipped: cannot mount a tmpfs here (not root)");
        return;
    };
    let hotfolder = disk.path.join("indigo");
    std::fs::create_dir_all(&hotfolder).unwrap();
    let server = start_server(|_| {}).await;
    let config = agent_config_text(
        &server.url(),
        TOKEN,
        &floor.path("state"),
        &[("indigo-7900", "printer", &hotfolder)],
        "",
    );
    let agent = RunningAgent::start(&config);
    let owner = operator(&server, "owner");
    wait_connected(&owner, &["indigo-7900"]).await;

    // Three 5 MiB files staged side by side do not fit on 12 MiB: one runs out of
    // space mid-transfer.
    set_faults(&owner, json!({"bytes_per_second": 8 * 1024 * 1024})).await;
    let mut jobs = Vec::new();
    for n in 0..3u64 {
        jobs.push(
            send_file(
                &owner,
                &format!("Big {n}"),
                "indigo-7900",
                "big.pdf",
                sample_bytes(5 * 1024 * 1024, n),
            )
            .await,
        );
    }
    let reason = wait_until(
        "a delivery to fail for lack of space",
        Duration::from_secs(30),
        || async {
            deliveries(&owner).await.iter().find_map(|d| {
                d["last_failure"]
                    .as_str()
                    .filter(|r| r.contains("space"))
                    .map(String::from)
            })
        },
    )
    .await;
    assert!(
        reason.contains("No space left") || reason.contains("not enough space"),
        "{reason}"
    );

    // Something else fills the disk: the queue is announced unavailable. The filler is
    // topped up while waiting, as transfers that fail give their space back.
    let filler = disk.path.join("filler");
    let detail = wait_until(
        "the full disk to make the queue unavailable",
        Duration::from_secs(30),
        || async {
            let free = fs4::available_space(&disk.path).unwrap();
            if free > 512 * 1024 {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&filler)
                    .unwrap();
                let _ =
                    std::io::Write::write_all(&mut file, &vec![0u8; (free - 256 * 1024) as usize]);
            }
            let queue = owner.get("/queues?all=true").await.ok()?["queues"][0].clone();
            (queue["status"] == json!("unavailable"))
                .then(|| queue["detail"].as_str().unwrap_or_default().to_string())
        },
    )
    .await;
    assert!(detail.contains("full"), "{detail}");
    std::fs::remove_file(&filler).unwrap();

    // The device takes what arrives; the queue recovers and the rest arrives, whole.
    let mut seen = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        for name in visible_files(&hotfolder) {
            let path = hotfolder.join(&name);
            assert_eq!(
                std::fs::metadata(&path).unwrap().len(),
                5 * 1024 * 1024,
                "{name} is partial"
            );
            assert!(seen.insert(name.clone()), "{name} was dropped twice");
            std::fs::remove_file(path).unwrap();
        }
        if deliveries(&owner)
            .await
            .iter()
            .all(|d| d["state"] == json!("completed"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for every delivery to complete"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen.extend(visible_files(&hotfolder));
    let expected: std::collections::BTreeSet<String> =
        jobs.iter().map(|job| format!("{job}_big.pdf")).collect();
    assert_eq!(seen, expected);
    assert!(staged_files(&hotfolder).is_empty());
    agent.stop().await;
    server.stop().await;
    drop(disk);
}

#[tokio::test]
async fn a_server_that_goes_down_and_comes_back_loses_no_report_and_floods_no_log() {
    let (server, floor, owner, mut agent) = agent_process_on_one_queue("").await;

    // The file is on its way when the server goes down: the drop happens, the report
    // waits in the journal, and goes out when the server is back.
    set_faults(&owner, json!({"bytes_per_second": 1024 * 1024})).await;
    let job = send_file(
        &owner,
        "During an outage",
        "indigo-7900",
        "a.pdf",
        sample_bytes(1024 * 1024, 5),
    )
    .await;
    wait_until("the transfer to start", Duration::from_secs(10), || async {
        (!staged_files(&floor.path("indigo")).is_empty()).then_some(())
    })
    .await;
    set_faults(
        &owner,
        json!({"bytes_per_second": 1024 * 1024, "down_for": "6s"}),
    )
    .await;
    wait_until(
        "the file to be dropped",
        Duration::from_secs(10),
        || async { (!visible_files(&floor.path("indigo")).is_empty()).then_some(()) },
    )
    .await;

    // The file is visible a moment before its report is journaled: wait for that.
    let status = wait_until(
        "the report to wait in the journal",
        Duration::from_secs(10),
        || async {
            let status = std::process::Command::new(env!("CARGO_BIN_EXE_tbot"))
                .args(["status", "--json", "--config"])
                .arg(floor.dir.path().join("tbot.toml"))
                .output()
                .unwrap();
            let shown: serde_json::Value = serde_json::from_slice(&status.stdout).ok()?;
            (shown["queues"][0]["waiting_reports"][0]["kind"] == json!("complete"))
                .then_some(status)
        },
    )
    .await;
    assert!(!String::from_utf8_lossy(&status.stdout).contains(TOKEN));
    let text = std::process::Command::new(env!("CARGO_BIN_EXE_tbot"))
        .args(["status", "--config"])
        .arg(floor.dir.path().join("tbot.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("queue indigo-7900")
            && text.contains("waiting to be reported:")
            && text.contains("d-1  complete"),
        "{text}"
    );
    assert_eq!(deliveries(&owner).await[0]["state"], json!("leased"));

    wait_deliveries_settled(&owner, &["completed"]).await;
    assert_eq!(
        visible_files(&floor.path("indigo")),
        [format!("{job}_a.pdf")]
    );
    agent.signal("TERM").await;
    let log = agent.log();
    assert_eq!(log.matches("lost the connection").count(), 1, "{log}");
    assert_eq!(
        log.matches("connection to the server is back").count(),
        1,
        "{log}"
    );
    server.stop().await;
}

/// A server that hands a delivery out again after the agent dropped it (its complete
/// report was lost and the lease ran out) gets it reported, not dropped a second time.
#[tokio::test]
async fn a_delivery_handed_out_again_after_its_drop_is_reported_not_dropped_twice() {
    // The first `complete` is lost (503); the lease "expires" and the server hands the
    // delivery out again, once the agent has tried to report it.
    let body = b"plate bytes".to_vec();
    let lease = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let mut d9 = delivery("d-9", lease, &[("plate.tif", "/f/9", &body)]);
    d9["job"] = json!({"id": "J-9", "name": "Plates", "order_number": null, "send_count": 1});
    let down = json!({"error": {"code": "down", "message": "lost"}});
    let server = ScriptedServer::builder()
        .file("/f/9", body, Duration::ZERO)
        .claim_deliveries(vec![d9.clone()])
        .claim_deliveries_after("/deliveries/d-9/complete", vec![d9])
        .complete_once(Answer::json(503, down.clone()))
        .complete_once(Answer::json(503, down.clone()))
        .complete_once(Answer::json(503, down.clone()))
        .complete_once(Answer::json(503, down))
        .start()
        .await;
    let floor = Floor::new(&["indigo"]);
    let agent = RunningAgent::start(&one_queue_config(&server.url, &floor, ""));
    let report = wait_until(
        "the complete report to be taken",
        Duration::from_secs(30),
        || {
            let taken = server
                .seen_ending("/deliveries/d-9/complete")
                .get(4)
                .map(Seen::json);
            std::future::ready(taken)
        },
    )
    .await;
    let completes = server.seen_ending("/deliveries/d-9/complete");
    assert!(
        server
            .seen_ending("/claim")
            .iter()
            .any(|claim| claim.at > completes[0].at && claim.at < completes[4].at),
        "the delivery was not handed out again"
    );
    assert_eq!(report["files"][0]["path"], json!("J-9_plate.tif"));
    assert_eq!(
        visible_files(&floor.path("indigo")),
        ["J-9_plate.tif"],
        "dropped twice"
    );
    assert_eq!(server.seen_ending("/f/9").len(), 1, "fetched twice");
    agent.stop().await;
}

/// The journal knows deliveries by one server's ids: an agent pointed at another job
/// side with the same state refuses to start, saying why, rather than mistake a reused
/// id for a delivery it already dropped.
#[tokio::test]
async fn a_journal_belongs_to_one_job_side() {
    let first = start_server(|_| {}).await;
    let second = start_server(|_| {}).await;
    let floor = Floor::new(&["indigo"]);
    let agent = RunningAgent::start(&one_queue_config(&first.url(), &floor, ""));
    agent.stop().await;

    let config =
        tbot::config::Config::parse(&one_queue_config(&second.url(), &floor, ""), None).unwrap();
    let client = tbot::agent::client::JobSideClient::new(&config.server).unwrap();
    let refused = tbot::agent::Agent::with_client(config, client, tbot::control::Control::new())
        .err()
        .expect("an agent on another job side's journal was started")
        .to_string();
    assert!(
        refused.contains(&first.url()) && refused.contains("state_dir"),
        "{refused}"
    );
    first.stop().await;
    second.stop().await;
}
