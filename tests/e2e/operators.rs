//! Operators prove who they are: a password for an API token, and each token acts only
//! as what its user's profile allows.

use serde_json::{json, Value};

use crate::support::*;

/// One operator API call with an optional bearer token: the status and the JSON body.
async fn call(
    server: &tbot::mockserver::MockServer,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}/api/v1/operator{path}", server.url()))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn no_request_acts_as_a_user_it_has_not_proved_it_is() {
    let server = start_server(|_| {}).await;
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    let (status, said) = call(&server, get.clone(), "/jobs", None, json!(null)).await;
    assert_eq!(
        (status, &said["error"]["code"]),
        (401, &json!("not_logged_in"))
    );
    // The header the first versions trusted names nobody now.
    let named = reqwest::Client::new()
        .get(format!("{}/api/v1/operator/jobs", server.url()))
        .header("x-tbot-user", "owner")
        .send()
        .await
        .unwrap();
    assert_eq!(named.status().as_u16(), 401);
    let (status, said) = call(
        &server,
        get.clone(),
        "/jobs",
        Some("tbot-op-guess"),
        json!(null),
    )
    .await;
    assert_eq!((status, &said["error"]["code"]), (401, &json!("bad_token")));

    for (name, password) in [("owner", "not-the-password"), ("nobody", OWNER_PASSWORD)] {
        let (status, said) = call(
            &server,
            post.clone(),
            "/tokens",
            None,
            json!({"name": name, "password": password}),
        )
        .await;
        assert_eq!(status, 401, "{said}");
        assert_eq!(said["error"]["message"], json!("wrong name or password"));
    }

    let (status, said) = call(
        &server,
        post.clone(),
        "/tokens",
        None,
        json!({"name": "owner", "password": OWNER_PASSWORD}),
    )
    .await;
    assert_eq!(status, 201, "{said}");
    assert_eq!(said["profile"], json!("site_owner"));
    let token = said["token"].as_str().unwrap().to_string();
    let (status, said) = call(&server, get, "/jobs", Some(&token), json!(null)).await;
    assert_eq!((status, &said["jobs"]), (200, &json!([])));
    server.stop().await;
}

#[tokio::test]
async fn a_token_does_only_what_its_users_profile_allows() {
    let server = start_server(|_| {}).await;
    let owner = operator(&server, "owner");
    let designer = operator(&server, "designer");
    let job = designer
        .create_job("Flyer", None, &[])
        .await
        .expect("a designer creates jobs");
    designer
        .post(&format!("/jobs/{job}/request-approval"), json!({}))
        .await
        .expect("and asks for their approval");
    let refused = designer
        .post(&format!("/jobs/{job}/approve"), json!({}))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("403")
            && refused.contains("profile designer")
            && refused.contains("manage-jobs"),
        "{refused}"
    );
    let refused = designer
        .put("/settings", json!({"autosend": true}))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("change-settings"), "{refused}");
    assert_eq!(
        owner.get("/settings").await.unwrap()["autosend"],
        json!(false)
    );
    owner
        .post(&format!("/jobs/{job}/approve"), json!({}))
        .await
        .expect("a site owner approves");
    server.stop().await;
}

#[tokio::test]
async fn tbot_mock_logs_in_with_a_password_it_never_takes_as_an_argument() {
    let server = start_server(|_| {}).await;
    let url = server.url();
    let login = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tbot"))
            .args(["mock", "--server", &url, "login", "owner"])
            .env("TBOT_MOCK_PASSWORD", OWNER_PASSWORD)
            .output()
            .expect("tbot runs")
    })
    .await
    .unwrap();
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    let token = String::from_utf8(login.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("tbot-op-"), "{token}");
    let url = server.url();
    let listed = run_tbot([
        "mock", "--server", &url, "--token", &token, "--json", "jobs",
    ])
    .await;
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let jobs: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(jobs["jobs"], json!([]));

    let refused = run_tbot(["mock", "--server", &url, "jobs"]).await;
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("401") && said.contains("tbot mock login"),
        "{said}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_mock_server_will_not_start_without_someone_to_log_in() {
    let output = run_tbot([
        "mock-server",
        "--listen",
        "127.0.0.1:0",
        "--agent-token",
        TOKEN,
    ])
    .await;
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("no user: give --user NAME=PROFILE:PASSWORD"),
        "{said}"
    );
    let output = run_tbot([
        "mock-server",
        "--listen",
        "127.0.0.1:0",
        "--agent-token",
        TOKEN,
        "--user",
        "ann=site_owner",
    ])
    .await;
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("--user ann=...: give NAME=PROFILE:PASSWORD"),
        "{said}"
    );
}

#[tokio::test]
async fn tbot_mock_reads_as_sentences_and_a_refused_send_fails() {
    let server = start_server(|_| {}).await;
    let owner = operator(&server, "owner");
    let job = owner.create_job("Cards", Some("MC-1"), &[]).await.unwrap();
    let shown = run_tbot_mock(&server, &["job", &job]).await;
    assert!(shown.status.success());
    assert_eq!(
        String::from_utf8_lossy(&shown.stdout),
        format!("{job} Cards (order MC-1): in progress\n  preselected queues: none\n")
    );
    let refused = run_tbot_mock(&server, &["send", &job]).await;
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stdout);
    assert!(
        said.contains("not sent: job") && said.contains("only an approved job"),
        "{said}"
    );
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("1 of the jobs were not sent"), "{why}");
    server.stop().await;
}
