//! What another local user, a device or a second copy of tbot can do on the print floor:
//! plant links in a hotfolder's staging folder, make that folder theirs, start a second
//! agent on the same journal, share a hotfolder between two agents, fill the state
//! folder, send SIGHUP. Nothing outside a hotfolder may be touched, and each file must
//! still arrive once, whole.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use tbot::agent::hotfolder::Hotfolder;
use tbot::agent::journal::Journal;
use tbot::operator_client::OperatorClient;

use crate::support::*;

/// The status and detail the server shows for the only queue.
async fn queue_state(owner: &OperatorClient) -> Option<(String, String)> {
    let queue = owner.get("/queues?all=true").await.ok()?["queues"][0].clone();
    Some((
        queue["status"].as_str()?.to_string(),
        queue["detail"].as_str().unwrap_or_default().to_string(),
    ))
}

/// Waits until the only queue is announced `status` with a detail containing `says`.
async fn wait_queue(owner: &OperatorClient, status: &str, says: &str) -> String {
    wait_until(
        &format!("the queue to be {status} ({says})"),
        Duration::from_secs(20),
        || async {
            let (now, detail) = queue_state(owner).await?;
            (now == status && detail.contains(says)).then_some(detail)
        },
    )
    .await
}

/// Sends a small job to `indigo-7900` and waits until it is complete, its file the only
/// one in `hotfolder`: the agent took work again, and did nothing else.
async fn the_only_file_arrives(owner: &OperatorClient, hotfolder: &Path, file: &str) {
    let job = send_file(
        owner,
        "Cards",
        "indigo-7900",
        file,
        file.as_bytes().to_vec(),
    )
    .await;
    wait_deliveries_settled(owner, &["completed"]).await;
    assert_eq!(visible_files(hotfolder), [format!("{job}_{file}")]);
}

/// The files in `dir` with their contents, to see that nothing there changed.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn a_staging_folder_that_is_a_link_or_not_tbots_own_is_refused() {
    let floor = Floor::new(&["indigo", "outside"]);
    let (hotfolder, outside) = (floor.path("indigo"), floor.path("outside"));
    std::fs::write(outside.join("other-program.part"), "keep me").unwrap();
    std::fs::write(outside.join("notes.txt"), "mine").unwrap();
    let before = contents(&outside);
    std::os::unix::fs::symlink(&outside, hotfolder.join(".tbot")).unwrap();
    let setup = OneQueue::start_on(floor, "").await;
    let owner = &setup.owner;

    // Start-up clean-up has run by the first heartbeat.
    let detail = wait_queue(owner, "unavailable", "symbolic link").await;
    assert!(detail.contains(".tbot"), "{detail}");
    assert_eq!(
        contents(&outside),
        before,
        "a file outside the hotfolder changed"
    );

    // A real folder, but another user's.
    std::fs::remove_file(hotfolder.join(".tbot")).unwrap();
    std::fs::create_dir(hotfolder.join(".tbot")).unwrap();
    if std::os::unix::fs::chown(hotfolder.join(".tbot"), Some(4242), None).is_ok() {
        wait_queue(owner, "unavailable", "belongs to user id 4242").await;
    } else {
        eprintln!("not root: the foreign-owner case is not checked here");
    }

    // Gone: tbot makes its own, private, and the queue takes files again.
    std::fs::remove_dir(hotfolder.join(".tbot")).unwrap();
    wait_queue(owner, "ready", "").await;
    the_only_file_arrives(owner, &hotfolder, "cards.pdf").await;
    let mode = std::fs::metadata(hotfolder.join(".tbot"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "staging folder mode {mode:o}");
    assert_eq!(contents(&outside), before);
    setup.stop().await;
}

#[tokio::test]
async fn a_link_planted_as_a_staged_file_is_never_written_through() {
    let floor = Floor::new(&["indigo", "outside"]);
    let victim = floor.path("outside").join("victim.pdf");
    std::fs::write(&victim, "not yours").unwrap();
    let setup = OneQueue::start_on(floor, "").await;
    let owner = &setup.owner;
    // The mock's first delivery is `d-1`: plant a link where its file will be staged.
    let instance = Journal::open_read_only(&setup.floor.path("state"))
        .unwrap()
        .instance()
        .unwrap();
    let hotfolder = setup.floor.path("indigo");
    let staged = Hotfolder::new(&hotfolder, &instance).staged_name("d-1", 0);
    std::os::unix::fs::symlink(&victim, hotfolder.join(".tbot").join(staged)).unwrap();

    let bytes = sample_bytes(300_000, 4);
    let job = send_file(owner, "Cards", "indigo-7900", "cards.pdf", bytes.clone()).await;
    wait_deliveries_settled(owner, &["completed"]).await;
    let dropped = hotfolder.join(format!("{job}_cards.pdf"));
    assert!(
        std::fs::symlink_metadata(&dropped).unwrap().is_file(),
        "a link was moved into the hotfolder"
    );
    assert_eq!(std::fs::read(&dropped).unwrap(), bytes);
    assert_eq!(std::fs::read(&victim).unwrap(), b"not yours");
    assert!(staged_files(&hotfolder).is_empty());
    setup.stop().await;
}

#[tokio::test]
async fn a_hotfolder_path_that_is_a_link_still_works() {
    let floor = Floor::new(&["share"]);
    std::os::unix::fs::symlink(floor.path("share"), floor.path("indigo")).unwrap();
    let setup = OneQueue::start_on(floor, "").await;
    let owner = &setup.owner;
    the_only_file_arrives(owner, &setup.floor.path("share"), "cards.pdf").await;
    setup.stop().await;
}

#[tokio::test]
async fn a_second_agent_on_one_journal_stops_at_once_and_names_the_first() {
    let server = start_server(|_| {}).await;
    let floor = Floor::new(&["indigo"]);
    let owner = operator(&server, "owner");
    let config = one_queue_config(&server.url(), &floor, "");
    let mut first = AgentProcess::start(floor.dir.path(), &config);
    wait_connected(&owner, &["indigo-7900"]).await;

    let second = tokio::task::spawn_blocking({
        let path = floor.dir.path().join("tbot.toml");
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_tbot"))
                .args(["run", "--config"])
                .arg(path)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(stderr.contains("journal.sqlite3"), "{stderr}");
    assert!(
        stderr.contains(&format!("process {}", first.pid())),
        "{stderr}"
    );
    // The first goes on as if nothing happened.
    the_only_file_arrives(&owner, &floor.path("indigo"), "cards.pdf").await;
    assert!(first.signal("TERM").await.success());
    server.stop().await;
}

#[tokio::test]
async fn two_agents_with_their_own_journals_share_a_hotfolder_without_sharing_a_staged_file() {
    let server = start_server(|_| {}).await;
    let floor = Floor::new(&["indigo"]);
    let hotfolder = floor.path("indigo");
    let queues = [("indigo-7900", "printer", hotfolder.as_path())];
    let agents = [
        RunningAgent::start(&agent_config_text(
            &server.url(),
            TOKEN,
            &floor.path("state-a"),
            &queues,
            "",
        )),
        RunningAgent::start(&agent_config_text(
            &server.url(),
            TOKEN_2,
            &floor.path("state-b"),
            &queues,
            "",
        )),
    ];
    let owner = operator(&server, "owner");
    wait_connected(&owner, &["indigo-7900"]).await;
    let mut expected = Vec::new();
    for n in 0..6 {
        let bytes = sample_bytes(200_000, n);
        let job = send_file(
            &owner,
            &format!("Job {n}"),
            "indigo-7900",
            "plate.pdf",
            bytes.clone(),
        )
        .await;
        expected.push((format!("{job}_plate.pdf"), bytes));
    }
    wait_deliveries_settled(&owner, &["completed"]).await;
    let mut names: Vec<String> = expected.iter().map(|(name, _)| name.clone()).collect();
    names.sort();
    assert_eq!(visible_files(&hotfolder), names, "each file once");
    for (name, bytes) in &expected {
        assert_eq!(
            &std::fs::read(hotfolder.join(name)).unwrap(),
            bytes,
            "{name}"
        );
    }
    let staged_name = |state: &str| {
        let instance = Journal::open_read_only(&floor.path(state))
            .unwrap()
            .instance()
            .unwrap();
        Hotfolder::new(&hotfolder, &instance).staged_name("d-1", 0)
    };
    assert_ne!(staged_name("state-a"), staged_name("state-b"));
    for agent in agents {
        agent.stop().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_full_state_folder_stops_claiming_and_the_agent_recovers_by_itself() {
    let floor = Floor::new(&["indigo"]);
    let Some(disk) = SmallDisk::mount(floor.path("state-disk"), "2m") else {
        eprintln!("skipped: cannot mount a tmpfs here (not root)");
        return;
    };
    let server = start_server(|_| {}).await;
    let state = disk.path.join("state");
    let agent = RunningAgent::start(&agent_config_text(
        &server.url(),
        TOKEN,
        &state,
        &[("indigo-7900", "printer", &floor.path("indigo"))],
        "",
    ));
    let owner = operator(&server, "owner");
    wait_connected(&owner, &["indigo-7900"]).await;
    let mode = std::fs::metadata(&state).unwrap().mode();
    assert_eq!(mode & 0o777, 0o700, "state folder mode {mode:o}");
    let journal = std::fs::metadata(state.join("journal.sqlite3"))
        .unwrap()
        .mode();
    assert_eq!(journal & 0o777, 0o600, "journal mode {journal:o}");

    let filler = disk.path.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    while std::io::Write::write_all(&mut file, &[0u8; 64 * 1024]).is_ok() {}
    drop(file);
    let detail = wait_queue(&owner, "unavailable", "full").await;
    assert!(detail.contains(&state.display().to_string()), "{detail}");
    let job = send_file(
        &owner,
        "Waits",
        "indigo-7900",
        "waits.pdf",
        b"waits".to_vec(),
    )
    .await;
    two_more_checks(&owner).await;
    assert_eq!(
        deliveries(&owner).await[0]["state"],
        json!("pending"),
        "claimed work it could not record"
    );

    std::fs::remove_file(&filler).unwrap();
    wait_deliveries_settled(&owner, &["completed"]).await;
    assert_eq!(
        visible_files(&floor.path("indigo")),
        [format!("{job}_waits.pdf")]
    );
    agent.stop().await;
    server.stop().await;
    drop(disk);
}

#[tokio::test]
async fn sighup_never_stops_the_agent() {
    let (server, floor, owner, mut agent) = agent_process_on_one_queue("").await;
    agent.send("HUP");
    wait_until("the reload to be logged", Duration::from_secs(10), || {
        std::future::ready(
            agent
                .log()
                .contains("configuration reloaded: nothing changed")
                .then_some(()),
        )
    })
    .await;
    the_only_file_arrives(&owner, &floor.path("indigo"), "after.pdf").await;
    assert!(agent.signal("TERM").await.success(), "{}", agent.log());
    let log = agent.log();
    // The start-up line says what runs, from where, on what.
    let config = floor.dir.path().join("tbot.toml");
    let journal = floor.path("state").join("journal.sqlite3");
    let start = log
        .lines()
        .find(|l| l.contains("tbot agent starting"))
        .unwrap();
    for says in [
        format!("version={}", env!("CARGO_PKG_VERSION")),
        format!("config={}", config.display()),
        format!("journal={}", journal.display()),
        "queues=indigo-7900".to_string(),
    ] {
        assert!(start.contains(&says), "{says} missing from: {start}");
    }
    server.stop().await;
}
