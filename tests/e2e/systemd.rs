//! What systemd hears from the agent run as a `Type=notify` service: read from a real
//! `NOTIFY_SOCKET` datagram socket the test owns, as systemd's would be.

use std::time::Duration;

use crate::notify_socket::NotifySocket;
use crate::support::*;

#[tokio::test]
async fn systemd_hears_ready_status_watchdog_and_stopping() {
    let server = start_server(|_| {}).await;
    let floor = Floor::new(&["indigo"]);
    let socket_path = floor.path("notify.sock");
    let systemd = NotifySocket::bind(&socket_path);
    let socket_text = socket_path.display().to_string();
    let mut agent = AgentProcess::start_with_env(
        floor.dir.path(),
        &one_queue_config(&server.url(), &floor, ""),
        &[
            ("NOTIFY_SOCKET", socket_text.as_str()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );

    let ready = systemd
        .wait(&["READY=1", "STATUS=1 of 1 queue(s) ready"])
        .await;
    let reached = systemd.wait(&["STATUS=", "server reached"]).await;
    assert!(ready <= reached);
    // A watchdog every half second (half of WATCHDOG_USEC) while the loop turns.
    wait_until("three watchdog pings", Duration::from_secs(10), || {
        std::future::ready((systemd.count("WATCHDOG=1") >= 3).then_some(()))
    })
    .await;

    // The server away: the status says so, in words.
    let owner = operator(&server, "owner");
    set_faults(&owner, serde_json::json!({"down_for": "10m"})).await;
    systemd
        .wait(&["STATUS=cannot reach the server since"])
        .await;
    set_faults(&owner, serde_json::json!({})).await;

    assert!(agent.signal("TERM").await.success());
    let stopping = systemd.wait(&["STOPPING=1"]).await;
    assert!(stopping > ready);
    server.stop().await;
}
