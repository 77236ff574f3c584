//! TLS between agent and job side, with certificates made here (`rcgen`): a private
//! certificate authority trusted through `server.ca_file`, and refused with advice
//! without it; mutual TLS, where the job side asks the agent for a certificate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tbot::mockserver::{MockServer, ServerTls};
use tbot::operator_client::OperatorClient;

use crate::support::*;

/// A print shop's own authority, a certificate for the job side at 127.0.0.1 and one
/// for the agent, as PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Print shop CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let issue = |names: Vec<String>, stem: &str| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            let (cert_path, key_path) = (
                dir.join(format!("{stem}.pem")),
                dir.join(format!("{stem}.key")),
            );
            std::fs::write(&cert_path, cert.pem()).unwrap();
            std::fs::write(&key_path, key.serialize_pem()).unwrap();
            (cert_path, key_path)
        };
        let (server_cert, server_key) = issue(vec!["127.0.0.1".into()], "jobs");
        let (client_cert, client_key) = issue(vec!["pressroom-1".into()], "agent");
        let ca_path = dir.join("shop-ca.pem");
        std::fs::write(&ca_path, ca.pem()).unwrap();
        Pki {
            ca: ca_path,
            server_cert,
            server_key,
            client_cert,
            client_key,
        }
    }

    async fn server(&self, ask_for_client_certificate: bool) -> MockServer {
        start_server(|settings| {
            settings.tls = Some(ServerTls {
                cert: self.server_cert.clone(),
                key: self.server_key.clone(),
                client_ca: ask_for_client_certificate.then(|| self.ca.clone()),
            });
        })
        .await
    }
}

/// The agent configuration for `server`, with `tls_keys` in `[server]`.
fn config_text(server: &MockServer, floor: &Floor, tls_keys: &str) -> String {
    one_queue_config(&server.url(), floor, "").replacen(
        "[agent]",
        &format!("{tls_keys}\n[agent]"),
        1,
    )
}

/// `tbot check-config --online` on `text`: its exit code and everything it printed.
async fn check_online(floor: &Floor, text: &str) -> (i32, String) {
    let path = floor.path("check.toml");
    std::fs::write(&path, text).unwrap();
    let private = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600);
    std::fs::set_permissions(&path, private).unwrap();
    let output = run_tbot([
        std::ffi::OsStr::new("check-config"),
        "--online".as_ref(),
        path.as_os_str(),
    ])
    .await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn a_private_authority_is_trusted_through_ca_file_and_refused_with_advice_without() {
    let floor = Floor::new(&["indigo"]);
    let pki = Pki::new(floor.dir.path());
    let server = pki.server(false).await;
    assert!(server.url().starts_with("https://"));

    let (code, said) = check_online(&floor, &config_text(&server, &floor, "")).await;
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("UnknownIssuer") && said.contains("set server.ca_file"),
        "{said}"
    );

    let trusted = config_text(&server, &floor, &format!("ca_file = {:?}", pki.ca));
    let (code, said) = check_online(&floor, &trusted).await;
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("takes the token"), "{said}");

    // The agent fetches a file over it and drops it, verified.
    let mut agent = AgentProcess::start(floor.dir.path(), &trusted);
    let ca_pem = std::fs::read(&pki.ca).unwrap();
    let mut owner = OperatorClient::trusting(&server.url(), &ca_pem).unwrap();
    owner
        .log_in("owner", OWNER_PASSWORD)
        .await
        .expect("log in over HTTPS");
    wait_connected(&owner, &["indigo-7900"]).await;
    let bytes = sample_bytes(200_000, 11);
    let job = send_file(&owner, "Cards", "indigo-7900", "cards.pdf", bytes.clone()).await;
    let dropped = floor.path("indigo").join(format!("{job}_cards.pdf"));
    wait_until("the file over TLS", Duration::from_secs(20), || {
        std::future::ready(dropped.exists().then_some(()))
    })
    .await;
    assert_eq!(std::fs::read(&dropped).unwrap(), bytes);
    assert!(agent.signal("TERM").await.success());
    server.stop().await;
}

#[tokio::test]
async fn mutual_tls_needs_the_agent_certificate() {
    let floor = Floor::new(&["indigo"]);
    let pki = Pki::new(floor.dir.path());
    let server = pki.server(true).await;

    let without = config_text(&server, &floor, &format!("ca_file = {:?}", pki.ca));
    let (code, said) = check_online(&floor, &without).await;
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("set server.client_cert"), "{said}");

    let with = config_text(
        &server,
        &floor,
        &format!(
            "ca_file = {:?}\nclient_cert = {:?}\nclient_key = {:?}",
            pki.ca, pki.client_cert, pki.client_key
        ),
    );
    let (code, said) = check_online(&floor, &with).await;
    assert_eq!(code, 0, "{said}");

    // The running agent is heard: its queue is connected on the job side.
    let mut agent = AgentProcess::start(floor.dir.path(), &with);
    wait_until(
        "the queue to connect over mutual TLS",
        Duration::from_secs(20),
        || {
            let model = server.state.model();
            let connected = model
                .connected_queues(server.state.clock.now())
                .iter()
                .any(|queue| queue.name == "indigo-7900");
            std::future::ready(connected.then_some(()))
        },
    )
    .await;
    assert!(agent.signal("TERM").await.success());
    server.stop().await;
}
