//! What systemd hears from the agent run as a `Type=notify` service: read from a real
//! `NOTIFY_SOCKET` datagram socket the test owns, as systemd's would be.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;

/// Every notification the agent sent so far, one string per datagram.
type Heard = Arc<Mutex<Vec<String>>>;

/// Waits until one notification contains every one of `parts`; returns its index.
async fn wait_heard(heard: &Heard, parts: &[&str]) -> usize {
    wait_until(
        &format!("systemd to hear {parts:?}"),
        Duration::from_secs(20),
        || {
            let heard = heard.lock().unwrap();
            let found = heard
                .iter()
                .position(|message| parts.iter().all(|part| message.contains(part)));
            std::future::ready(found)
        },
    )
    .await
}

#[tokio::test]
async fn systemd_hears_ready_status_watchdog_and_stopping() {
    let server = start_server(|_| {}).await;
    let floor = Floor::new(&["indigo"]);
    let socket_path = floor.path("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let heard: Heard = Arc::default();
    let listener = tokio::spawn({
        let heard = heard.clone();
        async move {
            let mut buffer = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buffer).await {
                let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
                heard.lock().unwrap().push(message);
            }
        }
    });
    let socket_text = socket_path.display().to_string();
    let mut agent = AgentProcess::start_with_env(
        floor.dir.path(),
        &one_queue_config(&server.url(), &floor, ""),
        &[
            ("NOTIFY_SOCKET", socket_text.as_str()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );

    let ready = wait_heard(&heard, &["READY=1", "STATUS=1 of 1 queue(s) ready"]).await;
    let reached = wait_heard(&heard, &["STATUS=", "server reached"]).await;
    assert!(ready <= reached);
    // A watchdog every half second (half of WATCHDOG_USEC) while the loop turns.
    wait_until("three watchdog pings", Duration::from_secs(10), || {
        let pings = heard
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.contains("WATCHDOG=1"))
            .count();
        std::future::ready((pings >= 3).then_some(()))
    })
    .await;

    // The server away: the status says so, in words.
    let owner = operator(&server, "owner");
    set_faults(&owner, serde_json::json!({"down_for": "10m"})).await;
    wait_heard(&heard, &["STATUS=cannot reach the server since"]).await;
    set_faults(&owner, serde_json::json!({})).await;

    assert!(agent.signal("TERM").await.success());
    let stopping = wait_heard(&heard, &["STOPPING=1"]).await;
    assert!(stopping > ready);
    listener.abort();
    server.stop().await;
}
