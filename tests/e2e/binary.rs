//! The built `tbot` binary as an operator runs it: configuration checks, a clean stop on
//! SIGTERM, and the demo.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::support::*;

const TBOT: &str = env!("CARGO_BIN_EXE_tbot");
const SECRET: &str = "s3cret-floor-token";

fn valid_config(dir: &Path) -> String {
    format!(
        "[server]\nurl = \"https://jobs.example.com\"\ntoken = \"{SECRET}\"\ncheck_interval = \"30s\"\n\n\
         [agent]\nname = \"pressroom-1\"\nstate_dir = {state:?}\nconcurrency = 4\n\n\
         [log]\nlevel = \"info\"\nformat = \"text\"\n\n\
         [[queue]]\nname = \"indigo-7900\"\nkind = \"printer\"\nhotfolder = {indigo:?}\nnaming = \"{{order}}_{{job}}_{{name}}\"\nmax_file_size = \"20GiB\"\n\n\
         [[queue]]\nname = \"ctp\"\nkind = \"ctp\"\nhotfolder = {ctp:?}\n",
        state = dir.join("state").display().to_string(),
        indigo = dir.join("indigo").display().to_string(),
        ctp = dir.join("ctp").display().to_string(),
    )
}

fn check_config(dir: &Path, text: &str) -> (bool, String) {
    let path = dir.join("tbot.toml");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(TBOT)
        .arg("check-config")
        .arg(&path)
        .env_remove("TBOT_TOKEN")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn check_config_accepts_the_example_and_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, output) = check_config(dir.path(), &valid_config(dir.path()));
    assert!(ok, "{output}");
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tbot.example.toml")).unwrap();
    let (ok, output) = check_config(dir.path(), &example);
    assert!(ok, "tbot.example.toml is not valid: {output}");
}

#[test]
fn check_config_refuses_each_bad_config_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let valid = valid_config(dir.path());
    let token_line = format!("token = \"{SECRET}\"\n");
    let cases: Vec<(String, &[&str])> = vec![
        (
            valid.replace("concurrency = 4", "concurrency = 4\nthreads = 2"),
            &["unknown field", "threads", "line 10"],
        ),
        (
            valid.replace("concurrency = 4", "concurrency = \"four\""),
            &["concurrency", "line 9"],
        ),
        (
            valid.replace("concurrency = 4", "concurrency = 0"),
            &["agent.concurrency", "at least 1"],
        ),
        (
            valid.replace("name = \"pressroom-1\"\n", ""),
            &["missing field", "name"],
        ),
        (
            valid.replace("url = \"https://jobs.example.com\"", "url = \"not a url\""),
            &["server.url"],
        ),
        (
            valid.replace("https://jobs.example.com", "ftp://jobs.example.com"),
            &["server.url", "ftp"],
        ),
        (
            valid.replace("check_interval = \"30s\"", "check_interval = \"soon\""),
            &["check_interval", "line 4"],
        ),
        (
            valid.replace(
                "max_file_size = \"20GiB\"",
                "max_file_size = \"20 parsecs\"",
            ),
            &[
                "queue[0].max_file_size",
                "\"20 parsecs\"",
                "like \"500MiB\"",
            ],
        ),
        (
            valid.replace(
                "url = \"https://jobs.example.com\"",
                "url = \"127.0.0.1:8470\"",
            ),
            &[
                "server.url",
                "\"127.0.0.1:8470\"",
                "http://127.0.0.1:8470\"",
            ],
        ),
        (
            valid.replace("kind = \"ctp\"", "kind = \"fax\""),
            &["unknown variant", "fax"],
        ),
        (
            valid.replace("name = \"ctp\"", "name = \"indigo-7900\""),
            &["queue[1].name", "indigo-7900"],
        ),
        (
            valid.replace(&dir.path().join("ctp").display().to_string(), "hot/ctp"),
            &["queue[1].hotfolder", "absolute"],
        ),
        (
            valid.replace(
                &dir.path().join("ctp").display().to_string(),
                &dir.path().join("indigo").display().to_string(),
            ),
            &["queue[1].hotfolder", "another queue"],
        ),
        (
            valid[..valid.find("[[queue]]").unwrap()].to_string(),
            &["no [[queue]]"],
        ),
        (
            valid.replace(&token_line, ""),
            &["no agent token", "TBOT_TOKEN"],
        ),
        (
            valid.replace(
                "naming = \"{order}_{job}_{name}\"",
                "naming = \"{order}_{job}\"",
            ),
            &["queue[0].naming", "{name}"],
        ),
        (
            valid.replace("level = \"info\"", "level = \"loud\""),
            &["log.level"],
        ),
        (
            valid.replace(
                "kind = \"ctp\"",
                "kind = \"ctp\"\nlayout = \"folder\"\nfolder = \"{order}_{name}\"",
            ),
            &["queue[1].folder", "{name} has no meaning here"],
        ),
        (
            valid.replace("kind = \"ctp\"", "kind = \"ctp\"\nfolder = \"{job}\""),
            &["queue[1].folder", "layout = \"folder\""],
        ),
        (
            valid.replace("kind = \"ctp\"", "kind = \"ctp\"\nticket = \"pdf\""),
            &["unknown variant", "pdf", "jdf"],
        ),
        (
            valid.replace(
                "kind = \"ctp\"",
                "kind = \"ctp\"\nticket_name = \"{job}.jdf\"",
            ),
            &["queue[1].ticket_name", "choose jdf, xjdf or json"],
        ),
        (
            valid.replace("kind = \"ctp\"", "kind = \"ctp\"\ntrigger = \"go.trg\""),
            &["queue[1].trigger", "{name}"],
        ),
        (
            valid.replace("kind = \"ctp\"", "kind = \"ctp\"\nsubfolder = \"{client}\""),
            &["queue[1].subfolder", "unknown placeholder {client}"],
        ),
        (
            valid.replace("kind = \"ctp\"", "kind = \"ctp\"\nmax_waiting = 0"),
            &["queue[1].max_waiting", "at least 1"],
        ),
        (
            valid.replace(
                "kind = \"ctp\"",
                "kind = \"ctp\"\naccepted_folder = \"../done\"",
            ),
            &["queue[1].accepted_folder", "inside the hotfolder"],
        ),
        (
            valid.replace(
                "kind = \"ctp\"",
                "kind = \"ctp\"\nrejected_folder = \".tbot/x\"",
            ),
            &["queue[1].rejected_folder", "staging folder"],
        ),
        (
            valid.replace(
                "kind = \"ctp\"",
                "kind = \"ctp\"\naccepted_folder = \"Done\"\nrejected_folder = \"Done\"",
            ),
            &["same folder"],
        ),
        (
            valid.replace(
                "max_file_size = \"20GiB\"",
                "max_file_size = \"20GiB\"\nstall_after = \"0s\"",
            ),
            &["queue[0].stall_after"],
        ),
        (
            valid.replace(
                "check_interval = \"30s\"",
                "check_interval = \"30s\"\nlong_poll = \"2m\"",
            ),
            &["server.long_poll", "at most"],
        ),
        (
            valid.replace("format = \"text\"", "format = \"xml\""),
            &["format"],
        ),
        (
            valid.replace(
                &token_line,
                &format!("token = \"{SECRET}\"\ntoken_file = \"/etc/tbot/token\"\n"),
            ),
            &["not both"],
        ),
        (
            valid.replace(&token_line, "token = \"unterminated\n"),
            &["line 3"],
        ),
        (
            valid.replace(&token_line, &format!("Token = \"{SECRET}\"\n")),
            &["unknown field", "Token", "line 3"],
        ),
        (
            valid.replace(&token_line, &format!("tokn = \"{SECRET}\"\n")),
            &["unknown field", "tokn", "line 3"],
        ),
        (
            valid
                .replace("[server]", "[server]  # the job side")
                .replace(&token_line, &format!("tiken = \"{SECRET}\"\n")),
            &["unknown field", "tiken", "line 3"],
        ),
        (
            format!("{}{token_line}", valid.replace(&token_line, "")),
            &["unknown field", "token"],
        ),
        (
            valid.replace(
                "url = \"https://jobs.example.com\"\n",
                &format!("url = \"https://jobs.example.com\" token = \"{SECRET}\"\n"),
            ),
            &["line 2"],
        ),
        (
            valid.replace(
                "https://jobs.example.com",
                &format!("https://jobs example.com/{SECRET}"),
            ),
            &["server.url"],
        ),
    ];
    for (text, expected) in cases {
        let (ok, output) = check_config(dir.path(), &text);
        assert!(!ok, "accepted a bad config:\n{text}");
        for words in expected {
            assert!(
                output.contains(words),
                "message does not say {words:?}:\n{output}"
            );
        }
        assert!(!output.contains(SECRET), "the token leaked:\n{output}");
    }
}

#[test]
fn check_config_warns_of_a_token_others_can_read_and_of_plain_http() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "from-file\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = valid_config(dir.path())
        .replace(
            &format!("token = \"{SECRET}\"\n"),
            &format!("token_file = {:?}\n", token_file.display().to_string()),
        )
        .replace("https://jobs.example.com", "http://jobs.example.com");
    let (ok, output) = check_config(dir.path(), &text);
    assert!(ok, "{output}");
    assert!(
        output.contains("warning") && output.contains("can be read by every user"),
        "{output}"
    );
    assert!(
        output.contains("plain http") && output.contains("jobs.example.com"),
        "{output}"
    );

    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let loopback = text.replace("http://jobs.example.com", "http://127.0.0.1:8470");
    let (ok, output) = check_config(dir.path(), &loopback);
    assert!(ok, "{output}");
    assert!(!output.contains("warning"), "{output}");
}

#[test]
fn without_a_config_tbot_says_where_it_looked() {
    let home = tempfile::tempdir().unwrap();
    for command in [&["run"][..], &["status"], &["check-config"]] {
        let output = Command::new(TBOT)
            .args(command)
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env_remove("INVOCATION_ID")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command:?}: {stderr}");
        let looked = home.path().join("config").join("tbot").join("tbot.toml");
        assert!(stderr.contains(&looked.display().to_string()), "{stderr}");
        assert!(
            stderr.contains("/etc/tbot/tbot.toml") && stderr.contains("--config"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn check_config_online_checks_hotfolders_the_token_and_the_clock() {
    let server = start_server(|_| {}).await;
    let floor = Floor::new(&["indigo"]);
    let path = floor.path("tbot.toml");
    // Run beside the test's runtime: the server in it must answer meanwhile.
    let online = |text: String| {
        let path = path.clone();
        async move {
            std::fs::write(&path, text).unwrap();
            tokio::task::spawn_blocking(move || {
                let output = Command::new(TBOT)
                    .args(["check-config", "--online"])
                    .arg(&path)
                    .env_remove("TBOT_TOKEN")
                    .output()
                    .unwrap();
                let out = String::from_utf8_lossy(&output.stdout).into_owned();
                (output.status.code(), out)
            })
            .await
            .unwrap()
        }
    };
    let config = one_queue_config(&server.url(), &floor, "");

    let (code, out) = online(config.clone()).await;
    assert_eq!(code, Some(0), "{out}");
    for says in [
        "ok   queue indigo-7900: hotfolder",
        "takes the token, as agent",
        "clock agrees",
    ] {
        assert!(out.contains(says), "{says:?} missing:\n{out}");
    }
    assert!(
        !floor.path("indigo").join(".tbot").exists(),
        "the check made a staging folder"
    );

    let (code, out) = online(config.replace(TOKEN, "not-the-token")).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL") && out.contains("refuses the token"),
        "{out}"
    );

    std::fs::rename(floor.path("indigo"), floor.path("indigo-away")).unwrap();
    let (code, out) = online(config.clone()).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL queue indigo-7900: hotfolder"), "{out}");
    std::fs::rename(floor.path("indigo-away"), floor.path("indigo")).unwrap();

    let owner = operator(&server, "owner");
    owner
        .post("/clock/advance", json!({"by": "2h"}))
        .await
        .unwrap();
    let (code, out) = online(config).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("clock is 2h"), "{out}");
    server.stop().await;
}

#[test]
fn the_token_can_come_from_the_environment_or_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let without = valid_config(dir.path()).replace(&format!("token = \"{SECRET}\"\n"), "");
    let path = dir.path().join("tbot.toml");
    std::fs::write(&path, &without).unwrap();
    let status = Command::new(TBOT)
        .arg("check-config")
        .arg(&path)
        .env("TBOT_TOKEN", "from-env")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(dir.path().join("token"), "from-file\n").unwrap();
    let with_file = without.replace(
        "check_interval",
        &format!(
            "token_file = {:?}\ncheck_interval",
            dir.path().join("token").display().to_string()
        ),
    );
    let (ok, output) = check_config(dir.path(), &with_file);
    assert!(ok, "{output}");
}

#[tokio::test]
async fn sigterm_mid_transfer_hands_back_keeps_the_bytes_and_a_restart_resumes() {
    let (server, floor, owner, mut agent) = agent_process_on_one_queue("").await;
    // 64 MiB at 4 MiB/s: the transfer is certainly under way, and not finished, when
    // the signal comes.
    set_faults(&owner, json!({"bytes_per_second": 4 * 1024 * 1024})).await;
    let big = sample_bytes(64 * 1024 * 1024, 3);
    let job = send_file(
        &owner,
        "Big poster",
        "indigo-7900",
        "poster.pdf",
        big.clone(),
    )
    .await;
    let hotfolder = floor.path("indigo");
    let staged_len = || {
        staged_files(&hotfolder)
            .first()
            .and_then(|name| std::fs::metadata(hotfolder.join(".tbot").join(name)).ok())
            .map_or(0, |meta| meta.len())
    };
    wait_until(
        "the transfer to be under way",
        Duration::from_secs(20),
        || std::future::ready((staged_len() > 1024 * 1024).then_some(())),
    )
    .await;

    let stopped = agent.signal("TERM").await;
    let log = agent.log();
    assert!(stopped.success(), "exit {stopped:?}\n{log}");
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(!log.contains(TOKEN), "the token leaked into the log");
    assert!(visible_files(&hotfolder).is_empty(), "{log}");
    // Handed back to the server, the staged bytes kept for a resume.
    let fails: Vec<_> = requests(&owner)
        .await
        .into_iter()
        .filter(|r| r["path"] == json!("/api/v1/agent/deliveries/d-1/fail"))
        .collect();
    assert_eq!(fails.len(), 1, "{fails:?}\n{log}");
    assert_eq!(fails[0]["status"], json!(200));
    assert_eq!(deliveries(&owner).await[0]["state"], json!("pending"));
    let kept = staged_len();
    assert!(kept > 1024 * 1024, "the staged bytes were thrown away");

    // Started again, it gets the delivery back and carries on from those bytes.
    set_faults(&owner, json!({})).await;
    agent.restart();
    wait_deliveries_settled(&owner, &["completed"]).await;
    assert_eq!(
        std::fs::read(hotfolder.join(format!("{job}_poster.pdf"))).unwrap(),
        big
    );
    let resumed: Vec<u64> = requests(&owner)
        .await
        .iter()
        .filter(|r| r["status"] == json!(206))
        .filter_map(|r| {
            r["range"]
                .as_str()?
                .strip_prefix("bytes=")?
                .strip_suffix('-')?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        resumed.iter().any(|&from| from > 0 && from <= kept),
        "no ranged request resumed from the {kept} staged bytes: {resumed:?}"
    );
    assert!(staged_files(&hotfolder).is_empty());
    assert!(agent.signal("TERM").await.success());
    server.stop().await;
}

#[test]
fn the_demo_delivers_every_file_verified() {
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("demo");
    let output = Command::new(TBOT)
        .arg("demo")
        .arg("--dir")
        .arg(&demo_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("13 files in 6 deliveries, 13 verified"),
        "{stdout}"
    );
    assert!(!stdout.contains("MISMATCH"));
    for queue in ["indigo-7900", "trendsetter-ctp", "prinergy-imposition"] {
        assert!(
            !visible_files(&demo_dir.join("hotfolders").join(queue)).is_empty(),
            "{queue} got nothing"
        );
    }
    // A second run in the same folder starts afresh.
    let again = Command::new(TBOT)
        .arg("demo")
        .arg("--dir")
        .arg(&demo_dir)
        .output()
        .unwrap();
    assert!(again.status.success());
}

#[tokio::test]
async fn the_demo_keeps_serving_its_web_page_until_sigterm() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("demo");
    let mut demo = Command::new(TBOT)
        .arg("demo")
        .arg("--dir")
        .arg(&demo_dir)
        .arg("--keep-serving")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = demo.stdout.take().unwrap();
    let said = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.contains("Ctrl-C stops the demo"))
            .expect("the demo says where its web page is")
    })
    .await
    .unwrap();
    let url = said
        .split("open ")
        .nth(1)
        .and_then(|rest| rest.split('/').take(3).collect::<Vec<_>>().join("/").into())
        .unwrap();
    let password_file = demo_dir.join("web-password");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&password_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let password = std::fs::read_to_string(&password_file).unwrap();
    assert!(
        !said.contains(password.trim()),
        "the password is never printed"
    );
    let mut owner = tbot::operator_client::OperatorClient::new(&url).unwrap();
    owner
        .log_in("owner", password.trim())
        .await
        .expect("logged in");
    let order = owner.get("/orders/MC-6001").await.unwrap();
    assert_eq!(order["closed_out"], json!(true), "{order}");
    let page = reqwest::get(format!("{url}/login")).await.unwrap();
    assert!(page.text().await.unwrap().contains("Log in"));

    let stopped = Command::new("kill")
        .args(["-TERM", &demo.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = tokio::task::spawn_blocking(move || demo.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
}
