//! One `[[queue]]` of the configuration: the device, its hotfolder, and the shape it
//! expects each delivery in (its delivery profile).

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use crate::naming::{FolderPathRule, NamingRule};
use crate::protocol::QueueKind;
use crate::ticket::TicketFormat;

/// One output device and the hotfolder it watches.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    pub name: String,
    pub kind: QueueKind,
    pub hotfolder: PathBuf,
    pub naming: NamingRule,
    pub max_file_size: u64,
    /// A dropped file still in the hotfolder after this long is reported `stalled`.
    pub stall_after: Duration,
    pub profile: DeliveryProfile,
}

/// The shape a device expects each delivery in, beside the files themselves.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryProfile {
    pub layout: Layout,
    /// Folders below the hotfolder each delivery goes into, created as needed.
    pub subfolder: Option<FolderPathRule>,
    /// The job ticket written after the files it names, and its name rule.
    pub ticket: Option<(TicketFormat, NamingRule)>,
    /// An empty file written after each data file (or job folder, or ticket), named
    /// from what it follows: `{name}.trg`.
    pub trigger: Option<NamingRule>,
    /// While this many dropped files wait in the hotfolder, no new delivery is taken.
    pub max_waiting: Option<usize>,
    /// Where the device moves what it accepted, relative to the hotfolder.
    pub accepted_folder: Option<PathBuf>,
    /// Where the device moves what it refused, relative to the hotfolder.
    pub rejected_folder: Option<PathBuf>,
}

/// Loose files, or one folder per delivery that appears whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    Files,
    /// Every file of a delivery in one folder named by this rule.
    Folder(NamingRule),
}

impl DeliveryProfile {
    /// Loose files and nothing else, as a queue without profile keys gets.
    pub fn plain() -> DeliveryProfile {
        DeliveryProfile {
            layout: Layout::Files,
            subfolder: None,
            ticket: None,
            trigger: None,
            max_waiting: None,
            accepted_folder: None,
            rejected_folder: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueue {
    name: String,
    kind: QueueKind,
    hotfolder: PathBuf,
    #[serde(default = "default_naming")]
    naming: String,
    /// Parsed in `check_queues`, so a wrong size gets a message that shows a right one.
    #[serde(default = "default_max_file_size")]
    max_file_size: String,
    #[serde(default = "default_stall_after", with = "humantime_serde")]
    stall_after: Duration,
    #[serde(default)]
    layout: RawLayout,
    folder: Option<String>,
    subfolder: Option<String>,
    #[serde(default)]
    ticket: RawTicket,
    ticket_name: Option<String>,
    trigger: Option<String>,
    max_waiting: Option<usize>,
    accepted_folder: Option<PathBuf>,
    rejected_folder: Option<PathBuf>,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RawLayout {
    #[default]
    Files,
    Folder,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawTicket {
    #[default]
    None,
    Jdf,
    Xjdf,
    Json,
}

fn default_naming() -> String {
    "{order}_{job}_{name}".into()
}
fn default_stall_after() -> Duration {
    Duration::from_secs(3600)
}
fn default_max_file_size() -> String {
    "20GiB".into()
}

fn default_folder() -> &'static str {
    "{order}_{job}"
}

pub(super) fn check_queues(raw: &[RawQueue], problems: &mut Vec<String>) -> Vec<QueueConfig> {
    if raw.is_empty() {
        problems.push("no [[queue]] is configured: add at least one".into());
    }
    let mut names = HashSet::new();
    let mut hotfolders = HashSet::new();
    let mut queues = Vec::new();
    for (index, queue) in raw.iter().enumerate() {
        let key = format!("queue[{index}]");
        if queue.name.trim().is_empty() {
            problems.push(format!("{key}.name must not be empty"));
        } else if !names.insert(queue.name.clone()) {
            problems.push(format!(
                "{key}.name {:?} is used by an earlier queue; queue names must be unique",
                queue.name
            ));
        }
        if !queue.hotfolder.is_absolute() {
            problems.push(format!(
                "{key}.hotfolder {} must be an absolute path",
                queue.hotfolder.display()
            ));
        } else if !hotfolders.insert(normalize(&queue.hotfolder)) {
            problems.push(format!(
                "{key}.hotfolder {} is already the hotfolder of another queue",
                queue.hotfolder.display()
            ));
        }
        if queue.stall_after.is_zero() {
            problems.push(format!("{key}.stall_after must be longer than 0s"));
        }
        let max_file_size = match queue.max_file_size.trim().parse::<ByteSize>() {
            Ok(size) if size.as_u64() > 0 => size.as_u64(),
            Ok(_) => {
                problems.push(format!("{key}.max_file_size must be more than 0 bytes"));
                0
            }
            Err(_) => {
                problems.push(format!(
                    "{key}.max_file_size {:?} is not a size: write it like \"500MiB\", \"20GiB\" or \"4GB\"",
                    queue.max_file_size
                ));
                0
            }
        };
        let naming = NamingRule::parse(&queue.naming)
            .map_err(|why| problems.push(format!("{key}.naming {:?}: {why}", queue.naming)))
            .ok();
        let profile = check_profile(queue, &key, problems);
        if let (Some(naming), Some(profile)) = (naming, profile) {
            queues.push(QueueConfig {
                name: queue.name.clone(),
                kind: queue.kind,
                hotfolder: queue.hotfolder.clone(),
                naming,
                max_file_size,
                stall_after: queue.stall_after,
                profile,
            });
        }
    }
    queues
}

type RuleParser = fn(&str) -> Result<NamingRule, String>;

/// The delivery profile of one queue; each problem names its key.
fn check_profile(
    queue: &RawQueue,
    key: &str,
    problems: &mut Vec<String>,
) -> Option<DeliveryProfile> {
    let before = problems.len();
    let rule = |name: &str, template: &str, parse: RuleParser, problems: &mut Vec<String>| {
        parse(template)
            .map_err(|why| problems.push(format!("{key}.{name} {template:?}: {why}")))
            .ok()
    };
    let layout = match (queue.layout, &queue.folder) {
        (RawLayout::Files, None) => Some(Layout::Files),
        (RawLayout::Files, Some(_)) => {
            problems.push(format!(
                "{key}.folder is set but {key}.layout is \"files\": set layout = \"folder\" for one folder per delivery"
            ));
            None
        }
        (RawLayout::Folder, folder) => rule(
            "folder",
            folder.as_deref().unwrap_or(default_folder()),
            NamingRule::parse_without_name,
            problems,
        )
        .map(Layout::Folder),
    };
    let format = match queue.ticket {
        RawTicket::None => None,
        RawTicket::Jdf => Some(TicketFormat::Jdf),
        RawTicket::Xjdf => Some(TicketFormat::Xjdf),
        RawTicket::Json => Some(TicketFormat::Json),
    };
    let ticket = match (format, &queue.ticket_name) {
        (None, Some(_)) => {
            problems.push(format!(
                "{key}.ticket_name is set but {key}.ticket is \"none\": choose jdf, xjdf or json"
            ));
            None
        }
        (None, None) => None,
        (Some(format), name) => {
            let default = format!("{{order}}_{{job}}.{}", format.extension());
            rule(
                "ticket_name",
                name.as_deref().unwrap_or(&default),
                NamingRule::parse_without_name,
                problems,
            )
            .map(|name| (format, name))
        }
    };
    let trigger = queue
        .trigger
        .as_deref()
        .and_then(|template| rule("trigger", template, NamingRule::parse, problems));
    let subfolder = queue.subfolder.as_deref().and_then(|template| {
        FolderPathRule::parse(template)
            .map_err(|why| problems.push(format!("{key}.subfolder {template:?}: {why}")))
            .ok()
    });
    if queue.max_waiting == Some(0) {
        problems.push(format!("{key}.max_waiting must be at least 1"));
    }
    for (name, folder) in [
        ("accepted_folder", &queue.accepted_folder),
        ("rejected_folder", &queue.rejected_folder),
    ] {
        if let Some(why) = folder.as_deref().and_then(verdict_folder_problem) {
            problems.push(format!(
                "{key}.{name} {}: {why}",
                folder.as_deref().unwrap_or(Path::new("")).display()
            ));
        }
    }
    if queue.accepted_folder.is_some() && queue.accepted_folder == queue.rejected_folder {
        problems.push(format!(
            "{key}.accepted_folder and {key}.rejected_folder are the same folder: a device's verdict could not be told"
        ));
    }
    (problems.len() == before).then(|| DeliveryProfile {
        layout: layout.unwrap_or(Layout::Files),
        subfolder,
        ticket,
        trigger,
        max_waiting: queue.max_waiting,
        accepted_folder: queue.accepted_folder.clone(),
        rejected_folder: queue.rejected_folder.clone(),
    })
}

/// Why a success or error folder cannot be one: it must lie inside the hotfolder.
fn verdict_folder_problem(folder: &Path) -> Option<&'static str> {
    let mut parts = folder.components().peekable();
    if parts.peek().is_none() {
        return Some("is empty");
    }
    if folder.is_absolute() || parts.any(|part| !matches!(part, Component::Normal(_))) {
        return Some("must be a folder inside the hotfolder, written relative to it, without ..");
    }
    if folder.starts_with(crate::agent::staging::STAGING_DIR) {
        return Some("is tbot's own staging folder");
    }
    None
}

/// Lexically normalizes a path (drops `.`, folds `..`, ignores a trailing slash) so that
/// two spellings of one hotfolder compare equal.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
