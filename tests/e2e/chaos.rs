//! The chaos test: the built agent, killed with SIGKILL at seeded random moments while
//! a batch of deliveries of mixed sizes crosses a faulty network into three hotfolders,
//! one of which takes each job as a folder with a JDF ticket. Every file, job folder
//! and ticket must arrive exactly once, whole, and every delivery must be reported.
//! Set `TBOT_CHAOS_SEED` to repeat a run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::support::*;

const QUEUES: [(&str, &str); 3] = [
    ("indigo-7900", "indigo"),
    ("trendsetter", "ctp"),
    ("prinergy", "imposition"),
];
/// The queue whose jobs arrive as a job folder with a JDF ticket in it.
const FOLDER_QUEUE: usize = 2;
const FOLDER_PROFILE: &str = "layout = \"folder\"\nnaming = \"{name}\"\nticket = \"jdf\"\n";
const JOBS: usize = 100;
const KILLS: usize = 12;

/// Watches hotfolders from a thread, hashing each file the moment it appears, so a
/// partial or corrupt file is caught even if it were later replaced.
struct Watcher {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeMap<PathBuf, String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(folders: Vec<PathBuf>) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<BTreeMap<PathBuf, String>>> = Arc::default();
        let (stop_flag, record) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !stop_flag.load(Ordering::Relaxed) {
                for folder in &folders {
                    for path in files_below(folder) {
                        let known = record.lock().unwrap().contains_key(&path);
                        if !known {
                            let hash = sha256_file(&path);
                            record.lock().unwrap().entry(path).or_insert(hash);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Watcher {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> BTreeMap<PathBuf, String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("watcher thread");
        }
        self.seen.lock().unwrap().clone()
    }
}

/// The visible files of a hotfolder, and those of the job folders in it.
fn files_below(folder: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for name in visible_files(folder) {
        let path = folder.join(name);
        if path.is_dir() {
            files.extend(
                visible_files(&path)
                    .into_iter()
                    .map(|inner| path.join(inner)),
            );
        } else {
            files.push(path);
        }
    }
    files
}

fn file_size(rng: &mut StdRng) -> usize {
    match rng.random_range(0..100) {
        0..70 => rng.random_range(1..64 * 1024),
        70..95 => rng.random_range(64 * 1024..1024 * 1024),
        _ => rng.random_range(2 * 1024 * 1024..4 * 1024 * 1024),
    }
}

#[tokio::test]
async fn sigkill_at_random_moments_still_delivers_every_file_exactly_once() {
    let seed: u64 = std::env::var("TBOT_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_121);
    eprintln!("chaos seed {seed} (set TBOT_CHAOS_SEED to repeat)");
    let mut rng = StdRng::seed_from_u64(seed);
    let server = start_server(|settings| {
        settings.model.lease = Duration::from_secs(4);
        settings.model.retry_hold = Duration::from_millis(200);
    })
    .await;
    let floor = Floor::new(&QUEUES.map(|(_, folder)| folder));
    let queues: Vec<(&str, &str, PathBuf)> = QUEUES
        .iter()
        .map(|(name, folder)| (*name, "printer", floor.path(folder)))
        .collect();
    let queue_refs: Vec<(&str, &str, &std::path::Path)> = queues
        .iter()
        .map(|(n, k, p)| (*n, *k, p.as_path()))
        .collect();
    let folder_hotfolder = format!(
        "hotfolder = {:?}\n",
        queues[FOLDER_QUEUE].2.display().to_string()
    );
    let config = agent_config_text(&server.url(), TOKEN, &floor.path("state"), &queue_refs, "")
        .replace("level = \"debug\"", "level = \"info\"")
        .replace(
            &folder_hotfolder,
            &format!("{folder_hotfolder}{FOLDER_PROFILE}"),
        );
    assert!(config.contains(FOLDER_PROFILE), "{config}");
    let owner = operator(&server, "owner");
    let mut agent = AgentProcess::start(floor.dir.path(), &config);
    wait_connected(&owner, &QUEUES.map(|(name, _)| name)).await;
    let watcher = Watcher::start(
        QUEUES
            .iter()
            .map(|(_, folder)| floor.path(folder))
            .collect(),
    );

    set_faults(
        &owner,
        json!({"seed": seed, "error_rate": 0.03, "truncate_rate": 0.05, "corrupt_rate": 0.02, "bytes_per_second": 48 * 1024 * 1024}),
    )
    .await;
    // What must end up where: hotfolder path -> SHA-256.
    let mut expected: BTreeMap<PathBuf, String> = BTreeMap::new();
    // Each job folder's ticket: its bytes are known only once written.
    let mut tickets: BTreeSet<PathBuf> = BTreeSet::new();
    let mut jobs = Vec::new();
    for n in 0..JOBS {
        let first = n % QUEUES.len();
        let mut chosen = vec![first];
        if n % 5 == 0 {
            chosen.push((first + 1) % QUEUES.len());
        }
        let names: Vec<String> = chosen.iter().map(|&q| QUEUES[q].0.to_string()).collect();
        let job = owner
            .create_job(&format!("Chaos {n}"), None, &names)
            .await
            .unwrap();
        let file_count = if n % 7 == 0 { 2 } else { 1 };
        for f in 0..file_count {
            let bytes = sample_bytes(file_size(&mut rng), seed ^ (n as u64 * 31 + f as u64));
            let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            let name = format!("page-{f}.pdf");
            owner.upload(&job, &name, bytes).await.unwrap();
            for &q in &chosen {
                let path = if q == FOLDER_QUEUE {
                    tickets.insert(
                        floor
                            .path(QUEUES[q].1)
                            .join(&job)
                            .join(format!("{job}.jdf")),
                    );
                    floor.path(QUEUES[q].1).join(&job).join(&name)
                } else {
                    floor.path(QUEUES[q].1).join(format!("{job}_{name}"))
                };
                expected.insert(path, sha.clone());
            }
        }
        owner
            .post(&format!("/jobs/{job}/approve"), json!({}))
            .await
            .unwrap();
        jobs.push(job);
    }
    let sent = owner.send(&jobs, None).await.unwrap();
    assert!(sent["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["ok"] == json!(true)));
    let delivery_count = deliveries(&owner).await.len();
    assert!(delivery_count >= 100, "only {delivery_count} deliveries");

    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..1200))).await;
        agent.signal("KILL").await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        agent.restart();
    }

    let settled = wait_until(
        "every delivery to be completed",
        Duration::from_secs(180),
        || async {
            let all = deliveries(&owner).await;
            all.iter()
                .all(|d| d["state"] == json!("completed"))
                .then_some(all)
        },
    )
    .await;
    agent.signal("TERM").await;
    let seen = watcher.finish();

    // Nothing partial or corrupt was ever visible, and nothing unexpected appeared: a
    // ticket was whole when its job folder appeared (it never changed after).
    for (path, hash) in &seen {
        match expected.get(path) {
            Some(want) => assert_eq!(
                hash,
                want,
                "{} was visible with the wrong bytes",
                path.display()
            ),
            None if tickets.contains(path) => assert_eq!(
                hash,
                &sha256_file(path),
                "{} changed after it was visible",
                path.display()
            ),
            None => panic!("unexpected file {} (a duplicate drop?)", path.display()),
        }
    }
    // Exactly once: every expected file and ticket is there, whole, and nothing else is.
    let mut present = BTreeSet::new();
    for (_, folder) in QUEUES {
        present.extend(files_below(&floor.path(folder)));
        let staging = visible_files(&floor.path(folder).join(".tbot"));
        assert!(
            staged_files(&floor.path(folder)).is_empty()
                && staging.iter().all(|name| !name.ends_with(".folder")),
            "staging left in {folder}: {staging:?}"
        );
    }
    let mut wanted: BTreeSet<PathBuf> = expected.keys().cloned().collect();
    wanted.extend(tickets.iter().cloned());
    assert_eq!(present, wanted);
    for ticket in &tickets {
        let jdf = std::fs::read_to_string(ticket).unwrap();
        assert!(
            jdf.contains("URL=\"page-0.pdf\""),
            "{}: {jdf}",
            ticket.display()
        );
    }
    for (path, want) in &expected {
        assert_eq!(
            &sha256_file(path),
            want,
            "{} has the wrong bytes",
            path.display()
        );
    }
    // Every delivery was reported with the paths the files really have.
    for delivery in &settled {
        let folder = QUEUES
            .iter()
            .find(|(name, _)| delivery["queue"] == json!(name))
            .unwrap()
            .1;
        for file in delivery["files"].as_array().unwrap() {
            let path = floor.path(folder).join(file["path"].as_str().unwrap());
            assert!(
                expected.contains_key(&path),
                "reported path {} is not expected",
                path.display()
            );
        }
    }
    let log = agent.log();
    let carried_on = log.matches("carrying on after a restart").count();
    let resumed = log.matches("resuming the transfer").count();
    let redelivered = log.matches("already dropped here").count();
    eprintln!("{delivery_count} deliveries; after kills: {carried_on} carried on, {resumed} transfers resumed, {redelivered} re-handed deliveries reported without a second drop");
    assert!(
        carried_on > 0,
        "no kill interrupted a delivery: the test proved nothing"
    );
    server.stop().await;
}
