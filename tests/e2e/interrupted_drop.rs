//! Drops that did not finish: cut by a power failure half-way through the moves, or
//! failed after some files were in. The journal is set up as each leaves it, then the
//! real agent starts on it against a scripted server. A file already in the hotfolder
//! never moves again, and after a restart nothing more moves before the lease is
//! renewed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use tbot::agent::hotfolder::Hotfolder;
use tbot::agent::journal::{Journal, Step};
use tbot::protocol::Delivery;
use time::OffsetDateTime;

use crate::scripted::*;
use crate::support::*;

/// The journal of an agent serving `floor`'s `indigo` hotfolder for `server`, as an
/// agent that ran before left it, and the hotfolder's private staging folder.
pub fn earlier_journal(floor: &Floor, server: &ScriptedServer) -> Journal {
    let staging = floor.path("indigo").join(".tbot");
    std::fs::create_dir(&staging).unwrap();
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::create_dir(floor.path("state")).unwrap();
    let journal = Journal::open(&floor.path("state")).unwrap();
    let url = url::Url::parse(&server.url).unwrap();
    journal.bind_server(url.as_str()).unwrap();
    journal
}

/// Delivery `id` of job `job`, files `a.pdf` (`/f/a`) and `b.pdf` (`/f/b`), leased for
/// five more minutes, as a claim answer holds it.
pub fn two_file_delivery(id: &str, job: &str, a: &[u8], b: &[u8]) -> serde_json::Value {
    let mut claim = delivery(
        id,
        OffsetDateTime::now_utc() + time::Duration::minutes(5),
        &[("a.pdf", "/f/a", a), ("b.pdf", "/f/b", b)],
    );
    claim["job"]["id"] = json!(job);
    claim
}

/// Journals the claim of delivery `id` of job `job` with `a.pdf` and `b.pdf`; returns
/// the hotfolder as the journal's agent names its staged files.
pub fn claimed(
    journal: &Journal,
    hotfolder: &Path,
    id: &str,
    job: &str,
    a: &[u8],
    b: &[u8],
) -> Hotfolder {
    let claim: Delivery = serde_json::from_value(two_file_delivery(id, job, a, b)).unwrap();
    journal.record_claim(&claim).unwrap();
    Hotfolder::new(hotfolder, &journal.instance().unwrap())
}

/// Journals `id` (job `job`, files `a.pdf` and `b.pdf`) with `a.pdf` in the hotfolder
/// already and `b.pdf` verified in staging, its move journaled but not made.
fn half_dropped(journal: &Journal, hotfolder: &Path, id: &str, job: &str, a: &[u8], b: &[u8]) {
    let staging = claimed(journal, hotfolder, id, job, a, b);
    let names = [
        (0, format!("MC-1_{job}_a.pdf")),
        (1, format!("MC-1_{job}_b.pdf")),
    ];
    journal.record_drop_names(id, &names).unwrap();
    std::fs::write(hotfolder.join(&names[0].1), a).unwrap();
    journal.set_dropped(id, 0).unwrap();
    let staged = staging.staged_name(id, 1);
    std::fs::write(hotfolder.join(".tbot").join(staged), b).unwrap();
}

#[tokio::test]
async fn an_interrupted_drop_is_renewed_first_and_a_refused_renewal_moves_nothing_more() {
    let (a, b) = (sample_bytes(5000, 1), sample_bytes(7000, 2));
    let lost = json!({"error": {"code": "lease_lost", "message": "leased to another agent"}});
    let server = ScriptedServer::builder()
        .file("/f/a", a.clone(), Duration::ZERO)
        .file("/f/b", b.clone(), Duration::ZERO)
        .at(
            "/api/v1/agent/deliveries/d-lost/renew",
            Answer::json(409, lost),
            Duration::ZERO,
        )
        .start()
        .await;
    let floor = Floor::new(&["indigo"]);
    let hotfolder = floor.path("indigo");
    {
        let journal = earlier_journal(&floor, &server);
        half_dropped(&journal, &hotfolder, "d-lost", "J-lost", &a, &b);
        half_dropped(&journal, &hotfolder, "d-kept", "J-kept", &a, &b);
    }

    let agent = RunningAgent::start(&one_queue_config(&server.url, &floor, ""));
    let complete = wait_until("d-kept to be completed", Duration::from_secs(20), || {
        let seen = server.seen_ending("/deliveries/d-kept/complete");
        std::future::ready(seen.first().map(Seen::json))
    })
    .await;
    wait_until("d-lost to end", Duration::from_secs(20), || {
        let journal = Journal::open_read_only(&floor.path("state")).unwrap();
        let entry = journal.entry("d-lost").unwrap().unwrap();
        std::future::ready((entry.step == Step::LeaseLost).then_some(()))
    })
    .await;

    let paths: Vec<&str> = complete["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["MC-1_J-kept_a.pdf", "MC-1_J-kept_b.pdf"]);
    assert_eq!(
        visible_files(&hotfolder),
        [
            "MC-1_J-kept_a.pdf",
            "MC-1_J-kept_b.pdf",
            "MC-1_J-lost_a.pdf"
        ],
        "d-lost moved a file after its lease was refused, or a file moved twice"
    );
    assert_eq!(
        std::fs::read(hotfolder.join("MC-1_J-kept_b.pdf")).unwrap(),
        b
    );
    assert!(staged_files(&hotfolder).is_empty());
    assert!(server.seen_ending("/deliveries/d-lost/complete").is_empty());
    let kept_renewed = server.seen_ending("/deliveries/d-kept/renew");
    assert!(
        !kept_renewed.is_empty(),
        "d-kept moved on without a renewal"
    );
    assert!(server.seen_ending("/f/a").is_empty() && server.seen_ending("/f/b").is_empty());
    let config = tbot::config::Config::parse(&one_queue_config(&server.url, &floor, ""), None);
    let status = tbot::status::read(&config.unwrap()).unwrap();
    let failure = status.queues[0]
        .failures
        .iter()
        .find(|f| f.delivery == "d-lost")
        .expect("d-lost shown as failed");
    assert!(
        failure.reason.contains("a.pdf as MC-1_J-lost_a.pdf"),
        "{}",
        failure.reason
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_file_that_landed_before_a_failure_is_never_dropped_again() {
    let (a, b) = (sample_bytes(5000, 1), sample_bytes(7000, 2));
    let again = two_file_delivery("d-again", "J-again", &a, &b);
    let server = ScriptedServer::builder()
        .file("/f/a", a.clone(), Duration::ZERO)
        .file("/f/b", b.clone(), Duration::ZERO)
        .claim_deliveries(vec![again])
        .start()
        .await;
    let floor = Floor::new(&["indigo"]);
    let hotfolder = floor.path("indigo");
    {
        // An earlier attempt moved a.pdf in, then failed (retryable) on b.pdf.
        let journal = earlier_journal(&floor, &server);
        half_dropped(&journal, &hotfolder, "d-again", "J-again", &a, &b);
        journal
            .finish("d-again", Step::Failed, Some("the share went away"), None)
            .unwrap();
    }
    let agent = RunningAgent::start(&one_queue_config(&server.url, &floor, ""));
    let complete = wait_until("d-again to be completed", Duration::from_secs(20), || {
        let seen = server.seen_ending("/deliveries/d-again/complete");
        std::future::ready(seen.first().map(Seen::json))
    })
    .await;
    assert_eq!(
        visible_files(&hotfolder),
        ["MC-1_J-again_a.pdf", "MC-1_J-again_b.pdf"],
        "a.pdf was dropped a second time"
    );
    assert_eq!(complete["files"][0]["path"], json!("MC-1_J-again_a.pdf"));
    assert_eq!(complete["files"][1]["path"], json!("MC-1_J-again_b.pdf"));
    assert!(
        server.seen_ending("/f/a").is_empty(),
        "a.pdf was fetched again"
    );
    assert_eq!(server.seen_ending("/f/b").len(), 1);
    agent.stop().await;
}

#[tokio::test]
async fn without_the_servers_clock_an_interrupted_drop_waits_for_the_server() {
    // The server answers nothing since the restart: not its time (heartbeats fail),
    // not the renewal. The journaled lease has minutes left by the agent's own clock,
    // but that says nothing about the server's: b.pdf must wait.
    let (a, b) = (sample_bytes(5000, 1), sample_bytes(7000, 2));
    let down = json!({"error": {"code": "maintenance", "message": "back soon"}});
    let server = ScriptedServer::builder()
        .at(
            "/api/v1/agent/heartbeat",
            Answer::json(503, down.clone()),
            Duration::ZERO,
        )
        .renewals_then(Answer::json(503, down))
        .start()
        .await;
    let floor = Floor::new(&["indigo"]);
    let hotfolder = floor.path("indigo");
    {
        let journal = earlier_journal(&floor, &server);
        half_dropped(&journal, &hotfolder, "d-wait", "J-wait", &a, &b);
    }
    let agent = RunningAgent::start(&one_queue_config(&server.url, &floor, ""));
    // Two rounds of renewals (each tried four times by the client) went unanswered.
    wait_until("two rounds of renewals", Duration::from_secs(20), || {
        let tried = server.seen_ending("/deliveries/d-wait/renew").len();
        std::future::ready((tried >= 8).then_some(()))
    })
    .await;
    assert_eq!(
        visible_files(&hotfolder),
        ["MC-1_J-wait_a.pdf"],
        "b.pdf moved"
    );
    agent.stop().await;
    // Stopped while waiting: still unfinished, b.pdf still staged for the next start.
    let journal = Journal::open_read_only(&floor.path("state")).unwrap();
    assert_eq!(
        journal.entry("d-wait").unwrap().unwrap().step,
        Step::Dropping
    );
    assert_eq!(staged_files(&hotfolder).len(), 1);
    assert!(server.seen_ending("/complete").is_empty());
}
