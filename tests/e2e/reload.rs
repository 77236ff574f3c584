//! `systemctl reload tbot` (SIGHUP) on the real binary: a valid file is applied without
//! a restart and without disturbing the delivery in flight; a file with problems
//! changes nothing. What systemd hears is read from a `NOTIFY_SOCKET` the test owns.

use std::time::Duration;

use serde_json::json;

use crate::notify_socket::NotifySocket;
use crate::support::*;

/// Waits until the agent's log holds `text`.
async fn wait_logged(agent: &AgentProcess, text: &str) -> String {
    wait_until(
        &format!("the log to say {text:?}"),
        Duration::from_secs(20),
        || {
            let log = agent.log();
            std::future::ready(log.contains(text).then_some(log))
        },
    )
    .await
}

#[tokio::test]
async fn a_reload_swaps_queues_while_a_delivery_finishes_and_a_bad_file_changes_nothing() {
    let server = start_server(|_| {}).await;
    let floor = Floor::new(&["indigo", "proof"]);
    let owner = operator(&server, "owner");
    let systemd = NotifySocket::bind(&floor.path("notify.sock"));
    let socket = floor.path("notify.sock").display().to_string();
    // Claims held open two seconds at most: a queue added by a reload is claimed for
    // from the next claim on.
    let config = |queues: &[(&str, &str, &std::path::Path)]| {
        agent_config_text(&server.url(), TOKEN, &floor.path("state"), queues, "")
            .replace("[agent]", "long_poll = \"2s\"\n[agent]")
    };
    let (indigo, proof) = (floor.path("indigo"), floor.path("proof"));
    let mut agent = AgentProcess::start_with_env(
        floor.dir.path(),
        &config(&[("indigo-7900", "printer", &indigo)]),
        &[("NOTIFY_SOCKET", socket.as_str())],
    );
    systemd.wait(&["READY=1"]).await;
    wait_connected(&owner, &["indigo-7900"]).await;

    // A 1 MiB file at 128 KiB/s: eight seconds in flight.
    set_faults(&owner, json!({"bytes_per_second": 128 * 1024})).await;
    let bytes = sample_bytes(1024 * 1024, 7);
    send_file(
        &owner,
        "Brochure",
        "indigo-7900",
        "brochure.pdf",
        bytes.clone(),
    )
    .await;
    wait_until("the transfer to start", Duration::from_secs(10), || {
        std::future::ready((!staged_files(&indigo).is_empty()).then_some(()))
    })
    .await;

    // indigo goes, proof comes, the agent gets a new name and logs JSON, while the
    // brochure is on its way.
    agent.rewrite_config(
        &config(&[("proof", "printer", &proof)])
            .replace("name = \"test-floor\"", "name = \"pressroom-2\"")
            .replace("[log]\n", "[log]\nformat = \"json\"\n"),
    );
    let before = systemd.count("");
    agent.send("HUP");
    let reloading = systemd.wait_after(before, &["RELOADING=1"]).await;
    systemd.wait_after(reloading, &["READY=1"]).await;
    let log = wait_logged(&agent, "configuration reloaded:").await;
    assert!(
        log.contains(
            "queue proof added; queue indigo-7900 removed (what it has in flight finishes); \
             agent.name test-floor → pressroom-2; log.format text → json"
        ),
        "{log}"
    );
    wait_connected(&owner, &["proof"]).await;
    // The job side shows the agent by the name it is configured with.
    let queues = owner.get("/queues").await.unwrap();
    let proof_queue = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|queue| queue["name"] == json!("proof"))
        .cloned()
        .unwrap();
    assert_eq!(proof_queue["agent_names"], json!(["pressroom-2"]));
    // Each name the token's agents went by is listed on its own.
    let agents = owner.get("/agents").await.unwrap();
    let names: Vec<&str> = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|agent| agent["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["test-floor", "pressroom-2"], "{agents}");
    let in_flight = deliveries(&owner).await;
    assert_eq!(in_flight.len(), 1);
    assert_ne!(in_flight[0]["state"], json!("completed"), "{in_flight:?}");

    // The brochure still lands, once, in the queue that was removed.
    set_faults(&owner, json!({})).await;
    let settled = wait_deliveries_settled(&owner, &["completed"]).await;
    assert_eq!(settled.len(), 1);
    assert_eq!(visible_files(&indigo).len(), 1);
    assert_eq!(
        sha256_file(&indigo.join(&visible_files(&indigo)[0])),
        sha256_of(&bytes)
    );
    // The delivery that began under text logging ends in JSON lines.
    let dropped = agent
        .log()
        .lines()
        .find(|line| line.contains("\"message\":\"dropped\""))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("the drop logged as JSON: {}", agent.log()));
    let dropped: serde_json::Value = serde_json::from_str(&dropped).unwrap();
    assert_eq!(dropped["span"]["queue"], json!("indigo-7900"), "{dropped}");

    // The new queue is served; once a claim for it is answered, no claim made before
    // the reload is still open, and a job for the removed queue stays with the server.
    send_file(
        &owner,
        "Proof",
        "proof",
        "proof.pdf",
        b"%PDF proof".to_vec(),
    )
    .await;
    wait_until("the proof to land", Duration::from_secs(20), || {
        std::future::ready((visible_files(&proof).len() == 1).then_some(()))
    })
    .await;
    send_file(
        &owner,
        "Late",
        "indigo-7900",
        "late.pdf",
        b"%PDF late".to_vec(),
    )
    .await;
    two_more_checks(&owner).await;
    let late: Vec<_> = deliveries(&owner)
        .await
        .into_iter()
        .filter(|d| d["queue"] == json!("indigo-7900") && d["state"] != json!("completed"))
        .collect();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0]["state"], json!("pending"), "{late:?}");
    assert_eq!(visible_files(&indigo).len(), 1);

    // A file with a problem changes nothing, and says so to the log and to systemd.
    agent.rewrite_config(&format!(
        "{}\n[agent_typo]\nname = \"x\"\n",
        config(&[("indigo-7900", "printer", &indigo)])
    ));
    let before = systemd.count("");
    agent.send("HUP");
    let reloading = systemd.wait_after(before, &["RELOADING=1"]).await;
    systemd
        .wait_after(
            reloading,
            &["READY=1", "STATUS=the reload at", "was refused"],
        )
        .await;
    let log = wait_logged(&agent, "configuration not reloaded").await;
    assert!(log.contains("agent_typo"), "{log}");
    send_file(
        &owner,
        "Proof 2",
        "proof",
        "proof2.pdf",
        b"%PDF proof 2".to_vec(),
    )
    .await;
    wait_until("the second proof to land", Duration::from_secs(20), || {
        std::future::ready((visible_files(&proof).len() == 2).then_some(()))
    })
    .await;
    assert_eq!(visible_files(&indigo).len(), 1);
    assert!(agent.signal("TERM").await.success());
    server.stop().await;
}

fn sha256_of(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}
