//! Drops of a delivery profile cut by a crash (SIGKILL or a power cut) while a job
//! folder was being put together or moved in, or while a ticket was moving in. The
//! journal and the staging folder are set up as each moment leaves them, then the real
//! agent starts on them: the job folder and the ticket end up in the hotfolder exactly
//! once, and nothing is fetched again.

use std::time::Duration;

use crate::interrupted_drop::{claimed, earlier_journal, two_file_delivery};
use crate::scripted::*;
use crate::support::*;

/// The `complete` report of delivery `id`, once the agent sent it.
async fn completed(server: &ScriptedServer, id: &str) -> serde_json::Value {
    wait_until(
        &format!("{id} to be completed"),
        Duration::from_secs(20),
        || {
            let seen = server.seen_ending(&format!("/deliveries/{id}/complete"));
            std::future::ready(seen.first().map(Seen::json))
        },
    )
    .await
}

/// Killed while the job folder was put together (a.pdf in it, b.pdf still staged),
/// and killed after the folder moved in but before that was journaled: after the
/// restart, each job folder is in the hotfolder once, whole, with its ticket.
#[tokio::test]
async fn a_job_folder_cut_short_by_a_crash_ends_in_the_hotfolder_exactly_once() {
    let (a, b) = (sample_bytes(5000, 1), sample_bytes(7000, 2));
    let server = ScriptedServer::builder()
        .file("/f/a", a.clone(), Duration::ZERO)
        .file("/f/b", b.clone(), Duration::ZERO)
        .start()
        .await;
    let floor = Floor::new(&["indigo"]);
    let hotfolder = floor.path("indigo");
    let staging = hotfolder.join(".tbot");
    {
        let journal = earlier_journal(&floor, &server);
        // Being put together: both paths journaled, a.pdf in the staged folder.
        let names = claimed(&journal, &hotfolder, "d-half", "J-half", &a, &b);
        journal
            .record_drop_names(
                "d-half",
                &[
                    (0, "MC-1_J-half/a.pdf".into()),
                    (1, "MC-1_J-half/b.pdf".into()),
                ],
            )
            .unwrap();
        let folder = staging.join(names.staged_job_folder("d-half"));
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("a.pdf"), &a).unwrap();
        std::fs::write(staging.join(names.staged_name("d-half", 1)), &b).unwrap();
        // Moved in whole, the move not yet journaled as done.
        claimed(&journal, &hotfolder, "d-moved", "J-moved", &a, &b);
        journal
            .record_drop_names(
                "d-moved",
                &[
                    (0, "MC-1_J-moved/a.pdf".into()),
                    (1, "MC-1_J-moved/b.pdf".into()),
                ],
            )
            .unwrap();
        let moved = hotfolder.join("MC-1_J-moved");
        std::fs::create_dir(&moved).unwrap();
        std::fs::write(moved.join("a.pdf"), &a).unwrap();
        std::fs::write(moved.join("b.pdf"), &b).unwrap();
        std::fs::write(moved.join("MC-1_J-moved.jdf"), "<JDF/>").unwrap();
    }
    let agent = RunningAgent::start(&one_queue_config(
        &server.url,
        &floor,
        "layout = \"folder\"\nnaming = \"{name}\"\nticket = \"jdf\"",
    ));
    let half = completed(&server, "d-half").await;
    let moved = completed(&server, "d-moved").await;
    assert_eq!(visible_files(&hotfolder), ["MC-1_J-half", "MC-1_J-moved"]);
    assert_eq!(
        visible_files(&hotfolder.join("MC-1_J-half")),
        ["MC-1_J-half.jdf", "a.pdf", "b.pdf"]
    );
    assert_eq!(
        std::fs::read(hotfolder.join("MC-1_J-half/b.pdf")).unwrap(),
        b
    );
    let jdf = std::fs::read_to_string(hotfolder.join("MC-1_J-half/MC-1_J-half.jdf")).unwrap();
    assert!(
        jdf.contains("URL=\"a.pdf\"") && jdf.contains("URL=\"b.pdf\""),
        "{jdf}"
    );
    assert_eq!(
        visible_files(&hotfolder.join("MC-1_J-moved")),
        ["MC-1_J-moved.jdf", "a.pdf", "b.pdf"]
    );
    assert_eq!(half["files"][1]["path"], "MC-1_J-half/b.pdf");
    assert_eq!(moved["files"][0]["path"], "MC-1_J-moved/a.pdf");
    assert!(server.seen_ending("/f/a").is_empty() && server.seen_ending("/f/b").is_empty());
    assert!(
        visible_files(&staging).is_empty(),
        "{:?}",
        visible_files(&staging)
    );
    agent.stop().await;
}

/// Killed while the ticket beside loose files was being written or moving in:
/// - written half, its path not yet journaled: it is written afresh and moved in;
/// - staged whole, its path journaled: it moves in as it is, never written again;
/// - moved in, not yet journaled so: it is neither written nor moved again.
#[tokio::test]
async fn a_ticket_cut_short_by_a_crash_ends_in_the_hotfolder_exactly_once() {
    let (a, b) = (sample_bytes(5000, 1), sample_bytes(7000, 2));
    let server = ScriptedServer::builder().start().await;
    let floor = Floor::new(&["indigo"]);
    let hotfolder = floor.path("indigo");
    let staging = hotfolder.join(".tbot");
    {
        let journal = earlier_journal(&floor, &server);
        for (id, job) in [
            ("d-half", "J-half"),
            ("d-staged", "J-staged"),
            ("d-moved", "J-moved"),
        ] {
            let names = claimed(&journal, &hotfolder, id, job, &a, &b);
            let files = [
                (0, format!("MC-1_{job}_a.pdf")),
                (1, format!("MC-1_{job}_b.pdf")),
            ];
            journal.record_drop_names(id, &files).unwrap();
            for (index, name) in &files {
                std::fs::write(hotfolder.join(name), if *index == 0 { &a } else { &b }).unwrap();
                journal.set_dropped(id, *index).unwrap();
            }
            let ticket = format!("MC-1_{job}.jdf");
            let staged = staging.join(names.staged_ticket(id));
            match id {
                "d-half" => std::fs::write(staged, "<JDF Job").unwrap(),
                "d-staged" => {
                    std::fs::write(staged, "<JDF staged/>").unwrap();
                    journal.record_ticket_path(id, &ticket).unwrap();
                }
                _ => {
                    std::fs::write(hotfolder.join(&ticket), "<JDF moved/>").unwrap();
                    journal.record_ticket_path(id, &ticket).unwrap();
                }
            }
        }
    }
    let agent = RunningAgent::start(&one_queue_config(&server.url, &floor, "ticket = \"jdf\""));
    for id in ["d-half", "d-staged", "d-moved"] {
        completed(&server, id).await;
    }
    assert_eq!(
        visible_files(&hotfolder),
        [
            "MC-1_J-half.jdf",
            "MC-1_J-half_a.pdf",
            "MC-1_J-half_b.pdf",
            "MC-1_J-moved.jdf",
            "MC-1_J-moved_a.pdf",
            "MC-1_J-moved_b.pdf",
            "MC-1_J-staged.jdf",
            "MC-1_J-staged_a.pdf",
            "MC-1_J-staged_b.pdf"
        ]
    );
    let written = std::fs::read_to_string(hotfolder.join("MC-1_J-half.jdf")).unwrap();
    assert!(written.contains("URL=\"MC-1_J-half_a.pdf\""), "{written}");
    let read = |name: &str| std::fs::read_to_string(hotfolder.join(name)).unwrap();
    assert_eq!(read("MC-1_J-staged.jdf"), "<JDF staged/>");
    assert_eq!(read("MC-1_J-moved.jdf"), "<JDF moved/>");
    assert!(
        visible_files(&staging).is_empty(),
        "{:?}",
        visible_files(&staging)
    );
    agent.stop().await;
}

/// A job folder put together by an attempt that then failed (its move refused) is no
/// obstacle to the next: the stale staged folder is cleared and the delivery, claimed
/// again, lands whole once.
#[tokio::test]
async fn a_job_folder_left_in_staging_by_a_failed_attempt_does_not_block_the_next() {
    let (a, b) = (sample_bytes(5000, 1), sample_bytes(7000, 2));
    let again = two_file_delivery("d-retry", "J-retry", &a, &b);
    let server = ScriptedServer::builder()
        .file("/f/a", a.clone(), Duration::ZERO)
        .file("/f/b", b.clone(), Duration::ZERO)
        .claim_deliveries(vec![again])
        .start()
        .await;
    let floor = Floor::new(&["indigo"]);
    let hotfolder = floor.path("indigo");
    let stale = {
        let journal = earlier_journal(&floor, &server);
        let names = claimed(&journal, &hotfolder, "d-retry", "J-retry", &a, &b);
        let folder = hotfolder
            .join(".tbot")
            .join(names.staged_job_folder("d-retry"));
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("a.pdf"), b"stale").unwrap();
        journal
            .finish(
                "d-retry",
                tbot::agent::journal::Step::Failed,
                Some("the subfolder went away"),
                None,
            )
            .unwrap();
        folder
    };
    let agent = RunningAgent::start(&one_queue_config(
        &server.url,
        &floor,
        "layout = \"folder\"\nnaming = \"{name}\"",
    ));
    completed(&server, "d-retry").await;
    assert_eq!(visible_files(&hotfolder), ["MC-1_J-retry"]);
    assert_eq!(
        std::fs::read(hotfolder.join("MC-1_J-retry/a.pdf")).unwrap(),
        a
    );
    assert_eq!(
        std::fs::read(hotfolder.join("MC-1_J-retry/b.pdf")).unwrap(),
        b
    );
    assert!(
        !stale.exists(),
        "the stale staged job folder is still there"
    );
    agent.stop().await;
}
