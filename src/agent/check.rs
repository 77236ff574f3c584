//! The "check" step: a claimed delivery's metadata is untrusted until it passes here
//! (PROTOCOL.md, "Bad input"). A delivery that fails is refused before any byte is
//! written, with a reason that names the file and the problem.

use std::collections::HashSet;

use crate::config::QueueConfig;
use crate::naming::check_file_name;
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
        // Case-folded: Windows and macOS shares would make two such names one file.
        if !seen.insert(file.name.to_lowercase()) {
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
                truncate(&file.sha256, 80)
            ));
        }
        if file.url.trim().is_empty() {
            return Err(format!("{which}: the url is empty"));
        }
        checked.push(CheckedFile {
            name: file.name.clone(),
            size,
            sha256: file.sha256.to_ascii_lowercase(),
            url: file.url.clone(),
        });
    }
    Ok(checked)
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
