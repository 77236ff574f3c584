//! tbot's performance goals, measured: `cargo bench --bench perf [-- SCENARIO...]`.
//!
//! Scenarios: `throughput` (1 GiB from the mock server and from a plain HTTP file
//! server, against curl in the same run), `memory` (peak RSS for 100 MiB and 1 GiB),
//! `latency` (a small job with `check_interval = "5m"`), `idle` (CPU and memory of an
//! idle agent over `TBOT_BENCH_IDLE_SECONDS`, default 60), `separations` (one job of
//! four 256 MiB files), `many-jobs` (2,000 deliveries of 64 KiB) and `many-agents`
//! (50 agents of 4 queues claiming at once). Without arguments, all of them. The agent runs as the built binary, the job side in this
//! process. Results are medians; ratios are against a baseline measured in the same run.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tbot::mockserver::model::{FileLocation, NewFile};
use tbot::mockserver::{MockServer, MockSettings, StoredFile};

const TOKEN: &str = "bench-token";
const RUNS: usize = 5;

fn main() {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let all = [
        "throughput",
        "memory",
        "latency",
        "idle",
        "separations",
        "many-jobs",
        "many-agents",
    ];
    for scenario in all {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == scenario) {
            continue;
        }
        println!("\n## {scenario}\n");
        runtime.block_on(async {
            match scenario {
                "throughput" => throughput().await,
                "memory" => memory().await,
                "latency" => latency().await,
                "idle" => idle().await,
                "separations" => separations().await,
                "many-jobs" => many_jobs().await,
                _ => many_agents().await,
            }
        });
    }
}

// ----- the pieces every scenario uses ---------------------------------------------------

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[((values.len() - 1) as f64 * p).round() as usize]
}

fn random_bytes(size: usize, seed: u64) -> Bytes {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes()[..(size - out.len()).min(8)]);
    }
    Bytes::from(out)
}

async fn start_server(configure: impl FnOnce(&mut MockSettings)) -> MockServer {
    let mut settings = MockSettings::default();
    settings.add_agent_token(TOKEN);
    configure(&mut settings);
    MockServer::start(settings, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("mock server")
}

/// Creates an approved job with one file (stored on the mock, or behind `url`).
fn add_job(
    server: &MockServer,
    queue: &str,
    name: &str,
    bytes: &Bytes,
    url: Option<String>,
) -> String {
    add_job_files(server, queue, name, &[(format!("{name}.pdf"), bytes, url)])
}

/// An approved job with several files, each stored on the mock server or, with a URL,
/// somewhere else.
fn add_job_files(
    server: &MockServer,
    queue: &str,
    name: &str,
    files: &[(String, &Bytes, Option<String>)],
) -> String {
    let stored: Vec<StoredFile> = files
        .iter()
        .map(|(_, bytes, _)| StoredFile::new((*bytes).clone()))
        .collect();
    let now = server.state.clock.now();
    let mut model = server.state.model();
    let new_files = files
        .iter()
        .zip(&stored)
        .map(|((file_name, bytes, url), stored)| NewFile {
            name: file_name.clone(),
            size: bytes.len() as i64,
            sha256: stored.sha256.clone(),
            location: url
                .clone()
                .map_or(FileLocation::Stored, FileLocation::External),
            role: tbot::protocol::FileRole::Content,
        })
        .collect();
    let job = model
        .create_job(name, None, vec![queue.to_string()], new_files)
        .expect("job");
    let (id, job_files) = (job.id.clone(), job.files.clone());
    model.approve(&id, now).expect("approve");
    drop(model);
    for ((file, stored), (_, _, url)) in job_files.iter().zip(stored).zip(files) {
        if url.is_none() {
            server.state.files.put(&file.id, stored);
        }
    }
    id
}

fn send(server: &MockServer, jobs: &[String]) {
    let now = server.state.clock.now();
    let results = server
        .state
        .model()
        .send("owner", jobs, None, now)
        .expect("send");
    assert!(results.iter().all(|r| r.ok), "send refused");
    server.state.wake_claims();
}

fn queue_connected(server: &MockServer, queue: &str) -> bool {
    let model = server.state.model();
    model
        .queues()
        .get(queue)
        .is_some_and(|q| !q.agents.is_empty())
}

/// A `tbot run` process with its own config, state and hotfolders.
struct Agent {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Agent {
    fn start(server_url: &str, queues: &[&str], check_interval: &str, concurrency: usize) -> Agent {
        let dir = tempfile::tempdir_in(bench_dir()).expect("temp dir");
        let mut config = format!(
            "[server]\nurl = \"{server_url}\"\ntoken = \"{TOKEN}\"\ncheck_interval = \"{check_interval}\"\n\
             [agent]\nname = \"bench\"\nstate_dir = {:?}\nconcurrency = {concurrency}\n[log]\nlevel = \"warn\"\n",
            dir.path().join("state").display().to_string()
        );
        for queue in queues {
            let hotfolder = dir.path().join(queue);
            std::fs::create_dir_all(&hotfolder).expect("hotfolder");
            config.push_str(&format!(
                "[[queue]]\nname = \"{queue}\"\nkind = \"printer\"\nhotfolder = {:?}\nmax_file_size = \"4GiB\"\n",
                hotfolder.display().to_string()
            ));
        }
        std::fs::write(dir.path().join("tbot.toml"), config).expect("config");
        // The file holds the token: readable by its owner only, as tbot asks.
        let private = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600);
        std::fs::set_permissions(dir.path().join("tbot.toml"), private).expect("config mode");
        let child = Command::new(env!("CARGO_BIN_EXE_tbot"))
            .args(["run", "--config"])
            .arg(dir.path().join("tbot.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("tbot starts");
        Agent {
            dir,
            child: Some(child),
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn hotfolder(&self, queue: &str) -> PathBuf {
        self.dir.path().join(queue)
    }

    /// A field of /proc/PID/status in KiB, such as `VmHWM` (peak resident memory).
    fn status_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|line| line.starts_with(field))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    }

    /// CPU seconds used so far (user + system).
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
            + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        ticks as f64 / 100.0
    }

    async fn wait_ready(&self, server: &MockServer, queues: &[&str]) {
        while !queues.iter().all(|q| queue_connected(server, q)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let the first long poll open.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

/// Big files go under target/, on the project's disk, not a small /tmp.
fn bench_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-tmp");
    std::fs::create_dir_all(&dir).expect("bench dir");
    dir
}

/// Polls for `path` every millisecond; returns the time it took to appear.
async fn wait_for_file(path: &Path, started: Instant) -> f64 {
    while !path.exists() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    started.elapsed().as_secs_f64()
}

fn curl_seconds(url: &str, token: Option<&str>) -> f64 {
    let mut command = Command::new("curl");
    command.args(["-s", "-o", "/dev/null", "-w", "%{time_total}"]);
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let output = command.arg(url).output().expect("curl runs");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("curl time")
}

/// Seconds for `curl | openssl dgst -sha256`, the quickest way a shell script could
/// fetch a file and verify it (Debian's `sha256sum` does not use the CPU's SHA
/// extensions: 3 s per GiB here).
fn curl_and_hash_seconds(url: &str, token: Option<&str>) -> f64 {
    let auth = token.map(|token| format!("Authorization: Bearer {token}"));
    let started = Instant::now();
    let status = Command::new("sh")
        .args([
            "-c",
            r#"curl -s ${AUTH:+-H "$AUTH"} "$URL" | openssl dgst -sha256 > /dev/null"#,
        ])
        .env("AUTH", auth.unwrap_or_default())
        .env("URL", url)
        .status()
        .expect("sh runs curl and openssl");
    assert!(status.success(), "curl | openssl failed");
    started.elapsed().as_secs_f64()
}

/// A plain HTTP file server (Python's http.server) for the files of `dir`.
struct PlainServer {
    child: Child,
    url: String,
}

impl PlainServer {
    fn start(dir: &Path) -> PlainServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server starts");
        let url = format!("http://127.0.0.1:{port}");
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(Duration::from_millis(20));
        }
        PlainServer { child, url }
    }
}

impl Drop for PlainServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one transfer by the agent measured.
struct Transfer {
    /// From send to the file in the hotfolder.
    seconds: f64,
    /// The agent's peak resident memory, in MiB.
    peak_mib: f64,
    /// The agent's CPU time (user + system) over the transfer.
    cpu_seconds: f64,
}

/// One transfer of `bytes` by a new agent.
async fn agent_transfer(
    server: &MockServer,
    bytes: &Bytes,
    url: Option<String>,
    run: usize,
) -> Transfer {
    let agent = Agent::start(&server.url(), &["press"], "5m", 4);
    agent.wait_ready(server, &["press"]).await;
    let job = add_job(server, "press", &format!("run{run}"), bytes, url);
    let target = agent.hotfolder("press").join(format!("{job}_run{run}.pdf"));
    let cpu_before = agent.cpu_seconds();
    let started = Instant::now();
    send(server, &[job]);
    let seconds = wait_for_file(&target, started).await;
    Transfer {
        seconds,
        peak_mib: agent.status_kib("VmHWM") as f64 / 1024.0,
        cpu_seconds: agent.cpu_seconds() - cpu_before,
    }
}

// ----- scenarios -------------------------------------------------------------------------

async fn throughput() {
    let size = 1024 * 1024 * 1024;
    let bytes = random_bytes(size, 1);
    let server = start_server(|_| {}).await;
    let plain_dir = tempfile::tempdir_in(bench_dir()).expect("dir");
    std::fs::write(plain_dir.path().join("big.pdf"), &bytes).expect("write file");
    let plain = PlainServer::start(plain_dir.path());
    println!(
        "| source | curl median (s) | curl \\| openssl sha256 median (s) | tbot median (s) | tbot / curl | tbot / curl \\| openssl | tbot MB/s | tbot CPU median (s) | tbot peak RSS (MiB) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut curl_medians = Vec::new();
    for source in ["mock server", "plain HTTP server"] {
        let (mut curl, mut curl_hash, mut agent, mut cpu, mut peak) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0f64);
        for run in 0..RUNS {
            let url = match source {
                "mock server" => None,
                _ => Some(format!("{}/big.pdf", plain.url)),
            };
            // The baselines: curl fetching the same URL in the same run, alone and
            // with its bytes hashed.
            let probe_job = add_job(
                &server,
                "press",
                &format!("probe{run}"),
                &bytes,
                url.clone(),
            );
            let file_url = match &url {
                Some(url) => url.clone(),
                None => {
                    let model = server.state.model();
                    format!(
                        "{}/api/v1/agent/files/{}",
                        server.url(),
                        model.jobs()[&probe_job].files[0].id
                    )
                }
            };
            let token = url.is_none().then_some(TOKEN);
            curl.push(curl_seconds(&file_url, token));
            curl_hash.push(curl_and_hash_seconds(&file_url, token));
            let transfer = agent_transfer(&server, &bytes, url, run).await;
            agent.push(transfer.seconds);
            cpu.push(transfer.cpu_seconds);
            peak = peak.max(transfer.peak_mib);
        }
        let (c, h, a) = (
            median(&mut curl),
            median(&mut curl_hash),
            median(&mut agent),
        );
        curl_medians.push(c);
        println!(
            "| {source} | {c:.3} | {h:.3} | {a:.3} | {:.2}x | {:.2}x | {:.0} | {:.2} | {peak:.1} |",
            a / c,
            a / h,
            size as f64 / a / 1e6,
            median(&mut cpu)
        );
    }
    // The least any agent that verifies must spend: SHA-256 of one stream cannot be
    // split across cores.
    let mut hashing: Vec<f64> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(Sha256::digest(&bytes));
            started.elapsed().as_secs_f64()
        })
        .collect();
    let hash = median(&mut hashing);
    println!(
        "\nSHA-256 of the same 1 GiB in memory, on one core: {hash:.3} s, already {:.2}x the \
         curl median from the mock server and {:.2}x from the plain server.",
        hash / curl_medians[0],
        hash / curl_medians[1]
    );
    server.stop().await;
}

/// One CTP job of four 256 MiB separations, against curl fetching its four files one
/// after another.
async fn separations() {
    const PLATE: usize = 256 * 1024 * 1024;
    let server = start_server(|_| {}).await;
    let plates: Vec<(String, Bytes)> = ["cyan", "magenta", "yellow", "black"]
        .iter()
        .zip(10..)
        .map(|(colour, seed)| (format!("poster-{colour}.tif"), random_bytes(PLATE, seed)))
        .collect();
    println!(
        "| files | curl one after another, median (s) | tbot median (s) | ratio | tbot MB/s | tbot peak RSS (MiB) |"
    );
    println!("|---|---|---|---|---|---|");
    let (mut curl, mut agent, mut peak) = (Vec::new(), Vec::new(), 0f64);
    for run in 0..RUNS {
        let tbot = Agent::start(&server.url(), &["ctp"], "5m", 4);
        tbot.wait_ready(&server, &["ctp"]).await;
        let files: Vec<(String, &Bytes, Option<String>)> = plates
            .iter()
            .map(|(name, bytes)| (name.clone(), bytes, None))
            .collect();
        let job = add_job_files(&server, "ctp", &format!("poster{run}"), &files);
        let urls: Vec<String> = server.state.model().jobs()[&job]
            .files
            .iter()
            .map(|file| format!("{}/api/v1/agent/files/{}", server.url(), file.id))
            .collect();
        curl.push(urls.iter().map(|url| curl_seconds(url, Some(TOKEN))).sum());
        let started = Instant::now();
        send(&server, std::slice::from_ref(&job));
        for (name, _) in &plates {
            wait_for_file(
                &tbot.hotfolder("ctp").join(format!("{job}_{name}")),
                started,
            )
            .await;
        }
        agent.push(started.elapsed().as_secs_f64());
        peak = peak.max(tbot.status_kib("VmHWM") as f64 / 1024.0);
    }
    let (c, a) = (median(&mut curl), median(&mut agent));
    println!(
        "| 4 x 256 MiB | {c:.3} | {a:.3} | {:.2}x | {:.0} | {peak:.1} |",
        a / c,
        (4 * PLATE) as f64 / a / 1e6
    );
    server.stop().await;
}

async fn memory() {
    let server = start_server(|_| {}).await;
    println!("| file size | tbot peak RSS (MiB), max of {RUNS} runs | tbot median (s) |");
    println!("|---|---|---|");
    for size in [100 * 1024 * 1024, 1024 * 1024 * 1024] {
        let bytes = random_bytes(size, 2);
        let (mut seconds, mut peak) = (Vec::new(), 0f64);
        for run in 0..RUNS {
            let transfer = agent_transfer(&server, &bytes, None, run).await;
            seconds.push(transfer.seconds);
            peak = peak.max(transfer.peak_mib);
        }
        println!(
            "| {} MiB | {peak:.1} | {:.3} |",
            size / 1024 / 1024,
            median(&mut seconds)
        );
    }
    server.stop().await;
}

async fn latency() {
    const SENDS: usize = 7;
    let bytes = random_bytes(16 * 1024, 3);
    println!("| server | check_interval | median send-to-hotfolder (ms) | max (ms) |");
    println!("|---|---|---|---|");
    for hold in [true, false] {
        let server = start_server(|settings| settings.model.hold_claims = hold).await;
        let interval = if hold { "5m" } else { "2s" };
        let agent = Agent::start(&server.url(), &["press"], interval, 4);
        agent.wait_ready(&server, &["press"]).await;
        let mut times = Vec::new();
        for n in 0..SENDS {
            let job = add_job(&server, "press", &format!("small{n}"), &bytes, None);
            let target = agent.hotfolder("press").join(format!("{job}_small{n}.pdf"));
            let started = Instant::now();
            send(&server, &[job]);
            times.push(wait_for_file(&target, started).await * 1000.0);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let max = times.iter().cloned().fold(0.0, f64::max);
        let label = if hold {
            "holds claims (long poll)"
        } else {
            "answers at once"
        };
        println!(
            "| {label} | {interval} | {:.1} | {max:.1} |",
            median(&mut times)
        );
        drop(agent);
        server.stop().await;
    }
}

async fn idle() {
    let seconds: u64 = std::env::var("TBOT_BENCH_IDLE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let server = start_server(|_| {}).await;
    let agent = Agent::start(&server.url(), &["press", "ctp"], "1m", 4);
    agent.wait_ready(&server, &["press", "ctp"]).await;
    let before = agent.cpu_seconds();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let used = agent.cpu_seconds() - before;
    println!("| measured over | CPU used (s) | CPU per minute (s) | resident memory (MiB) |");
    println!("|---|---|---|---|");
    println!(
        "| {seconds} s | {used:.2} | {:.3} | {:.1} |",
        used * 60.0 / seconds as f64,
        agent.status_kib("VmRSS") as f64 / 1024.0
    );
    server.stop().await;
}

async fn many_jobs() {
    const COUNT: usize = 2000;
    let server = start_server(|_| {}).await;
    println!(
        "| concurrency | deliveries | seconds | deliveries/s | most leased at once | agent CPU (s) | requests | connections |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for concurrency in [4, 16] {
        let agent = Agent::start(&server.url(), &["press"], "5m", concurrency);
        agent.wait_ready(&server, &["press"]).await;
        let jobs: Vec<String> = (0..COUNT)
            .map(|n| {
                add_job(
                    &server,
                    "press",
                    &format!("c{concurrency}-{n}"),
                    &random_bytes(64 * 1024, n as u64),
                    None,
                )
            })
            .collect();
        let batch: BTreeSet<&String> = jobs.iter().collect();
        let cpu_before = agent.cpu_seconds();
        let requests_before = server.state.requests.all().len();
        let started = Instant::now();
        send(&server, &jobs);
        let mut most_leased = 0;
        loop {
            let (leased, open) = {
                let model = server.state.model();
                let mine = model
                    .deliveries()
                    .values()
                    .filter(|d| batch.contains(&d.job));
                let (mut leased, mut open) = (0, 0);
                for delivery in mine {
                    match delivery.state {
                        tbot::mockserver::model::DeliveryState::Leased { .. } => leased += 1,
                        tbot::mockserver::model::DeliveryState::Completed { .. } => {}
                        _ => open += 1,
                    }
                }
                (leased, open)
            };
            most_leased = most_leased.max(leased);
            if leased == 0 && open == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        let requests = server.state.requests.all();
        let requests = &requests[requests_before..];
        let connections: BTreeSet<&Option<String>> = requests.iter().map(|r| &r.client).collect();
        println!(
            "| {concurrency} | {COUNT} | {seconds:.2} | {:.0} | {most_leased} | {:.2} | {} | {} |",
            COUNT as f64 / seconds,
            agent.cpu_seconds() - cpu_before,
            requests.len(),
            connections.len()
        );
        assert_eq!(
            std::fs::read_dir(agent.hotfolder("press"))
                .expect("hotfolder")
                .count()
                - 1,
            COUNT
        );
    }
    server.stop().await;
}

async fn many_agents() {
    const AGENTS: usize = 50;
    const QUEUES: usize = 20;
    const DELIVERIES: usize = 4000;
    let server = start_server(|settings| {
        for n in 1..AGENTS {
            settings.add_agent_token(&format!("{TOKEN}-{n}"));
        }
    })
    .await;
    let client = reqwest::Client::new();
    let queues_of = |agent: usize| -> Vec<String> {
        (0..4)
            .map(|k| format!("q{}", (agent + k * 5) % QUEUES))
            .collect()
    };
    let token_of = |agent: usize| {
        if agent == 0 {
            TOKEN.to_string()
        } else {
            format!("{TOKEN}-{agent}")
        }
    };
    for agent in 0..AGENTS {
        let queues: Vec<serde_json::Value> = queues_of(agent)
            .iter()
            .map(|q| serde_json::json!({"name": q, "kind": "printer", "status": "ready"}))
            .collect();
        client
            .post(format!("{}/api/v1/agent/heartbeat", server.url()))
            .bearer_auth(token_of(agent))
            .json(&serde_json::json!({"agent": format!("a{agent}"), "version": "bench", "queues": queues}))
            .send()
            .await
            .expect("heartbeat");
    }
    let small = random_bytes(1024, 9);
    let jobs: Vec<String> = (0..DELIVERIES)
        .map(|n| {
            add_job(
                &server,
                &format!("q{}", n % QUEUES),
                &format!("m{n}"),
                &small,
                None,
            )
        })
        .collect();
    let claimed: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    let started = Instant::now();
    send(&server, &jobs);
    let mut tasks = Vec::new();
    for agent in 0..AGENTS {
        let (client, url, claimed, latencies) = (
            client.clone(),
            server.url(),
            claimed.clone(),
            latencies.clone(),
        );
        let (token, queues) = (token_of(agent), queues_of(agent));
        tasks.push(tokio::spawn(async move {
            loop {
                let asked = Instant::now();
                let answer: serde_json::Value = client
                    .post(format!("{url}/api/v1/agent/claim"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"queues": queues, "max": 8, "wait_s": 0}))
                    .send()
                    .await
                    .expect("claim")
                    .json()
                    .await
                    .expect("claim answer");
                latencies
                    .lock()
                    .unwrap()
                    .push(asked.elapsed().as_secs_f64() * 1000.0);
                let deliveries = answer["deliveries"].as_array().cloned().unwrap_or_default();
                if deliveries.is_empty() {
                    return;
                }
                for delivery in deliveries {
                    let id = delivery["id"].as_str().unwrap_or_default().to_string();
                    *claimed.lock().unwrap().entry(id.clone()).or_default() += 1;
                    client
                        .post(format!("{url}/api/v1/agent/deliveries/{id}/complete"))
                        .bearer_auth(&token)
                        .json(&serde_json::json!({"files": []}))
                        .send()
                        .await
                        .expect("complete");
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("agent task");
    }
    let seconds = started.elapsed().as_secs_f64();
    let claimed = claimed.lock().unwrap().clone();
    let twice: BTreeSet<&String> = claimed
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    let mut latencies = latencies.lock().unwrap().clone();
    println!("| agents x queues | deliveries | claimed once | handed to two agents | claim p50 (ms) | claim p99 (ms) | seconds |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {AGENTS} x 4 (of {QUEUES}) | {DELIVERIES} | {} | {} | {:.2} | {:.2} | {seconds:.2} |",
        claimed.len(),
        twice.len(),
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.99)
    );
    assert!(
        twice.is_empty(),
        "deliveries handed to two agents: {twice:?}"
    );
    assert_eq!(claimed.len(), DELIVERIES);
    server.stop().await;
}
