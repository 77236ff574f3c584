//! Certificates read from PEM files: the agent's `server.ca_file` and the mock job
//! side's HTTPS certificate and client authority. Errors name the setting and the file.

use std::path::Path;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Every certificate in the PEM file at `path`, given as `setting`; at least one.
pub(crate) fn read_certificates(
    setting: &str,
    path: &Path,
) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{setting} {}: cannot read PEM certificates", path.display()))?;
    if certificates.is_empty() {
        anyhow::bail!(
            "{setting} {}: holds no certificate; it should hold one or more \
             -----BEGIN CERTIFICATE----- blocks",
            path.display()
        );
    }
    Ok(certificates)
}
