//! What every end-to-end test needs: a real mock server on a loopback port, real agents
//! as tasks, hotfolders in temp dirs, and a way to wait for an outcome without sleeping
//! blindly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use backon::ExponentialBuilder;
use serde_json::{json, Value};
use tbot::agent::client::JobSideClient;
use tbot::agent::Agent;
use tbot::config::Config;
use tbot::control::Control;
use tbot::mockserver::{MockServer, MockSettings, UserEntry};
use tbot::operator_client::OperatorClient;
use tempfile::TempDir;

pub const TOKEN: &str = "floor-token-1";
pub const TOKEN_2: &str = "floor-token-2";

/// The password of the test servers' `owner`, a site owner.
pub const OWNER_PASSWORD: &str = "owner-password";

/// The password of the test servers' `designer`.
pub const DESIGNER_PASSWORD: &str = "designer-password";

/// A mock server with two agent tokens and two users: `owner`, a site owner, and
/// `designer`, who may create jobs but not send them.
pub async fn start_server(configure: impl FnOnce(&mut MockSettings)) -> MockServer {
    start_server_at(SocketAddr::from(([127, 0, 0, 1], 0)), configure).await
}

/// A server that takes store orders sent with `store_token`, its product
/// `business-cards` arriving approved and preselected for `indigo-7900`.
pub async fn start_store_server(store_token: &str) -> MockServer {
    start_server(|settings| {
        settings.store_token = Some(tbot::config::Secret::new(store_token));
        settings.templates.insert(
            "business-cards".into(),
            tbot::mockserver::model::Template {
                queues: vec!["indigo-7900".into()],
                approved: true,
            },
        );
    })
    .await
}

/// Posts `order` to the store connection with `token`; the status and the answer.
pub async fn post_order(url: &str, token: &str, order: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{url}/api/v1/store/orders"))
        .bearer_auth(token)
        .json(order)
        .send()
        .await
        .expect("the store connection answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Like [`start_server`], on a given address (to start a server again where it was).
pub async fn start_server_at(
    listen: SocketAddr,
    configure: impl FnOnce(&mut MockSettings),
) -> MockServer {
    let mut settings = MockSettings::default();
    settings.add_agent_token(TOKEN);
    settings.add_agent_token(TOKEN_2);
    settings.users = vec![
        UserEntry::with_password("owner", "site_owner", OWNER_PASSWORD),
        UserEntry::with_password("designer", "designer", DESIGNER_PASSWORD),
    ];
    settings.model.retry_hold = Duration::from_millis(200);
    configure(&mut settings);
    MockServer::start(settings, listen)
        .await
        .expect("mock server starts")
}

/// The configuration text of an agent serving `queues` (name, kind, hotfolder).
pub fn agent_config_text(
    server_url: &str,
    token: &str,
    state: &Path,
    queues: &[(&str, &str, &Path)],
    extra_queue_keys: &str,
) -> String {
    let mut text = format!(
        "[server]\nurl = \"{server_url}\"\ntoken = \"{token}\"\ncheck_interval = \"200ms\"\n\
         [agent]\nname = \"test-floor\"\nstate_dir = {:?}\nconcurrency = 4\n[log]\nlevel = \"debug\"\n",
        state.display().to_string()
    );
    for (name, kind, hotfolder) in queues {
        text.push_str(&format!(
            "[[queue]]\nname = \"{name}\"\nkind = \"{kind}\"\nhotfolder = {:?}\n{extra_queue_keys}\n",
            hotfolder.display().to_string()
        ));
    }
    text
}

/// An agent running as a task, stopped (and awaited) by [`RunningAgent::stop`].
pub struct RunningAgent {
    control: Control,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningAgent {
    pub fn start(config_text: &str) -> RunningAgent {
        let config = Config::parse(config_text, None).expect("test config is valid");
        let client = JobSideClient::new(&config.server)
            .expect("client")
            .with_retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(20))
                    .with_max_delay(Duration::from_millis(200))
                    .with_max_times(3),
            );
        let control = Control::new();
        let agent = Agent::with_client(config, client, control.clone()).expect("agent starts");
        RunningAgent {
            control,
            task: tokio::spawn(agent.run()),
        }
    }

    pub async fn stop(self) {
        self.control.shutdown().trigger();
        self.task
            .await
            .expect("agent task")
            .expect("agent ran cleanly");
    }
}

/// A temp dir with one hotfolder per name, plus a state folder.
pub struct Floor {
    pub dir: TempDir,
}

impl Floor {
    pub fn new(hotfolders: &[&str]) -> Floor {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in hotfolders {
            std::fs::create_dir_all(dir.path().join(name)).expect("hotfolder");
        }
        Floor { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The visible files of a hotfolder (not tbot's hidden staging folder), sorted.
pub fn visible_files(hotfolder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(hotfolder)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Staged files (`*.part`) in a hotfolder's `.tbot` folder.
pub fn staged_files(hotfolder: &Path) -> Vec<String> {
    visible_files_in(&hotfolder.join(".tbot"))
        .into_iter()
        .filter(|name| name.ends_with(".part"))
        .collect()
}

/// Watches `hotfolder` until `count` files of `size` bytes are visible in it; the most
/// files that were downloading at once meanwhile (staged, and not yet whole).
pub async fn most_downloading_until_visible(hotfolder: &Path, size: u64, count: usize) -> usize {
    let mut most = 0;
    wait_until(
        "the files in the hotfolder",
        Duration::from_secs(30),
        || {
            let downloading = staged_files(hotfolder)
                .iter()
                .filter_map(|name| std::fs::metadata(hotfolder.join(".tbot").join(name)).ok())
                .filter(|staged| staged.len() < size)
                .count();
            most = most.max(downloading);
            std::future::ready((visible_files(hotfolder).len() == count).then_some(most))
        },
    )
    .await
}

fn visible_files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `check` until it returns `Some`, or panics after `limit` naming `what`.
pub async fn wait_until<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The operator client of a mock server, acting as `user`.
pub fn operator(server: &MockServer, user: &str) -> OperatorClient {
    server.operator(user).expect("operator client")
}

/// Waits until the server lists every one of `queues` as connected.
pub async fn wait_connected(owner: &OperatorClient, queues: &[&str]) {
    wait_until("queues to connect", Duration::from_secs(10), || async {
        let listed = owner.get("/queues").await.ok()?;
        let names: Vec<&str> = listed["queues"]
            .as_array()?
            .iter()
            .filter_map(|q| q["name"].as_str())
            .collect();
        queues.iter().all(|q| names.contains(q)).then_some(())
    })
    .await;
}

/// Creates an approved job with inline files given as (name, content).
pub async fn approved_job(
    owner: &OperatorClient,
    name: &str,
    order: Option<&str>,
    queues: &[&str],
    files: Value,
) -> String {
    let job = owner
        .post(
            "/jobs",
            json!({"name": name, "order_number": order, "queues": queues, "files": files}),
        )
        .await
        .expect("job created");
    let id = job["id"].as_str().expect("job id").to_string();
    owner
        .post(&format!("/jobs/{id}/approve"), json!({}))
        .await
        .expect("approved");
    id
}

/// All deliveries of the server.
pub async fn deliveries(owner: &OperatorClient) -> Vec<Value> {
    owner.get("/deliveries").await.expect("deliveries")["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until every delivery is in one of `states` and returns them.
pub async fn wait_deliveries_settled(owner: &OperatorClient, states: &[&str]) -> Vec<Value> {
    wait_until("deliveries to settle", Duration::from_secs(30), || async {
        let all = deliveries(owner).await;
        (!all.is_empty()
            && all
                .iter()
                .all(|d| states.iter().any(|s| d["state"] == json!(s))))
        .then_some(all)
    })
    .await
}

/// Lowercase hex SHA-256 of a file on disk.
pub fn sha256_file(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(std::fs::read(path).expect("file readable")))
}

/// Runs the built `tbot` with `args` to its end. It is waited for beside the test's
/// runtime, which must go on serving: the server it talks to runs there.
pub async fn run_tbot<I, S>(args: I) -> std::process::Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().into()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tbot"))
            .args(args)
            .output()
            .expect("tbot runs")
    })
    .await
    .expect("the wait for tbot")
}

/// `tbot mock --server URL ARGS...` acting as the server's `owner`, with an API token
/// in `TBOT_MOCK_TOKEN` as a person would export it.
pub async fn run_tbot_mock(server: &MockServer, args: &[&str]) -> std::process::Output {
    let token = server.state.accounts.issue_api_token("owner");
    let url = server.url();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tbot"));
    command
        .args(["mock", "--server", &url])
        .args(args)
        .env("TBOT_MOCK_TOKEN", token);
    tokio::task::spawn_blocking(move || command.output().expect("tbot runs"))
        .await
        .expect("the wait for tbot")
}

/// The built `tbot` binary running `tbot run`, its log going to a file.
pub struct AgentProcess {
    config: PathBuf,
    log: PathBuf,
    /// Environment variables the agent is started with, such as `NOTIFY_SOCKET`.
    env: Vec<(String, String)>,
    child: Option<std::process::Child>,
}

impl AgentProcess {
    /// Writes `config_text` next to the log and starts the agent.
    pub fn start(dir: &Path, config_text: &str) -> AgentProcess {
        AgentProcess::start_with_env(dir, config_text, &[])
    }

    /// Like [`AgentProcess::start`], with `env` set for the agent.
    pub fn start_with_env(dir: &Path, config_text: &str, env: &[(&str, &str)]) -> AgentProcess {
        let config = dir.join("tbot.toml");
        std::fs::write(&config, config_text).expect("config written");
        // The file holds the token: readable by its owner only, as tbot asks.
        let private = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600);
        std::fs::set_permissions(&config, private).expect("config mode");
        let mut process = AgentProcess {
            config,
            log: dir.join("agent.log"),
            env: env
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
            child: None,
        };
        process.spawn();
        process
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        // Neither NO_COLOR nor a terminal: the log is a file, and must have no colour.
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_tbot"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env_remove("NO_COLOR")
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tbot starts");
        self.child = Some(child);
    }

    /// Sends `signal` (such as "KILL" or "TERM") and waits for the process to end.
    /// The wait runs beside the test's runtime, which must go on serving: a stopping
    /// agent still reports to a server the test runs.
    pub async fn signal(&mut self, signal: &str) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("agent running");
        let signal = format!("-{signal}");
        tokio::task::spawn_blocking(move || {
            let sent = std::process::Command::new("kill")
                .args([&signal, &child.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(sent.success());
            child.wait().expect("agent ends")
        })
        .await
        .expect("the wait for the agent")
    }

    /// Sends `signal` (such as "HUP") and returns; the agent goes on running.
    pub fn send(&self, signal: &str) {
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    }

    /// Replaces the configuration file, for a reload.
    pub fn rewrite_config(&self, config_text: &str) {
        std::fs::write(&self.config, config_text).expect("config written");
    }

    /// The running agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("agent running").id()
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn();
    }

    /// Everything the agent has logged so far, over all its runs.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A mock server and the agent as a process serving `indigo-7900` from the hotfolder
/// `indigo`, with `extra_queue_keys` in the queue's table, connected.
pub async fn agent_process_on_one_queue(
    extra_queue_keys: &str,
) -> (MockServer, Floor, OperatorClient, AgentProcess) {
    let server = start_server(|_| {}).await;
    let floor = Floor::new(&["indigo"]);
    let owner = operator(&server, "owner");
    let agent = AgentProcess::start(
        floor.dir.path(),
        &one_queue_config(&server.url(), &floor, extra_queue_keys),
    );
    wait_connected(&owner, &["indigo-7900"]).await;
    (server, floor, owner, agent)
}

/// Sets the mock server's faults.
pub async fn set_faults(owner: &OperatorClient, faults: Value) {
    owner.put("/faults", faults).await.expect("faults set");
}

/// How many heartbeats the server has answered.
pub async fn heartbeats(owner: &OperatorClient) -> usize {
    requests(owner)
        .await
        .iter()
        .filter(|r| r["path"] == json!("/api/v1/agent/heartbeat"))
        .count()
}

/// Waits until the agent has sent two more heartbeats, each a check in which it could
/// have claimed.
pub async fn two_more_checks(owner: &OperatorClient) {
    let before = heartbeats(owner).await;
    wait_until("two more checks", Duration::from_secs(20), || async {
        (heartbeats(owner).await >= before + 2).then_some(())
    })
    .await;
}

/// The agent requests the mock server answered.
pub async fn requests(owner: &OperatorClient) -> Vec<Value> {
    owner.get("/requests").await.expect("requests")["requests"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Deterministic bytes of a given size, different for every seed.
pub fn sample_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Creates an approved job with one uploaded file, sends it, and returns the job id.
pub async fn send_file(
    owner: &OperatorClient,
    name: &str,
    queue: &str,
    file: &str,
    bytes: Vec<u8>,
) -> String {
    let job = owner
        .create_job(name, None, &[queue.to_string()])
        .await
        .expect("job");
    owner.upload(&job, file, bytes).await.expect("upload");
    owner
        .post(&format!("/jobs/{job}/approve"), json!({}))
        .await
        .expect("approve");
    let sent = owner
        .send(std::slice::from_ref(&job), None)
        .await
        .expect("send");
    assert_eq!(sent["results"][0]["ok"], json!(true), "{sent}");
    job
}

/// The configuration text of an agent serving the one queue `indigo-7900` from the
/// hotfolder `indigo` of `floor`, with `extra_queue_keys` in the queue's table.
pub fn one_queue_config(server_url: &str, floor: &Floor, extra_queue_keys: &str) -> String {
    agent_config_text(
        server_url,
        TOKEN,
        &floor.path("state"),
        &[("indigo-7900", "printer", &floor.path("indigo"))],
        extra_queue_keys,
    )
}

/// The most common set-up: a mock server, an agent task serving the one queue
/// `indigo-7900` from the hotfolder `indigo`, and the site owner's client, with the
/// queue already connected.
pub struct OneQueue {
    pub server: MockServer,
    pub floor: Floor,
    pub agent: RunningAgent,
    pub owner: OperatorClient,
}

impl OneQueue {
    /// `extra_queue_keys` are added to the queue's table, such as `max_file_size = "1MiB"`.
    pub async fn start(extra_queue_keys: &str) -> OneQueue {
        OneQueue::start_edited(extra_queue_keys, |config| config).await
    }

    /// Like [`OneQueue::start`], with the agent's configuration text passed through
    /// `edit` first.
    pub async fn start_edited(
        extra_queue_keys: &str,
        edit: impl FnOnce(String) -> String,
    ) -> OneQueue {
        OneQueue::start_with(Floor::new(&["indigo"]), extra_queue_keys, edit).await
    }

    /// Like [`OneQueue::start`], on a floor the test prepared (its `indigo` hotfolder
    /// may be a link, hold a planted staging folder, or be missing).
    pub async fn start_on(floor: Floor, extra_queue_keys: &str) -> OneQueue {
        OneQueue::start_with(floor, extra_queue_keys, |config| config).await
    }

    async fn start_with(
        floor: Floor,
        extra_queue_keys: &str,
        edit: impl FnOnce(String) -> String,
    ) -> OneQueue {
        let server = start_server(|_| {}).await;
        let config = edit(one_queue_config(&server.url(), &floor, extra_queue_keys));
        let agent = RunningAgent::start(&config);
        let owner = operator(&server, "owner");
        wait_connected(&owner, &["indigo-7900"]).await;
        OneQueue {
            server,
            floor,
            agent,
            owner,
        }
    }

    pub async fn stop(self) {
        self.agent.stop().await;
        self.server.stop().await;
    }
}

/// A small tmpfs, so a disk can really fill up. Needs root (CI and
/// this project's machines run as root); elsewhere the test says so and passes.
pub struct SmallDisk {
    pub path: std::path::PathBuf,
}

impl SmallDisk {
    pub fn mount(path: std::path::PathBuf, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(&path).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk { path })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.path)
            .status();
    }
}
