//! Where a delivery's pieces go in the hotfolder, under the queue's delivery profile:
//! the subfolders, the job folder, each file's name, the ticket's and the triggers'.
//! All of it is worked out and checked before any file of the delivery is written.

use std::collections::HashSet;

use crate::agent::check::CheckedFile;
use crate::config::{Layout, QueueConfig};
use crate::naming::{check_file_name, clash_key, CLASH_ROOM};
use crate::protocol::Delivery;
use crate::ticket::TicketFormat;

/// The planned names of one delivery's pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    /// Folders below the hotfolder the delivery goes into, made as needed.
    pub(crate) subfolder: Vec<String>,
    /// The job folder every file goes into, in folder layout.
    pub(crate) folder: Option<String>,
    /// Each file's name, in the job folder or loose.
    pub(crate) names: Vec<String>,
    /// The job ticket's format and name, beside the files.
    pub(crate) ticket: Option<(TicketFormat, String)>,
}

/// Plans where each piece of `delivery` goes in `queue`'s hotfolder. Every name is
/// checked like a name from the server and against the file system's own limit
/// (`name_max` bytes, with room for a clash suffix), and no two pieces of one folder
/// get the same name to the file system.
pub(crate) fn plan(
    delivery: &Delivery,
    queue: &QueueConfig,
    files: &[CheckedFile],
    name_max: usize,
) -> Result<Placement, String> {
    let fits = |name: &str, which: &str| -> Result<(), String> {
        check_file_name(name).map_err(|why| format!("{which}: {why}"))?;
        if name.len() + CLASH_ROOM > name_max {
            return Err(format!(
                "{which}: the name is {} bytes long; the hotfolder's file system takes at most {name_max}, \
                 and tbot keeps {CLASH_ROOM} free for a clash suffix",
                name.len()
            ));
        }
        Ok(())
    };
    let profile = &queue.profile;
    let subfolder = match &profile.subfolder {
        Some(rule) => rule
            .render(delivery)
            .map_err(|why| format!("queue {}'s subfolder rule: {why}", queue.name))?,
        None => Vec::new(),
    };
    let folder = match &profile.layout {
        Layout::Files => None,
        Layout::Folder(rule) => {
            let name = rule.render_without_name(delivery);
            fits(
                &name,
                &format!(
                    "the job folder {name:?} named by queue {}'s folder rule",
                    queue.name
                ),
            )?;
            Some(name)
        }
    };
    let mut seen = HashSet::new();
    let mut names = Vec::with_capacity(files.len());
    for (index, file) in files.iter().enumerate() {
        let name = queue.naming.render(delivery, &file.name);
        let which = format!(
            "file {} ({:?}) named {name:?} by queue {}'s naming rule",
            index + 1,
            file.name,
            queue.name
        );
        fits(&name, &which)?;
        if !seen.insert(clash_key(&name)) {
            return Err(format!(
                "{which}: another file of the delivery gets the same name"
            ));
        }
        names.push(name);
    }
    let ticket = match &profile.ticket {
        Some((format, rule)) => {
            let name = rule.render_without_name(delivery);
            let which = format!(
                "the job ticket {name:?} named by queue {}'s ticket_name rule",
                queue.name
            );
            fits(&name, &which)?;
            if !seen.insert(clash_key(&name)) {
                return Err(format!(
                    "{which}: a file of the delivery gets the same name"
                ));
            }
            Some((*format, name))
        }
        None => None,
    };
    let placement = Placement {
        subfolder,
        folder,
        names,
        ticket,
    };
    if let Some(trigger) = &profile.trigger {
        for unit in placement.triggered() {
            let name = trigger.render(delivery, unit);
            fits(
                &name,
                &format!(
                    "the trigger {name:?} named by queue {}'s trigger rule",
                    queue.name
                ),
            )?;
        }
    }
    Ok(placement)
}

impl Placement {
    /// What gets a trigger file after it, by the planned names.
    pub(crate) fn triggered(&self) -> Vec<&str> {
        triggered(
            self.folder.as_deref(),
            self.names.iter().map(String::as_str),
            self.ticket.as_ref().map(|(_, name)| name.as_str()),
        )
    }
}

/// What gets a trigger file after it: the job folder, or each loose file and the
/// ticket beside them. Planned names when a drop is checked, landed ones after it.
pub(crate) fn triggered<'a>(
    folder: Option<&'a str>,
    files: impl IntoIterator<Item = &'a str>,
    ticket: Option<&'a str>,
) -> Vec<&'a str> {
    match folder {
        Some(folder) => vec![folder],
        None => files.into_iter().chain(ticket).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn queue(keys: &str) -> QueueConfig {
        let text = format!(
            "[server]\nurl = \"http://127.0.0.1:8470\"\ntoken = \"t\"\n[agent]\nname = \"a\"\n\
             state_dir = \"/tmp/s\"\n[[queue]]\nname = \"indigo\"\nkind = \"printer\"\n\
             hotfolder = \"/tmp/i\"\n{keys}\n"
        );
        Config::parse(&text, None).expect("valid").queues.remove(0)
    }

    fn delivery(customer: Option<&str>) -> Delivery {
        serde_json::from_value(serde_json::json!({
            "id": "d-1", "queue": "indigo", "lease_expires_at": "2026-11-21T10:05:00Z",
            "job": {"id": "J-1", "name": "Cards", "order_number": "MC-1", "send_count": 1,
                    "customer": customer},
            "files": []
        }))
        .unwrap()
    }

    fn files(names: &[&str]) -> Vec<CheckedFile> {
        names
            .iter()
            .map(|name| CheckedFile {
                name: name.to_string(),
                size: 1,
                sha256: "0".repeat(64),
                url: "/f".into(),
            })
            .collect()
    }

    #[test]
    fn plans_subfolders_a_job_folder_and_a_ticket() {
        let queue = queue(
            "layout = \"folder\"\nnaming = \"{name}\"\nsubfolder = \"{customer}/{order}\"\nticket = \"xjdf\"",
        );
        let placement = plan(
            &delivery(Some("Smith")),
            &queue,
            &files(&["a.pdf", "b.pdf"]),
            255,
        )
        .unwrap();
        assert_eq!(placement.subfolder, ["Smith", "MC-1"]);
        assert_eq!(placement.folder.as_deref(), Some("MC-1_J-1"));
        assert_eq!(placement.names, ["a.pdf", "b.pdf"]);
        assert_eq!(
            placement.ticket,
            Some((TicketFormat::Xjdf, "MC-1_J-1.xjdf".into()))
        );
        assert_eq!(placement.triggered(), ["MC-1_J-1"]);
        let without_customer = plan(&delivery(None), &queue, &files(&["a.pdf"]), 255).unwrap();
        assert_eq!(without_customer.subfolder, ["MC-1"]);
    }

    #[test]
    fn a_ticket_named_like_a_file_is_refused_before_anything_is_written() {
        let queue = queue("naming = \"{name}\"\nticket = \"jdf\"\nticket_name = \"{job}.jdf\"");
        let why = plan(&delivery(None), &queue, &files(&["J-1.JDF"]), 255).unwrap_err();
        assert!(
            why.contains("the job ticket \"J-1.jdf\"") && why.contains("same name"),
            "{why}"
        );
    }

    #[test]
    fn a_trigger_name_too_long_for_the_file_system_is_refused() {
        let queue = queue("naming = \"{name}\"\ntrigger = \"{name}.trigger-file\"");
        let name = format!("{}.pdf", "x".repeat(186));
        let why = plan(&delivery(None), &queue, &files(&[name.as_str()]), 255).unwrap_err();
        assert!(
            why.contains("the trigger") && why.contains("more than 200"),
            "{why}"
        );
    }
}
