//! `tbot demo`: the whole path on one machine. Starts the bundled job side, creates
//! hotfolders for a printer, a CTP and an imposition system, sends sample jobs (one by
//! AutoSend, one sent again), runs the agent until every delivery is complete and
//! prints what landed where, each file's checksum checked again on disk.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::agent::Agent;
use crate::config::Config;
use crate::control::Control;
use crate::mockserver::model::Template;
use crate::mockserver::{MockServer, MockSettings, UserEntry};
use crate::operator_client::OperatorClient;

/// Marks a folder as the demo's own, so a second run may clear its hotfolders.
const MARKER: &str = ".tbot-demo";

/// How long the demo waits for the deliveries before it gives up.
const DEADLINE: Duration = Duration::from_secs(120);

const DEMO_TOKEN: &str = "demo-agent-token";

/// The token the demo's online store sends its order with.
const STORE_TOKEN: &str = "demo-store-token";

/// The demo's queues: name, kind, hotfolder folder name.
/// The demo's queues: name, kind, and delivery profile. The CTP takes each job's
/// plates as one folder; the imposition system takes a JDF ticket beside the files.
const QUEUES: [(&str, &str, &str); 3] = [
    (
        "indigo-7900",
        "printer",
        "naming = \"{order}_{job}_{name}\"\n",
    ),
    (
        "trendsetter-ctp",
        "ctp",
        "layout = \"folder\"\nfolder = \"{order}_{job}\"\nnaming = \"{name}\"\n",
    ),
    (
        "prinergy-imposition",
        "imposition",
        "naming = \"{order}_{job}_{name}\"\nticket = \"jdf\"\nsubfolder = \"{customer}\"\n\
         accepted_folder = \"Input_Success\"\nrejected_folder = \"Input_Error\"\n",
    ),
];

/// Runs the demo in `dir` and prints the table of drops; with `keep_serving`, leaves
/// the job side and the agent running, for the web page, until Ctrl-C or SIGTERM.
pub async fn run(dir: &Path, keep_serving: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    prepare_dir(dir)?;
    let mut settings = MockSettings::default();
    settings.add_agent_token(DEMO_TOKEN);
    // A new password each run, kept in a file only its owner reads, never printed.
    let password = crate::mockserver::auth::random_token()[..16].to_string();
    settings
        .users
        .push(UserEntry::with_password("owner", "site_owner", &password));
    settings.model.retry_hold = Duration::from_secs(1);
    settings.store_token = Some(crate::config::Secret::new(STORE_TOKEN));
    settings.templates.insert(
        "flyer-a5".into(),
        Template {
            queues: vec!["indigo-7900".into()],
            approved: true,
        },
    );
    let server = MockServer::start(settings, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    println!("job side (mock server) listening on {}", server.url());

    let config_path = dir.join("tbot.toml");
    // It holds the demo's token: readable by its owner only, as tbot asks of a config.
    write_private(&config_path, &agent_config(dir, &server.url()))?;
    let config = Config::load(&config_path)?;
    println!("agent configuration written to {}", config_path.display());
    let control = Control::new();
    let agent = Agent::new(config, control.clone())?;
    let agent_task = tokio::spawn(agent.run());

    let outcome = match drive(&server, dir).await {
        Ok(rows) => report(&rows, started, dir),
        Err(err) => Err(err),
    };
    if keep_serving && outcome.is_ok() {
        let password_file = dir.join("web-password");
        write_private(&password_file, &format!("{password}\n"))?;
        println!(
            "\nThe job side's web page: open {url}/ and log in as owner with the password in \
             {file}. For tbot mock: export TBOT_MOCK_URL={url}, then export \
             TBOT_MOCK_TOKEN=$(tbot mock login owner < {file}). Ctrl-C stops the demo.",
            url = server.url(),
            file = password_file.display(),
        );
        Control::from_signals()?.shutdown().wait().await;
    }
    control.shutdown().trigger();
    agent_task.await??;
    server.stop().await;
    outcome
}

/// Prints the table of drops and the sum; fails when a dropped file does not match.
fn report(rows: &[Row], started: Instant, dir: &Path) -> anyhow::Result<()> {
    print_table(rows);
    let bad = rows.iter().filter(|row| !row.verified).count();
    println!(
        "\n{} files in {} deliveries, {} verified, in {:.1} s. Hotfolders: {}",
        rows.len(),
        rows.iter()
            .map(|r| &r.delivery)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        rows.len() - bad,
        started.elapsed().as_secs_f64(),
        dir.join("hotfolders").display()
    );
    let hotfolders = dir.join("hotfolders");
    for (queue, _, _) in QUEUES {
        for ticket in tickets_in(&hotfolders.join(queue)) {
            println!("job ticket after the files: {}", ticket.display());
        }
    }
    if bad > 0 {
        bail!("{bad} dropped files do not match their checksum");
    }
    Ok(())
}

/// The JDF tickets a queue's delivery profile wrote, in its hotfolder and the
/// subfolders below it (not tbot's staging folder).
fn tickets_in(folder: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            found.extend(tickets_in(&path));
        } else if path.extension().is_some_and(|ext| ext == "jdf") {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// Writes a file only its owner may read: it holds a token or a password.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", path.display()))?;
    Ok(())
}

/// Creates the demo folder, or clears the hotfolders of an earlier demo in it.
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    let is_ours = dir.join(MARKER).exists();
    let is_empty = std::fs::read_dir(dir)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true);
    if !is_ours && !is_empty {
        bail!(
            "{} already exists and is not a tbot demo folder; choose another with --dir",
            dir.display()
        );
    }
    // Each demo starts a new job side whose ids begin again at 1, so the hotfolders
    // and the journal of an earlier demo are cleared.
    for earlier in [dir.join("hotfolders"), dir.join("state")] {
        if earlier.exists() {
            std::fs::remove_dir_all(&earlier)
                .with_context(|| format!("cannot clear {}", earlier.display()))?;
        }
    }
    let hotfolders = dir.join("hotfolders");
    for (queue, _, _) in QUEUES {
        std::fs::create_dir_all(hotfolders.join(queue))
            .with_context(|| format!("cannot create a hotfolder in {}", hotfolders.display()))?;
    }
    std::fs::create_dir_all(dir.join("state"))?;
    std::fs::write(dir.join(MARKER), "made by tbot demo\n")?;
    Ok(())
}

fn agent_config(dir: &Path, server_url: &str) -> String {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut text = format!(
        "# Written by `tbot demo`: the agent's configuration for the demo's mock server.\n\
         [server]\nurl = \"{server_url}\"\ntoken = \"{DEMO_TOKEN}\"\ncheck_interval = \"1s\"\n\n\
         [agent]\nname = \"demo-floor\"\nstate_dir = {state:?}\nconcurrency = 4\n",
        state = dir.join("state").display().to_string(),
    );
    for (queue, kind, profile) in QUEUES {
        text.push_str(&format!(
            "\n[[queue]]\nname = \"{queue}\"\nkind = \"{kind}\"\nhotfolder = {:?}\n{profile}",
            dir.join("hotfolders").join(queue).display().to_string()
        ));
    }
    text
}

/// Deterministic sample bytes that look like a file of the given kind.
fn sample_file(header: &[u8], size: usize, seed: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&header[..header.len().min(size)]);
    let mut state = seed;
    while bytes.len() < size {
        // splitmix64: fast, and different for every seed.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let take = (size - bytes.len()).min(8);
        bytes.extend_from_slice(&z.to_le_bytes()[..take]);
    }
    bytes
}

/// Does what the people on the job side do, then waits for the agent.
async fn drive(server: &MockServer, dir: &Path) -> anyhow::Result<Vec<Row>> {
    let owner = server.operator("owner")?;
    wait_for(|| async {
        let queues = owner.get("/queues").await?;
        Ok(queues["queues"].as_array().map_or(0, Vec::len) == QUEUES.len())
    })
    .await
    .context("the agent's queues never connected")?;
    println!("agent connected: {} queues announced", QUEUES.len());

    let pdf = b"%PDF-1.7\n";
    let tiff = b"II*\0";
    owner
        .post(
            "/orders",
            json!({"number": "MC-5521", "queues": ["indigo-7900"]}),
        )
        .await?;
    let cards = owner
        .create_job("Business cards - Smith", Some("MC-5521"), &[])
        .await?;
    owner
        .upload(&cards, "cards-front.pdf", sample_file(pdf, 180_000, 1))
        .await?;
    owner
        .upload(&cards, "cards-back.pdf", sample_file(pdf, 150_000, 2))
        .await?;
    let brochure_queues = ["indigo-7900".to_string(), "prinergy-imposition".to_string()];
    let brochure = owner
        .create_job("Brochure A4 - spring", Some("MC-5521"), &brochure_queues)
        .await?;
    owner
        .put(
            &format!("/jobs/{brochure}/ticket"),
            json!({"customer": "Smith & Co", "ticket": {
                "quantity": 2500, "sides": "two_sided", "color": "cmyk",
                "media": {"name": "Silk 170", "width_mm": 210, "height_mm": 297, "weight_gsm": 170},
                "finishing": ["fold", "saddle_stitch"], "notes": "spring campaign"}}),
        )
        .await?;
    owner
        .upload(
            &brochure,
            "brochure.pdf",
            sample_file(pdf, 60 * 1024 * 1024, 3),
        )
        .await?;
    owner
        .upload(
            &brochure,
            "brochure-cover.pdf",
            sample_file(pdf, 2_000_000, 4),
        )
        .await?;
    let plates = owner
        .create_job(
            "Poster plates",
            Some("MC-5522"),
            &["trendsetter-ctp".to_string()],
        )
        .await?;
    for (index, colour) in ["cyan", "magenta", "yellow", "black"].iter().enumerate() {
        owner
            .upload(
                &plates,
                &format!("poster-{colour}.tif"),
                sample_file(tiff, 3_000_000, 10 + index as u64),
            )
            .await?;
    }
    println!("created orders MC-5521 ({cards}, {brochure}) and MC-5522 ({plates})");

    for job in [&cards, &brochure] {
        owner
            .post(&format!("/jobs/{job}/approve"), json!({}))
            .await?;
    }
    let sent = owner.send(&[cards.clone(), brochure.clone()], None).await?;
    for result in sent["results"].as_array().into_iter().flatten() {
        println!(
            "send to production {}: {}",
            result["job"],
            if result["ok"] == json!(true) {
                "marked for download"
            } else {
                "refused"
            }
        );
    }
    owner.put("/settings", json!({"autosend": true})).await?;
    owner
        .post(&format!("/jobs/{plates}/approve"), json!({}))
        .await?;
    println!("AutoSend on: {plates} went to production when it was approved");

    wait_for(|| async {
        Ok(owner.get(&format!("/jobs/{cards}")).await?["state"] == json!("sent_to_production"))
    })
    .await
    .context("the business cards never reached the printer")?;
    let again = owner
        .send(
            std::slice::from_ref(&cards),
            Some(&["indigo-7900".to_string()]),
        )
        .await?;
    if again["results"][0]["ok"] != json!(true) {
        bail!("Send Again was refused: {}", again["results"][0]["error"]);
    }
    println!("send again {cards}: a second copy goes to indigo-7900");

    store_order(server, &owner).await?;

    wait_for(|| async {
        let deliveries = owner.get("/deliveries").await?;
        let all = deliveries["deliveries"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(failed) = all.iter().find(|d| d["state"] == json!("failed")) {
            bail!("delivery {} failed: {}", failed["id"], failed["reason"]);
        }
        Ok(all.iter().all(|d| d["state"] == json!("completed")))
    })
    .await?;
    table_rows(&owner, &dir.join("hotfolders")).await
}

/// An order from an online store: in through the store connection, sent by AutoSend
/// (its template arrives approved), delivered, closed out with the card settled, and
/// its job completed.
async fn store_order(server: &MockServer, owner: &OperatorClient) -> anyhow::Result<()> {
    let flyer =
        base64::engine::general_purpose::STANDARD.encode(sample_file(b"%PDF-1.7\n", 400_000, 20));
    let order = json!({
        "store_order_id": "SHOP-88412", "order_number": "MC-6001", "customer": "Smith & Co",
        "payment": "credit_card",
        "line_items": [{
            "product": "flyer-a5", "name": "Flyers A5 - Smith", "quantity": 1000,
            "price": "89.00", "shipping": "7.50",
            "ship_to": {"name": "J. Smith", "street": "1 Main St", "city": "Springfield",
                        "postal_code": "12345", "country": "US"},
            "files": [{"name": "flyer.pdf", "content_base64": flyer}]
        }]
    });
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/store/orders", server.url()))
        .bearer_auth(STORE_TOKEN)
        .json(&order)
        .send()
        .await?;
    let status = response.status();
    let made: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("the store order was refused ({status}): {made}");
    }
    let job = made["jobs"][0].as_str().unwrap_or_default().to_string();
    println!("store order SHOP-88412 came in as order MC-6001 ({job}); AutoSend sent it");
    wait_for(|| async {
        Ok(owner.get(&format!("/jobs/{job}")).await?["state"]
            == json!("waiting_for_order_closeout"))
    })
    .await
    .context("the store order's job never reached its closeout")?;
    let closeout = owner.post("/orders/MC-6001/closeout", json!({})).await?;
    owner
        .post(&format!("/jobs/{job}/complete"), json!({}))
        .await?;
    println!(
        "closed out MC-6001: packing slip, invoice of {}, card charged ({}); {job} completed",
        closeout["invoice"]["total"].as_str().unwrap_or("?"),
        closeout["settlement"]["id"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// Polls `check` every 100 ms until it says yes, or fails after [`DEADLINE`].
async fn wait_for<F, Fut>(mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await? {
        if Instant::now() > deadline {
            bail!("gave up waiting after {} s", DEADLINE.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// One dropped file in the demo's table.
struct Row {
    order: String,
    job: String,
    delivery: String,
    queue: String,
    file: String,
    path: PathBuf,
    verified: bool,
}

/// Reads every completed delivery and hashes each dropped file again on disk.
async fn table_rows(owner: &OperatorClient, hotfolders: &Path) -> anyhow::Result<Vec<Row>> {
    let jobs = owner.get("/jobs").await?;
    let mut expected: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut orders: BTreeMap<String, String> = BTreeMap::new();
    for job in jobs["jobs"].as_array().into_iter().flatten() {
        let id = job["id"].as_str().unwrap_or_default().to_string();
        orders.insert(
            id.clone(),
            job["order_number"].as_str().unwrap_or("-").to_string(),
        );
        for file in job["files"].as_array().into_iter().flatten() {
            expected.insert(
                (
                    id.clone(),
                    file["name"].as_str().unwrap_or_default().to_string(),
                ),
                file["sha256"].as_str().unwrap_or_default().to_string(),
            );
        }
    }
    let deliveries = owner.get("/deliveries").await?;
    let mut rows = Vec::new();
    for delivery in deliveries["deliveries"].as_array().into_iter().flatten() {
        let job = delivery["job"].as_str().unwrap_or_default().to_string();
        let queue = delivery["queue"].as_str().unwrap_or_default().to_string();
        for file in delivery["files"].as_array().into_iter().flatten() {
            let name = file["name"].as_str().unwrap_or_default().to_string();
            let path = hotfolders
                .join(&queue)
                .join(file["path"].as_str().unwrap_or_default());
            let want = expected
                .get(&(job.clone(), name.clone()))
                .cloned()
                .unwrap_or_default();
            let verified = sha256_of_file(&path).is_ok_and(|have| have == want);
            rows.push(Row {
                order: orders.get(&job).cloned().unwrap_or_default(),
                job: job.clone(),
                delivery: delivery["id"].as_str().unwrap_or_default().to_string(),
                queue: queue.clone(),
                file: name,
                path,
                verified,
            });
        }
    }
    Ok(rows)
}

fn sha256_of_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

fn print_table(rows: &[Row]) {
    let header = ["ORDER", "JOB", "QUEUE", "FILE", "PATH", "CHECKSUM"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|row| {
            [
                row.order.clone(),
                row.job.clone(),
                row.queue.clone(),
                row.file.clone(),
                row.path.display().to_string(),
                if row.verified {
                    "verified".into()
                } else {
                    "MISMATCH".into()
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    println!();
    let line = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(&header.map(String::from));
    for row in &cells {
        line(row);
    }
}
