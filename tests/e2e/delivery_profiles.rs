//! Delivery profiles (`[[queue]]` layout, subfolder, ticket, trigger, max_waiting and
//! the device's verdict folders) with real files: a watcher on the hotfolder records
//! the order in which names appear, tickets are parsed back, and the job side hears
//! what the device did.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};
use quick_xml::events::Event as XmlEvent;
use serde_json::{json, Value};
use tbot::operator_client::OperatorClient;

use crate::scripted::*;
use crate::support::*;

/// The ticket the tests give their jobs: every field set.
fn full_ticket() -> Value {
    json!({"quantity": 500, "sides": "two_sided", "color": "cmyk",
           "media": {"name": "Gloss 350", "width_mm": 85, "height_mm": 55, "weight_gsm": 350},
           "finishing": ["cut"], "due": "2026-11-23T16:00:00Z", "notes": "rush"})
}

/// Creates, approves and sends a job of `files` (name, text) for `customer`, with
/// `ticket`, to `indigo-7900`; its id.
async fn send_job(
    owner: &OperatorClient,
    name: &str,
    order: &str,
    customer: &str,
    ticket: Value,
    files: &[(&str, &str)],
) -> String {
    let files: Vec<Value> = files
        .iter()
        .map(|(name, content)| json!({"name": name, "content": content}))
        .collect();
    let job = owner
        .post(
            "/jobs",
            json!({"name": name, "order_number": order, "queues": ["indigo-7900"],
                   "files": files, "customer": customer, "ticket": ticket}),
        )
        .await
        .expect("job");
    let id = job["id"].as_str().expect("job id").to_string();
    owner
        .post(&format!("/jobs/{id}/approve"), json!({}))
        .await
        .expect("approve");
    let sent = owner
        .send(std::slice::from_ref(&id), None)
        .await
        .expect("send");
    assert_eq!(sent["results"][0]["ok"], json!(true), "{sent}");
    id
}

/// Every name that appears in `folder` (created or moved in), in the order the file
/// system told of them.
struct AppearanceLog {
    _watcher: notify::RecommendedWatcher,
    seen: Arc<Mutex<Vec<String>>>,
}

impl AppearanceLog {
    fn watch(folder: &Path) -> AppearanceLog {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let root = folder.to_path_buf();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                let appeared = matches!(
                    event.kind,
                    notify::EventKind::Create(_)
                        | notify::EventKind::Modify(notify::event::ModifyKind::Name(
                            notify::event::RenameMode::To | notify::event::RenameMode::Any
                        ))
                );
                if appeared {
                    for path in event.paths {
                        if let Ok(name) = path.strip_prefix(&root) {
                            log.lock().unwrap().push(name.display().to_string());
                        }
                    }
                }
            })
            .expect("watcher");
        watcher
            .watch(folder, RecursiveMode::NonRecursive)
            .expect("watch");
        AppearanceLog {
            _watcher: watcher,
            seen,
        }
    }

    fn names(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// Where `name` first appeared; panics naming the log when it never did.
    fn position(&self, name: &str) -> usize {
        let names = self.names();
        names
            .iter()
            .position(|seen| seen == name)
            .unwrap_or_else(|| panic!("{name} never appeared: {names:?}"))
    }
}

/// The attributes of every element called `element` in `xml`, in document order.
fn attributes_of(xml: &str, element: &str) -> Vec<Vec<(String, String)>> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut found = Vec::new();
    loop {
        match reader.read_event().expect("the ticket is well-formed XML") {
            XmlEvent::Start(tag) | XmlEvent::Empty(tag) if tag.local_name().as_ref() == element => {
                found.push(
                    tag.attributes()
                        .map(|attribute| {
                            let attribute = attribute.expect("attribute");
                            (
                                attribute.key.local_name().as_ref().to_string(),
                                quick_xml::escape::unescape(&attribute.value)
                                    .expect("escaped value")
                                    .into_owned(),
                            )
                        })
                        .collect(),
                );
            }
            XmlEvent::Eof => return found,
            _ => {}
        }
    }
}

fn attribute<'a>(attributes: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

async fn wait_for_file(path: PathBuf) {
    wait_until(
        &format!("{}", path.display()),
        Duration::from_secs(20),
        || std::future::ready(path.exists().then_some(())),
    )
    .await;
}

/// Loose files in `{customer}/{order}` subfolders: the JDF ticket appears after both
/// files it names, each trigger after what it follows, and the ticket names the
/// files by relative URL and carries the job's ticket, hostile values and all.
#[tokio::test]
async fn a_jdf_ticket_and_triggers_come_after_the_files_they_name() {
    let setup = OneQueue::start(
        "subfolder = \"{customer}/{order}\"\nticket = \"jdf\"\ntrigger = \"{name}.trg\"\nnaming = \"{job}_{name}\"",
    )
    .await;
    let hotfolder = setup.floor.path("indigo");
    // The subfolders are made as needed; this one is watched from before the drop.
    let folder = hotfolder.join("Smith & Co").join("MC-5521");
    std::fs::create_dir_all(&folder).unwrap();
    let log = AppearanceLog::watch(&folder);
    let hostile = "Cards \"A&B\" <rush> \u{1} ]]>";
    let mut ticket = full_ticket();
    ticket["notes"] = json!(hostile);
    ticket["media"]["name"] = json!("Gloss <350> & 'silk'");
    let job = send_job(
        &setup.owner,
        hostile,
        "MC-5521",
        "Smith & Co",
        ticket,
        &[("cover.pdf", "cover"), ("inside pages.pdf", "content")],
    )
    .await;
    let ticket_name = format!("MC-5521_{job}.jdf");
    wait_for_file(folder.join(format!("{ticket_name}.trg"))).await;
    let cover = format!("{job}_cover.pdf");
    let inside = format!("{job}_inside pages.pdf");
    let ticket_at = log.position(&ticket_name);
    for data in [&cover, &inside] {
        assert!(log.position(data) < ticket_at, "{:?}", log.names());
        assert!(
            log.position(&format!("{data}.trg")) > log.position(data),
            "{:?}",
            log.names()
        );
        assert!(
            log.position(&format!("{data}.trg")) > ticket_at,
            "{:?}",
            log.names()
        );
    }
    let jdf = std::fs::read_to_string(folder.join(&ticket_name)).unwrap();
    let root = &attributes_of(&jdf, "JDF")[0];
    assert_eq!(attribute(root, "JobID"), Some(job.as_str()));
    assert!(
        attribute(root, "Version").is_some_and(|v| v.starts_with("1.")),
        "{root:?}"
    );
    assert_eq!(
        attribute(root, "DescriptiveName"),
        Some("Cards \"A&B\" <rush> \u{fffd} ]]>")
    );
    let urls: Vec<String> = attributes_of(&jdf, "FileSpec")
        .iter()
        .filter_map(|spec| attribute(spec, "URL").map(String::from))
        .collect();
    assert_eq!(urls, [cover.clone(), inside.replace(' ', "%20")]);
    let media = &attributes_of(&jdf, "Media")[0];
    assert_eq!(
        attribute(media, "DescriptiveName"),
        Some("Gloss <350> & 'silk'")
    );
    assert_eq!(attribute(media, "Weight"), Some("350"));
    let amounts: Vec<String> = attributes_of(&jdf, "ComponentLink")
        .iter()
        .chain(attributes_of(&jdf, "Component").iter())
        .filter_map(|c| attribute(c, "Amount").map(String::from))
        .collect();
    assert!(amounts.contains(&"500".to_string()), "{jdf}");
    // What the job side was told: the paths below the hotfolder.
    let settled = wait_deliveries_settled(&setup.owner, &["completed"]).await;
    let paths: Vec<&str> = settled[0]["files"]
        .as_array()
        .map(|files| files.iter().filter_map(|f| f["path"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        paths,
        [
            format!("Smith & Co/MC-5521/{cover}"),
            format!("Smith & Co/MC-5521/{inside}")
        ],
        "{settled:?}"
    );
    setup.stop().await;
}

/// A job folder appears whole: when its name first shows in the hotfolder, every
/// file and the ticket are in it already; its trigger comes after it. It has the
/// hotfolder's permissions (a group-writable share here), whatever tbot's umask, so a
/// device running as another user can take it away.
#[tokio::test]
async fn a_job_folder_appears_whole_with_its_ticket_and_then_its_trigger() {
    let setup = OneQueue::start(
        "layout = \"folder\"\nfolder = \"{order}_{job}\"\nnaming = \"{name}\"\nticket = \"xjdf\"\ntrigger = \"{name}.trg\"",
    )
    .await;
    let hotfolder = setup.floor.path("indigo");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hotfolder, std::fs::Permissions::from_mode(0o2775)).unwrap();
    let first_look: Arc<Mutex<Option<Vec<String>>>> = Arc::new(Mutex::new(None));
    let seen = first_look.clone();
    let root = hotfolder.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        for path in event.paths {
            let is_job_folder = path.parent() == Some(root.as_path())
                && path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("MC-7_"))
                && path.is_dir();
            let mut seen = seen.lock().unwrap();
            if is_job_folder && seen.is_none() {
                *seen = Some(visible_files(&path));
            }
        }
    })
    .unwrap();
    watcher
        .watch(&hotfolder, RecursiveMode::NonRecursive)
        .unwrap();
    let job = send_job(
        &setup.owner,
        "Brochure",
        "MC-7",
        "Smith",
        full_ticket(),
        &[("cover.pdf", "c"), ("content.pdf", "i"), ("cyan.tif", "s")],
    )
    .await;
    let folder = format!("MC-7_{job}");
    wait_for_file(hotfolder.join(format!("{folder}.trg"))).await;
    let ticket = format!("MC-7_{job}.xjdf");
    let mut whole = vec![
        "content.pdf".to_string(),
        "cover.pdf".into(),
        "cyan.tif".into(),
        ticket.clone(),
    ];
    whole.sort();
    assert_eq!(first_look.lock().unwrap().clone(), Some(whole.clone()));
    let mode = std::fs::metadata(hotfolder.join(&folder))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o2775, "job folder mode {mode:o}");
    assert_eq!(visible_files(&hotfolder.join(&folder)), whole);
    let xjdf = std::fs::read_to_string(hotfolder.join(&folder).join(&ticket)).unwrap();
    let root = &attributes_of(&xjdf, "XJDF")[0];
    assert_eq!(attribute(root, "JobID"), Some(job.as_str()));
    assert_eq!(
        attribute(root, "xmlns"),
        Some("http://www.CIP4.org/JDFSchema_2_0")
    );
    let urls: Vec<String> = attributes_of(&xjdf, "FileSpec")
        .iter()
        .filter_map(|spec| attribute(spec, "URL").map(String::from))
        .collect();
    assert_eq!(urls, ["cover.pdf", "content.pdf", "cyan.tif"]);
    let product = &attributes_of(&xjdf, "Product")[0];
    assert_eq!(attribute(product, "Amount"), Some("500"));
    assert!(staged_files(&hotfolder).is_empty());
    setup.stop().await;
}

/// With `max_waiting = 2`, a third delivery stays with the job side while two dropped
/// files wait, the queue is announced stalled saying why, and it comes as soon as the
/// device takes one.
#[tokio::test]
async fn max_waiting_holds_deliveries_on_the_job_side_until_the_device_takes_files() {
    let setup = OneQueue::start("max_waiting = 2").await;
    let hotfolder = setup.floor.path("indigo");
    for n in 0..2 {
        send_file(
            &setup.owner,
            &format!("Flyer {n}"),
            "indigo-7900",
            &format!("f{n}.pdf"),
            sample_bytes(100, n),
        )
        .await;
    }
    wait_until("two files waiting", Duration::from_secs(20), || {
        std::future::ready((visible_files(&hotfolder).len() == 2).then_some(()))
    })
    .await;
    let queue = wait_until(
        "the queue announced stalled",
        Duration::from_secs(20),
        || async {
            let queues = setup.owner.get("/queues").await.unwrap();
            queues["queues"]
                .as_array()
                .and_then(|queues| queues.iter().find(|q| q["status"] == "stalled").cloned())
        },
    )
    .await;
    assert!(
        queue["detail"]
            .as_str()
            .unwrap()
            .contains("max_waiting = 2"),
        "{queue}"
    );
    send_file(
        &setup.owner,
        "Flyer 2",
        "indigo-7900",
        "f2.pdf",
        sample_bytes(100, 2),
    )
    .await;
    // Two more checks of the agent: the delivery is still pending on the job side.
    two_more_checks(&setup.owner).await;
    let held = deliveries(&setup.owner).await;
    let pending: Vec<&Value> = held.iter().filter(|d| d["state"] == "pending").collect();
    assert_eq!(pending.len(), 1, "{held:?}");
    assert_eq!(visible_files(&hotfolder).len(), 2);
    // The device takes one file: the held delivery comes.
    std::fs::remove_file(hotfolder.join(&visible_files(&hotfolder)[0])).unwrap();
    wait_deliveries_settled(&setup.owner, &["completed"]).await;
    assert_eq!(visible_files(&hotfolder).len(), 2);
    setup.stop().await;
}

/// A file the device moves into its success or error folder is reported `accepted`
/// or `rejected` (not a bare `picked_up`) within a second on a local disk.
#[tokio::test]
async fn the_devices_verdict_reaches_the_job_side_within_a_second() {
    let setup =
        OneQueue::start("accepted_folder = \"Input_Success\"\nrejected_folder = \"Input_Error\"")
            .await;
    let hotfolder = setup.floor.path("indigo");
    std::fs::create_dir_all(hotfolder.join("Input_Success")).unwrap();
    std::fs::create_dir_all(hotfolder.join("Input_Error")).unwrap();
    let good = send_file(
        &setup.owner,
        "Good",
        "indigo-7900",
        "good.pdf",
        sample_bytes(100, 1),
    )
    .await;
    let bad = send_file(
        &setup.owner,
        "Bad",
        "indigo-7900",
        "bad.pdf",
        sample_bytes(100, 2),
    )
    .await;
    wait_deliveries_settled(&setup.owner, &["completed"]).await;
    for (job, folder, verdict) in [
        (&good, "Input_Success", "accepted"),
        (&bad, "Input_Error", "rejected"),
    ] {
        let name = visible_files(&hotfolder)
            .into_iter()
            .find(|name| name.contains(job.as_str()))
            .expect("dropped file");
        let moved = Instant::now();
        std::fs::rename(hotfolder.join(&name), hotfolder.join(folder).join(&name)).unwrap();
        let events = wait_until(
            &format!("{verdict} for {job}"),
            Duration::from_secs(10),
            || async {
                let all = deliveries(&setup.owner).await;
                let delivery = all.into_iter().find(|d| d["job"] == json!(job))?;
                let events = delivery["events"].as_array()?.clone();
                events
                    .iter()
                    .any(|e| e["event"] == verdict)
                    .then_some(events)
            },
        )
        .await;
        let took = moved.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "the {verdict} verdict took {took:?}"
        );
        let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
        assert_eq!(kinds, [verdict], "{events:?}");
        assert!(
            events[0]["detail"].as_str().unwrap().contains(folder),
            "{events:?}"
        );
    }
    setup.stop().await;
}

/// A version-1 job side (no customer, ticket or roles; no whoami) still gets its files
/// delivered into a job folder, with a ticket that names the files and invents none of
/// the job's ticket fields.
#[tokio::test]
async fn a_version_1_server_gets_its_files_with_a_ticket_of_no_invented_fields() {
    let (a, b) = (sample_bytes(3000, 1), sample_bytes(4000, 2));
    let claim = delivery(
        "d-v1",
        time::OffsetDateTime::now_utc() + time::Duration::minutes(5),
        &[("a.pdf", "/f/a", &a), ("b.pdf", "/f/b", &b)],
    );
    let server = ScriptedServer::builder()
        .file("/f/a", a.clone(), Duration::ZERO)
        .file("/f/b", b.clone(), Duration::ZERO)
        .claim_deliveries(vec![claim])
        .start()
        .await;
    let floor = Floor::new(&["indigo"]);
    let agent = RunningAgent::start(&one_queue_config(
        &server.url,
        &floor,
        "layout = \"folder\"\nticket = \"jdf\"\nsubfolder = \"{customer}\"",
    ));
    let complete = wait_until(
        "the delivery to be completed",
        Duration::from_secs(20),
        || {
            std::future::ready(
                server
                    .seen_ending("/deliveries/d-v1/complete")
                    .first()
                    .map(Seen::json),
            )
        },
    )
    .await;
    let folder = floor.path("indigo").join("MC-1_J-1");
    assert_eq!(std::fs::read(folder.join("MC-1_J-1_a.pdf")).unwrap(), a);
    assert_eq!(complete["files"][1]["path"], "MC-1_J-1/MC-1_J-1_b.pdf");
    let jdf = std::fs::read_to_string(folder.join("MC-1_J-1.jdf")).unwrap();
    assert_eq!(attributes_of(&jdf, "FileSpec").len(), 2);
    for invented in ["Media", "Component", "LayoutPreparationParams", "NodeInfo"] {
        assert!(
            attributes_of(&jdf, invented).is_empty(),
            "{invented} in {jdf}"
        );
    }
    agent.stop().await;
}

/// Every recipe in `docs/devices.md` is a `[[queue]]` the agent takes.
#[test]
fn every_device_recipe_is_a_valid_queue() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/devices.md")).unwrap();
    let recipes: Vec<&str> = doc
        .split("```toml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .collect();
    assert_eq!(recipes.len(), 7, "one recipe per device family");
    for recipe in recipes {
        let text = format!(
            "[server]\nurl = \"https://jobs.example.com\"\ntoken = \"t\"\n[agent]\nname = \"a\"\n{recipe}"
        );
        if let Err(problems) = tbot::config::Config::parse(&text, None) {
            panic!("{recipe}\n{problems:?}");
        }
    }
}
