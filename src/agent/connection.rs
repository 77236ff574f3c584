//! How the agent reaches its server: the base URL, the token and the TLS settings
//! (the shop's own certificate authority, a client certificate), built into one HTTP
//! client. A reload builds a new one; calls already on their way finish on the old.
//! Proxies come from the standard `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` variables.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use url::Url;

use super::client::ClientError;
use crate::config::{Secret, ServerConfig};

/// One way to the server.
pub(crate) struct Connection {
    /// For the server's own origin: presents the client certificate, when there is one.
    pub(crate) http: reqwest::Client,
    /// For file URLs on other hosts (a CDN, a storage bucket): the same trust, but no
    /// client certificate, which is for the job side only.
    foreign: reqwest::Client,
    /// The server's URL, ending in `/` so that paths join below it.
    pub(crate) base: Url,
    pub(crate) token: Secret,
}

impl Connection {
    pub(crate) fn new(server: &ServerConfig) -> anyhow::Result<Connection> {
        let authorities = match &server.tls.ca_file {
            Some(ca_file) => read_ca_file(ca_file)?,
            None => Vec::new(),
        };
        let builder = || {
            authorities.iter().fold(
                reqwest::Client::builder()
                    .user_agent(concat!("tbot/", env!("CARGO_PKG_VERSION")))
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(Duration::from_secs(60))
                    .redirect(reqwest::redirect::Policy::none()),
                |builder, authority| builder.add_root_certificate(authority.clone()),
            )
        };
        // Only a client certificate makes the two clients differ.
        let (http, foreign) = match &server.tls.client_identity {
            Some((cert, key)) => (
                builder().identity(read_identity(cert, key)?).build()?,
                builder().build()?,
            ),
            None => {
                let http = builder().build()?;
                (http.clone(), http)
            }
        };
        let mut base = server.url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(Connection {
            http,
            foreign,
            base,
            token: server.token.clone(),
        })
    }

    /// The client for `url`: the client certificate goes to the server's origin only.
    pub(crate) fn client_for(&self, url: &Url) -> &reqwest::Client {
        if self.is_own_origin(url) {
            &self.http
        } else {
            &self.foreign
        }
    }

    /// The URL of an agent endpoint or a server path, below the configured base URL.
    pub(crate) fn resolve(&self, path: &str) -> Result<Url, ClientError> {
        self.base.join(path.trim_start_matches('/')).map_err(|err| {
            ClientError::BadResponse(format!("cannot make a URL of {path:?}: {err}"))
        })
    }

    /// Whether `url` has the configured server's origin, the only place the token goes.
    pub(crate) fn is_own_origin(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }
}

/// The certificates of `server.ca_file`, trusted besides the system's own.
fn read_ca_file(path: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    crate::pem::read_certificates("server.ca_file", path)?
        .iter()
        .map(|der| {
            reqwest::Certificate::from_der(der)
                .with_context(|| format!("server.ca_file {}: not a certificate", path.display()))
        })
        .collect()
}

/// The client certificate and its private key, for a server that asks for one.
fn read_identity(cert: &Path, key: &Path) -> anyhow::Result<reqwest::Identity> {
    let mut pem = std::fs::read(cert)
        .with_context(|| format!("server.client_cert {}: cannot read it", cert.display()))?;
    pem.push(b'\n');
    pem.extend(
        std::fs::read(key)
            .with_context(|| format!("server.client_key {}: cannot read it", key.display()))?,
    );
    reqwest::Identity::from_pem(&pem).with_context(|| {
        format!(
            "server.client_cert {} and server.client_key {}: not a PEM certificate and its \
             private key",
            cert.display(),
            key.display()
        )
    })
}

/// What to do about a TLS failure, in words, when `error` (a failed request's causes on
/// one line) is one; `None` for other failures.
pub(crate) fn tls_advice(error: &str) -> Option<&'static str> {
    let advice = if error.contains("UnknownIssuer") {
        "the server's certificate is not signed by an authority this machine trusts; if the \
         job side uses the print shop's own certificate authority, set server.ca_file to its \
         PEM file"
    } else if error.contains("NotValidForName") {
        "the server's certificate is for another host name: use a name it was issued for in \
         server.url"
    } else if error.contains("Expired") || error.contains("NotValidYet") {
        "the server's certificate is out of its validity dates (or this machine's clock is \
         wrong)"
    } else if error.contains("CertificateRequired") || error.contains("certificate required") {
        "the server asks for a client certificate: set server.client_cert and \
         server.client_key"
    } else if error.contains("BadCertificate") || error.contains("UnknownCA") {
        "the server refused this agent's client certificate: check server.client_cert against \
         the authority the server trusts"
    } else if error.contains("InvalidCertificate") || error.contains("invalid peer certificate") {
        "the server's certificate is not valid: check it, or server.ca_file"
    } else {
        return None;
    };
    Some(advice)
}
