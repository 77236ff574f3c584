//! The "check" step: a claimed delivery's metadata is untrusted until it passes here
//! (PROTOCOL.md, "Bad input"). A delivery that fails is refused before any byte is
//! written, with a reason that names the file and the problem.

use std::collections::HashSet;

use url::Url;

use crate::config::QueueConfig;
use crate::logging::clipped;
use crate::naming::{check_file_name, clash_key};
use crate::protocol::Delivery;

/// One file of a delivery that passed the checks, with its size as a byte count and
/// its checksum in lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub url: String,
}

/// Checks every file of `delivery` for `queue`; the error is the reason to report.
pub fn check(delivery: &Delivery, queue: &QueueConfig) -> Result<Vec<CheckedFile>, String> {
    if delivery.files.is_empty() {
        return Err("the delivery has no files".into());
    }
    let mut seen = HashSet::new();
    let mut checked = Vec::with_capacity(delivery.files.len());
    for (index, file) in delivery.files.iter().enumerate() {
        let which = format!("file {} ({:?})", index + 1, file.name);
        check_file_name(&file.name).map_err(|why| format!("{which}: {why}"))?;
        // Normalised and case-folded: macOS and Windows shares would make two such
        // names one file.
        if !seen.insert(clash_key(&file.name)) {
            return Err(format!(
                "{which}: two files of the delivery are named {:?}",
                file.name
            ));
        }
        let size = u64::try_from(file.size)
            .map_err(|_| format!("{which}: the size {} is negative", file.size))?;
        if size > queue.max_file_size {
            return Err(format!(
                "{which}: the size {size} bytes is more than queue {}'s max_file_size of {} bytes",
                queue.name, queue.max_file_size
            ));
        }
        if file.sha256.len() != 64 || !file.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{which}: the sha256 {:?} is not 64 hexadecimal characters",
                clipped(&file.sha256, 80)
            ));
        }
        check_url(&file.url).map_err(|why| format!("{which}: {why}"))?;
        checked.push(CheckedFile {
            name: file.name.clone(),
            size,
            sha256: file.sha256.to_ascii_lowercase(),
            url: file.url.clone(),
        });
    }
    Ok(checked)
}

/// A file's `url` is a path on the server or an absolute http(s) URL without
/// credentials: a user name or password in it would be sent to whoever holds that host.
fn check_url(url: &str) -> Result<(), String> {
    if url.trim().is_empty() {
        return Err("the url is empty".into());
    }
    if url.starts_with('/') {
        return if url.starts_with("//") {
            Err("the url starts with // (a link to another host without its scheme)".into())
        } else {
            Ok(())
        };
    }
    let parsed = Url::parse(url).map_err(|err| format!("the url is not a URL: {err}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "the url's scheme is {:?}; only http and https are fetched",
            clipped(parsed.scheme(), 20)
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("the url carries a user name or password, which tbot does not send".into());
    }
    Ok(())
}
