//! `tbot status` as a monitoring check: its first line and exit code follow the
//! monitoring-plugin convention (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN), for the real
//! binary beside a real agent process.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// `tbot status` for the configuration at `config`: its exit code and output.
fn status(config: &Path, json: bool) -> (i32, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tbot"));
    command.args(["status", "--config"]).arg(config);
    if json {
        command.arg("--json");
    }
    let output = command.output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.code().unwrap_or(-1), text)
}

/// Waits until `tbot status` exits with `code` and its first line says `says`.
async fn wait_status(config: &Path, code: i32, says: &str) -> String {
    wait_until(
        &format!("tbot status to exit {code} saying {says:?}"),
        Duration::from_secs(20),
        || {
            let (exit, text) = status(config, false);
            let first = text.lines().next().unwrap_or("").to_string();
            std::future::ready((exit == code && first.contains(says)).then_some(text))
        },
    )
    .await
}

#[tokio::test]
async fn status_exits_as_a_monitoring_check_expects() {
    let (server, floor, owner, mut agent) =
        agent_process_on_one_queue("stall_after = \"1s\"").await;
    let config = floor.dir.path().join("tbot.toml");

    let ok = wait_status(&config, 0, "OK: agent test-floor running").await;
    assert!(ok.contains(&format!("process {}", agent.pid())), "{ok}");
    assert!(ok.contains("server: last reached"), "{ok}");
    let (_, shown) = status(&config, true);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["health"]["state"], json!("ok"));
    assert_eq!(shown["running_pid"], json!(agent.pid()));

    // A dropped file the device does not take: a warning until it does.
    let job = send_file(
        &owner,
        "Cards",
        "indigo-7900",
        "cards.pdf",
        b"cards".to_vec(),
    )
    .await;
    wait_status(&config, 1, "WARNING: queue indigo-7900 stalled").await;
    std::fs::remove_file(floor.path("indigo").join(format!("{job}_cards.pdf"))).unwrap();
    wait_status(&config, 0, "OK").await;

    // The hotfolder gone: critical until it is back.
    std::fs::rename(floor.path("indigo"), floor.path("indigo-away")).unwrap();
    wait_status(&config, 2, "CRITICAL: queue indigo-7900 unavailable").await;
    std::fs::rename(floor.path("indigo-away"), floor.path("indigo")).unwrap();
    wait_status(&config, 0, "OK").await;

    // The server gone for longer than three checks: critical until it answers again.
    set_faults(&owner, json!({"down_for": "10m"})).await;
    let down = wait_status(&config, 2, "CRITICAL: cannot reach the server since").await;
    assert!(down.contains("server: cannot be reached since"), "{down}");
    set_faults(&owner, json!({})).await;
    wait_status(&config, 0, "OK").await;

    // No agent: critical. A configuration that cannot be read: unknown.
    assert!(agent.signal("TERM").await.success());
    wait_status(
        &config,
        2,
        "CRITICAL: no tbot agent is running with the journal",
    )
    .await;
    std::fs::write(&config, "[server\n").unwrap();
    wait_status(&config, 3, "UNKNOWN: configuration").await;
    server.stop().await;
}
