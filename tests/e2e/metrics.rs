//! The agent's monitoring endpoint on the real binary: `/metrics` parsed as Prometheus
//! reads it and counting a delivery, `/healthz` going to 503 when the journal's folder
//! fills up and back to 200 when it has room again.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::*;

/// Every sample of a Prometheus text page, by its series (`name{labels}`).
fn samples(page: &str) -> HashMap<String, f64> {
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            (series.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

/// The agent's monitoring address, from the line it logs when it listens.
async fn monitoring_address(agent: &AgentProcess) -> String {
    wait_until(
        "the metrics address in the log",
        Duration::from_secs(20),
        || {
            let log = agent.log();
            let address = log
                .split("metrics at http://")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .map(str::to_string);
            std::future::ready(address)
        },
    )
    .await
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("the endpoint answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

/// Waits until `/metrics` shows `series` at `value`; returns every sample.
async fn wait_sample(address: &str, series: &str, value: f64) -> HashMap<String, f64> {
    wait_until(
        &format!("{series} to be {value}"),
        Duration::from_secs(20),
        || async {
            let (_, page) = get(&format!("http://{address}/metrics")).await;
            let all = samples(&page);
            (all.get(series) == Some(&value)).then_some(all)
        },
    )
    .await
}

#[tokio::test]
async fn metrics_count_a_delivery_and_healthz_follows_the_journal() {
    let floor = Floor::new(&["indigo"]);
    let Some(disk) = SmallDisk::mount(floor.path("state-disk"), "2m") else {
        eprintln!("skipped: cannot mount a tmpfs here (not root)");
        return;
    };
    let server = start_server(|_| {}).await;
    let owner = operator(&server, "owner");
    let config = format!(
        "{}\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        agent_config_text(
            &server.url(),
            TOKEN,
            &disk.path.join("state"),
            &[("indigo-7900", "printer", &floor.path("indigo"))],
            "",
        )
    );
    let mut agent = AgentProcess::start(floor.dir.path(), &config);
    wait_connected(&owner, &["indigo-7900"]).await;
    let address = monitoring_address(&agent).await;

    let (status, body) = get(&format!("http://{address}/healthz")).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (_, page) = get(&format!("http://{address}/metrics")).await;
    assert!(page.ends_with("# EOF\n"), "{page}");
    let before = samples(&page);
    let version = format!(
        "tbot_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(before.get(&version), Some(&1.0), "{page}");
    assert_eq!(
        before.get("tbot_queue_status{queue=\"indigo-7900\",status=\"ready\"}"),
        Some(&1.0),
        "{page}"
    );

    let bytes = sample_bytes(300_000, 3);
    send_file(&owner, "Cards", "indigo-7900", "cards.pdf", bytes).await;
    let after = wait_sample(
        &address,
        "tbot_deliveries_total{queue=\"indigo-7900\",outcome=\"completed\"}",
        1.0,
    )
    .await;
    let queue = "{queue=\"indigo-7900\"}";
    assert_eq!(
        after[&format!("tbot_transferred_bytes_total{queue}")],
        300_000.0
    );
    assert_eq!(after[&format!("tbot_files_dropped_total{queue}")], 1.0);
    assert_eq!(after[&format!("tbot_deliveries_claimed_total{queue}")], 1.0);
    assert_eq!(
        after[&format!("tbot_delivery_duration_seconds_count{queue}")],
        1.0
    );
    assert_eq!(
        after[&format!("tbot_transfer_duration_seconds_count{queue}")],
        1.0
    );
    let reached = after.get("tbot_seconds_since_server_reached");
    assert!(reached.is_some_and(|seconds| *seconds < 10.0), "{after:?}");
    wait_sample(
        &address,
        "tbot_reports_sent_total{report=\"complete\"}",
        1.0,
    )
    .await;

    // The journal's folder fills up: no work can be recorded, and /healthz says so.
    let filler = disk.path.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    while std::io::Write::write_all(&mut file, &[0u8; 64 * 1024]).is_ok() {}
    drop(file);
    let body = wait_until("/healthz to fail", Duration::from_secs(20), || async {
        let (status, body) = get(&format!("http://{address}/healthz")).await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(body.contains("is full"), "{body}");
    wait_sample(
        &address,
        "tbot_queue_status{queue=\"indigo-7900\",status=\"unavailable\"}",
        1.0,
    )
    .await;
    std::fs::remove_file(&filler).unwrap();
    wait_until("/healthz to recover", Duration::from_secs(20), || async {
        (get(&format!("http://{address}/healthz")).await.0 == 200).then_some(())
    })
    .await;

    assert!(agent.signal("TERM").await.success());
    server.stop().await;
}
