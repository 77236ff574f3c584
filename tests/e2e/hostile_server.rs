//! A job side that lies: claim answers with broken deliveries or too many of them, names
//! that read one way and are another, ids that are paths, credentials in URLs, answers
//! that echo the token, unreadable answers to reports, a clock an hour off. Each test
//! runs the real agent against a [`ScriptedServer`] and checks what reached the
//! hotfolder, the server, the log and the journal.

use std::time::Duration;

use serde_json::{json, Value};
use tbot::agent::journal::Journal;
use time::OffsetDateTime;

use crate::scripted::*;
use crate::support::*;

/// The configuration of an agent serving `indigo-7900` from `floor`'s `indigo` folder
/// for the scripted server, with `extra_queue_keys`.
fn config(server: &ScriptedServer, floor: &Floor, extra_queue_keys: &str) -> String {
    one_queue_config(&server.url, floor, extra_queue_keys)
}

/// Waits until the server has received a report of `kind` (`complete`, `fail`) for
/// every one of `ids`, and returns those reports.
async fn wait_reports(server: &ScriptedServer, kind: &str, ids: &[&str]) -> Vec<Seen> {
    let suffixes: Vec<String> = ids
        .iter()
        .map(|id| format!("/deliveries/{}/{kind}", encoded(id)))
        .collect();
    wait_until(
        &format!("{kind} reports for {ids:?}"),
        Duration::from_secs(30),
        || {
            let seen = server.seen_ending(&format!("/{kind}"));
            let all = suffixes
                .iter()
                .all(|suffix| seen.iter().any(|r| r.path.ends_with(suffix)));
            std::future::ready(all.then_some(seen))
        },
    )
    .await
}

/// A delivery id as one percent-encoded path segment.
fn encoded(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The body of the report of `kind` the server received for `id`.
fn report_for(server: &ScriptedServer, kind: &str, id: &str) -> Value {
    server
        .seen_ending(&format!("/deliveries/{}/{kind}", encoded(id)))
        .first()
        .map(Seen::json)
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn one_bad_delivery_spoils_no_other_and_no_more_than_max_are_taken() {
    let bytes = sample_bytes(4096, 1);
    let lease = OffsetDateTime::now_utc() + time::Duration::minutes(5);
    let named = |id: &str, name: &str| delivery(id, lease, &[(name, "/f/1", &bytes)]);
    // d-2's name holds a byte that is not UTF-8, d-3's a lone surrogate; the claim asks
    // for at most 4 (the agent's concurrency) and gets 6.
    let answer = json!({"deliveries": [
        named("d-1", "cards.pdf"),
        named("d-2", "cardsBAD.pdf"),
        named("d-3", "cardsSURROGATE.pdf"),
        named("d-4", "cards.pdf"),
        named("d-5", "cards.pdf"),
        named("d-6", "cards.pdf"),
    ]})
    .to_string()
    .replace("SURROGATE", "\\ud800");
    let bad = answer.find("BAD").unwrap();
    let raw = [
        &answer.as_bytes()[..bad],
        &[0xff],
        &answer.as_bytes()[bad + 3..],
    ]
    .concat();
    let server = ScriptedServer::builder()
        .file("/f/1", bytes.clone(), Duration::ZERO)
        .claim(Answer::raw(200, raw))
        .start()
        .await;
    let floor = Floor::new(&["indigo"]);
    let agent = RunningAgent::start(&config(&server, &floor, ""));

    wait_reports(&server, "complete", &["d-1", "d-4"]).await;
    wait_reports(&server, "fail", &["d-2", "d-3"]).await;
    for id in ["d-2", "d-3"] {
        let fail = report_for(&server, "fail", id);
        assert_eq!(fail["retryable"], json!(false), "{fail}");
        assert!(
            fail["reason"].as_str().unwrap().contains("malformed"),
            "{fail}"
        );
    }
    assert_eq!(visible_files(&floor.path("indigo")).len(), 2);
    // The claim asked for at most 4: d-5 and d-6 were never taken. The whole answer was
    // read before any of it was worked on, so they would be journaled by now.
    let journal = Journal::open_read_only(&floor.path("state")).unwrap();
    for id in ["d-1", "d-4"] {
        assert!(journal.entry(id).unwrap().is_some(), "{id} not journaled");
    }
    for id in ["d-5", "d-6"] {
        assert!(journal.entry(id).unwrap().is_none(), "{id} was taken");
        assert!(
            !server.seen().iter().any(|r| r.path.contains(id)),
            "{id} was worked on"
        );
    }
    agent.stop().await;
}

#[tokio::test]
async fn names_that_read_one_way_and_are_another_are_refused_before_any_byte_moves() {
    let bytes = b"plate".to_vec();
    let long_name = format!("{}.pdf", "x".repeat(196));
    // Each case: the delivery id, its files (name, url), and what the reason must say.
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        ("rtl", vec![("invoice\u{202e}fdp.exe", "/f/1")], "U+202E"),
        ("zero-width", vec![("cards\u{200b}.pdf", "/f/1")], "U+200B"),
        (
            "line-separator",
            vec![("cards\u{2028}.pdf", "/f/1")],
            "U+2028",
        ),
        (
            "trailing-dot",
            vec![("cards.pdf.", "/f/1")],
            "ends with a dot",
        ),
        (
            "trailing-space",
            vec![("cards.pdf ", "/f/1")],
            "ends with a dot or a space",
        ),
        (
            "nfc-nfd-twins",
            vec![("Caf\u{e9}.pdf", "/f/1"), ("Cafe\u{301}.pdf", "/f/1")],
            "two files of the delivery",
        ),
        (
            "long-after-naming",
            vec![(&long_name, "/f/1")],
            "more than 200",
        ),
        (
            "reserved-after-naming",
            vec![("N.pdf", "/f/1")],
            "reserved device name",
        ),
        (
            "credentials-in-url",
            vec![("cards.pdf", "http://printer:secret@127.0.0.1:9/f/1")],
            "user name or password",
        ),
    ];
    let now = OffsetDateTime::now_utc();
    let mut builder = ScriptedServer::builder().file("/f/1", bytes.clone(), Duration::ZERO);
    for (id, files, _) in &cases {
        let files: Vec<(&str, &str, &[u8])> = files
            .iter()
            .map(|(name, url)| (*name, *url, &bytes[..]))
            .collect();
        let mut delivery = delivery(id, now + time::Duration::minutes(5), &files);
        if *id == "reserved-after-naming" {
            // `{order}{name}` with order "CO" renders "CON.pdf".
            delivery["job"]["order_number"] = json!("CO");
        }
        builder = builder.claim_deliveries(vec![delivery]);
    }
    let server = builder.start().await;
    let floor = Floor::new(&["indigo"]);
    let agent = RunningAgent::start(&config(&server, &floor, "naming = \"{order}{name}\""));

    let ids: Vec<&str> = cases.iter().map(|(id, _, _)| *id).collect();
    wait_reports(&server, "fail", &ids).await;
    for (id, _, says) in &cases {
        let fail = report_for(&server, "fail", id);
        assert_eq!(fail["retryable"], json!(false), "{id}: {fail}");
        let reason = fail["reason"].as_str().unwrap();
        assert!(
            reason.contains(says),
            "{id}: {reason:?} does not say {says:?}"
        );
    }
    assert!(
        server.seen_ending("/f/1").is_empty(),
        "a file was downloaded for a delivery that had to be refused"
    );
    assert!(server.seen_ending("/complete").is_empty());
    assert!(visible_files(&floor.path("indigo")).is_empty());
    assert!(staged_files(&floor.path("indigo")).is_empty());
    agent.stop().await;
}

#[tokio::test]
async fn ids_that_look_alike_or_like_paths_stay_apart() {
    let now = OffsetDateTime::now_utc();
    let lease = now + time::Duration::minutes(5);
    let (a, b, c) = (
        sample_bytes(70_000, 1),
        sample_bytes(90_000, 2),
        sample_bytes(10, 3),
    );
    let long = "L".repeat(100);
    let ids = [
        "coll/1".to_string(),
        "coll_1".to_string(),
        format!("{long}-a"),
        format!("{long}-b"),
        "../../elsewhere/x?".to_string(),
    ];
    let server = ScriptedServer::builder()
        .file("/f/a", a.clone(), Duration::ZERO)
        .file("/f/b", b.clone(), Duration::ZERO)
        .file("/f/c", c.clone(), Duration::ZERO)
        .claim_deliveries(vec![
            delivery(&ids[0], lease, &[("cards.pdf", "/f/a", &a)]),
            delivery(&ids[1], lease, &[("cards.pdf", "/f/b", &b)]),
            delivery(&ids[2], lease, &[("cards.pdf", "/f/a", &a)]),
            delivery(&ids[3], lease, &[("cards.pdf", "/f/b", &b)]),
        ])
        .claim_deliveries(vec![delivery(&ids[4], lease, &[("cards.pdf", "/f/c", &c)])])
        .start()
        .await;
    let floor = Floor::new(&["indigo"]);
    let agent = RunningAgent::start(&config(&server, &floor, ""));
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    wait_reports(&server, "complete", &id_refs).await;

    // Each visible file has exactly the bytes whose SHA-256 was reported for it.
    let hotfolder = floor.path("indigo");
    for id in &ids {
        let complete = report_for(&server, "complete", id);
        let file = &complete["files"][0];
        let on_disk = sha256_file(&hotfolder.join(file["path"].as_str().unwrap()));
        assert_eq!(json!(on_disk), file["sha256"], "{id}: {complete}");
    }
    assert_eq!(visible_files(&hotfolder).len(), ids.len());
    // An id goes into a path as one segment: nothing was asked outside the deliveries.
    for request in server.seen() {
        let path = &request.path;
        if let Some(rest) = path.strip_prefix("/api/v1/agent/deliveries/") {
            let segments: Vec<&str> = rest.split('/').collect();
            assert_eq!(segments.len(), 2, "{path}");
            assert!(!segments[0].contains('.'), "{path}");
        } else {
            assert!(
                path.starts_with("/api/v1/agent/") || path.starts_with("/f/"),
                "the agent asked for {path}"
            );
        }
    }
    agent.stop().await;
}

#[tokio::test]
async fn a_token_echoed_by_the_server_is_never_logged_stored_or_shown() {
    let now = OffsetDateTime::now_utc();
    let echo = json!({"error": {"code": "forbidden",
        "message": format!("refused header Authorization: Bearer {TOKEN}")}});
    let mut broken = delivery(
        "d-2",
        now + time::Duration::minutes(5),
        &[("b.pdf", "/f/b", b"b")],
    );
    broken["job"]["send_count"] = json!(TOKEN);
    let mut checksum = delivery(
        "d-3",
        now + time::Duration::minutes(5),
        &[("c.pdf", "/f/c", b"c")],
    );
    checksum["files"][0]["sha256"] = json!(TOKEN);
    let server = ScriptedServer::builder()
        .at("/f/a", Answer::json(403, echo), Duration::ZERO)
        .claim_deliveries(vec![
            delivery(
                "d-1",
                now + time::Duration::minutes(5),
                &[("a.pdf", "/f/a", b"a")],
            ),
            broken,
            checksum,
        ])
        .start()
        .await;
    let floor = Floor::new(&["indigo"]);
    let mut agent = AgentProcess::start(floor.dir.path(), &config(&server, &floor, ""));
    wait_reports(&server, "fail", &["d-1", "d-2", "d-3"]).await;
    for id in ["d-1", "d-2", "d-3"] {
        let reason = report_for(&server, "fail", id)["reason"].to_string();
        assert!(
            reason.contains("***"),
            "{id}: the echo did not reach the reason: {reason}"
        );
        assert!(!reason.contains(TOKEN), "{id}: {reason}");
    }
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_tbot"))
        .args(["status", "--config"])
        .arg(floor.dir.path().join("tbot.toml"))
        .output()
        .unwrap();
    assert!(status.status.success());
    assert!(!String::from_utf8_lossy(&status.stdout).contains(TOKEN));
    assert!(agent.signal("TERM").await.success());
    let log = agent.log();
    assert!(
        log.contains("***"),
        "the echo did not reach the log:\n{log}"
    );
    assert!(!log.contains(TOKEN), "the token is in the log:\n{log}");
    for entry in std::fs::read_dir(floor.path("state")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
            "the token is in {}",
            path.display()
        );
    }
}

#[tokio::test]
async fn forged_log_lines_are_escaped_and_a_log_file_has_no_colour() {
    let now = OffsetDateTime::now_utc();
    let forged_id = "d-1\nERROR forged line\u{1b}[2J";
    let mut forged = delivery(
        forged_id,
        now + time::Duration::minutes(5),
        &[("a.pdf", "/f/a", b"a")],
    );
    forged["job"]["name"] = json!("cards\u{202e}fdp.exe");
    let server = ScriptedServer::builder()
        .file("/f/a", b"a".to_vec(), Duration::ZERO)
        .claim_deliveries(vec![forged])
        .start()
        .await;
    let floor = Floor::new(&["indigo"]);
    let mut agent = AgentProcess::start(floor.dir.path(), &config(&server, &floor, ""));
    wait_reports(&server, "complete", &[forged_id]).await;
    assert!(agent.signal("TERM").await.success());
    let log = agent.log();
    assert!(log.contains("d-1\\nERROR forged line"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "an escape sequence or colour reached the log file:\n{log}"
    );
    assert!(!log.contains('\u{202e}'), "{log}");
    assert!(
        !log.lines().any(|line| line.starts_with("ERROR forged")),
        "a forged line:\n{log}"
    );
}

#[tokio::test]
async fn unreadable_answers_to_reports_back_off_warn_and_show_as_stuck() {
    let now = OffsetDateTime::now_utc();
    let server = ScriptedServer::builder()
        .file("/f/a", b"plate".to_vec(), Duration::ZERO)
        .claim_deliveries(vec![delivery(
            "d-1",
            now + time::Duration::minutes(5),
            &[("a.pdf", "/f/a", b"plate")],
        )])
        .complete(Answer::json(200, json!({})))
        .start()
        .await;
    let floor = Floor::new(&["indigo"]);
    let mut agent = AgentProcess::start(floor.dir.path(), &config(&server, &floor, ""));
    let config_path = floor.dir.path().join("tbot.toml");
    let config = tbot::config::Config::load(&config_path).unwrap();
    let stuck = wait_until(
        "the report to show as stuck",
        Duration::from_secs(30),
        || {
            let status = tbot::status::read(&config).ok();
            std::future::ready(status.and_then(|status| {
                let report = status.queues[0].waiting_reports.first()?.clone();
                report.stuck.then_some(report)
            }))
        },
    )
    .await;
    assert!(
        stuck
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("complete"),
        "{stuck:?}"
    );
    let sent = server.seen_ending("/complete");
    assert!(sent.len() >= 3 && sent.len() <= 4, "{} sends", sent.len());
    // Each pause is longer than the one before: 1 s, then 2 s.
    let gaps: Vec<Duration> = sent.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(900), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(1900), "{gaps:?}");
    let text = std::process::Command::new(env!("CARGO_BIN_EXE_tbot"))
        .args(["status", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("STUCK"));
    assert!(agent.signal("TERM").await.success());
    let log = agent.log();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("report=complete")
            && l.contains("cannot be read")),
        "{log}"
    );
}

#[tokio::test]
async fn the_lease_is_judged_by_the_latest_renewal_on_the_servers_clock() {
    // The server's clock is an hour behind ours. The claim's lease has 6 s left on it
    // (1 s once tbot's 5 s margin is taken off); the first renewal, 2 s into the
    // download that takes 5 s, grants five minutes more; every renewal after that
    // fails. The drop goes ahead within the renewed lease.
    let bytes = sample_bytes(10_000, 9);
    let offset = -time::Duration::hours(1);
    let server_now = OffsetDateTime::now_utc() + offset;
    let down = json!({"error": {"code": "maintenance", "message": "back soon"}});
    let server = ScriptedServer::builder()
        .clock_offset(offset)
        .file("/f/a", bytes.clone(), Duration::from_secs(5))
        .renewal(Answer::json(
            200,
            json!({"lease_expires_at": rfc3339(server_now + time::Duration::minutes(5))}),
        ))
        .renewals_then(Answer::json(503, down))
        .claim_deliveries(vec![delivery(
            "d-1",
            server_now + time::Duration::seconds(6),
            &[("a.pdf", "/f/a", &bytes)],
        )])
        .start()
        .await;
    let floor = Floor::new(&["indigo"]);
    let agent = RunningAgent::start(&config(&server, &floor, ""));
    wait_reports(&server, "complete", &["d-1"]).await;
    let renewals = server.seen_ending("/renew");
    assert!(
        renewals.len() >= 2,
        "the lease was renewed {} time(s)",
        renewals.len()
    );
    assert_eq!(
        std::fs::read(floor.path("indigo").join("MC-1_J-1_a.pdf")).unwrap(),
        bytes
    );
    agent.stop().await;
}
