//! File names: which names from the server are safe to write, and how a queue's naming
//! rule turns a job's file into the name a device sees in its hotfolder.

use std::fmt;

use crate::protocol::Delivery;

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Longest file name accepted from the server, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 200;

/// Bytes a clash suffix may add to a name (`_10000`), kept free below the file
/// system's own limit so that a clash can always be named.
pub(crate) const CLASH_ROOM: usize = 6;

/// Device names Windows reserves in every folder, with or without an extension.
const WINDOWS_RESERVED: &[&str] = &[
    "CON",
    "PRN",
    "AUX",
    "NUL",
    "CONIN$",
    "CONOUT$",
    "COM0",
    "COM1",
    "COM2",
    "COM3",
    "COM4",
    "COM5",
    "COM6",
    "COM7",
    "COM8",
    "COM9",
    "COM\u{b9}",
    "COM\u{b2}",
    "COM\u{b3}",
    "LPT0",
    "LPT1",
    "LPT2",
    "LPT3",
    "LPT4",
    "LPT5",
    "LPT6",
    "LPT7",
    "LPT8",
    "LPT9",
    "LPT\u{b9}",
    "LPT\u{b2}",
    "LPT\u{b3}",
];

/// Characters that read as nothing or change how the rest reads: Unicode format
/// characters (zero-width, direction overrides), line and paragraph separators.
pub(crate) fn is_invisible(c: char) -> bool {
    // Every log line passes through here, character by character: ASCII has none.
    !c.is_ascii()
        && matches!(
            c.general_category(),
            GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
}

/// Checks that `name` is one plain, visible file name (PROTOCOL.md, "Bad input").
/// The error says what is wrong in words an operator can act on.
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the file name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("the file name {name:?} is a folder reference"));
    }
    if name.contains('/') || name.contains('\\') {
        return Err(format!("the file name {name:?} contains a path separator"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "the file name {name:?} contains a control character"
        ));
    }
    if let Some(c) = name.chars().find(|&c| is_invisible(c)) {
        return Err(format!(
            "the file name {name:?} contains the invisible or direction-changing character U+{:04X}",
            u32::from(c)
        ));
    }
    if name.starts_with('.') {
        return Err(format!(
            "the file name {name:?} starts with a dot (hidden files are tbot's own)"
        ));
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Err(format!(
            "the file name {name:?} ends with a dot or a space, which Windows shares drop"
        ));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "the file name is {} bytes long, more than {MAX_NAME_BYTES}",
            name.len()
        ));
    }
    if is_reserved(name) {
        return Err(format!(
            "the file name {name:?} is a reserved device name on Windows"
        ));
    }
    Ok(())
}

/// Whether `name`'s stem is a device name Windows reserves.
fn is_reserved(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end();
    WINDOWS_RESERVED
        .iter()
        .any(|reserved| stem.eq_ignore_ascii_case(reserved))
}

/// What two names that one folder would hold as one file have in common: the same
/// text after Unicode normalisation (NFC) and case folding, as on macOS and Windows
/// shares.
pub(crate) fn clash_key(name: &str) -> String {
    if name.is_ascii() {
        return name.to_ascii_lowercase();
    }
    name.nfc()
        .collect::<String>()
        .to_lowercase()
        .nfc()
        .collect()
}

/// One piece of a naming rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Order,
    Job,
    JobName,
    Send,
    Queue,
    Customer,
    Name,
}

/// A queue's naming rule, such as `{order}_{job}_{name}`.
///
/// Placeholders: `{order}` (order number), `{customer}` and `{job_name}` (each left out
/// with the separator after it when the job has none), `{job}` (job id), `{send}` (send
/// count), `{queue}` and `{name}` (the file's own name, required in a file rule so the
/// extension survives, and refused where there is no file, such as a folder rule).
#[derive(Clone, PartialEq, Eq)]
pub struct NamingRule {
    template: String,
    parts: Vec<Part>,
}

impl fmt::Debug for NamingRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NamingRule({:?})", self.template)
    }
}

impl NamingRule {
    /// A rule for a file's name: it must hold `{name}`.
    pub fn parse(template: &str) -> Result<NamingRule, String> {
        let rule = NamingRule::parse_parts(template)?;
        if !rule.parts.contains(&Part::Name) {
            return Err("the rule must contain {name}, the file's own name".into());
        }
        Ok(rule)
    }

    /// A rule for a name that is no file's (a job folder, a ticket, a subfolder): it
    /// may not hold `{name}`, and needs a placeholder or text.
    pub fn parse_without_name(template: &str) -> Result<NamingRule, String> {
        let rule = NamingRule::parse_parts(template)?;
        if rule.parts.contains(&Part::Name) {
            return Err("{name} has no meaning here: there is no one file to take it from".into());
        }
        if rule.parts.is_empty() {
            return Err("the rule is empty".into());
        }
        Ok(rule)
    }

    fn parse_parts(template: &str) -> Result<NamingRule, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let close = rest[open..].find('}').ok_or("a `{` is not closed by `}`")? + open;
            parts.push(match &rest[open + 1..close] {
                "order" => Part::Order,
                "job" => Part::Job,
                "job_name" => Part::JobName,
                "send" => Part::Send,
                "queue" => Part::Queue,
                "customer" => Part::Customer,
                "name" => Part::Name,
                other => {
                    return Err(format!(
                        "unknown placeholder {{{other}}} (known: {{order}}, {{customer}}, {{job}}, {{job_name}}, {{send}}, {{queue}}, {{name}})"
                    ))
                }
            });
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err("a `}` has no `{` before it".into());
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        for part in &parts {
            if let Part::Text(text) = part {
                if text.contains('/') || text.contains('\\') || text.chars().any(char::is_control) {
                    return Err(
                        "the rule's fixed text must not contain / \\ or control characters".into(),
                    );
                }
            }
        }
        Ok(NamingRule {
            template: template.to_string(),
            parts,
        })
    }

    /// The name a rule without `{name}` gives (a job folder's, a ticket's, a
    /// subfolder's). Values from the job side may end it badly ("ACME Inc.") or make it
    /// a device name ("Aux"): trailing dots and spaces go, and a reserved name gets a
    /// `_` in front, so an ordinary customer never makes a job fail.
    pub fn render_without_name(&self, delivery: &Delivery) -> String {
        let rendered = self.render(delivery, "");
        let name = rendered.trim_end_matches(['.', ' ']);
        if is_reserved(name) {
            format!("_{name}")
        } else {
            name.to_string()
        }
    }

    /// The name `file_name` of `delivery` gets in the hotfolder (`file_name` is the
    /// name a rule without `{name}` never reads). Values from the server other than the
    /// (already checked) file name are made safe: characters that cannot stand in a
    /// file name become `_`. An empty placeholder collapses with the separator after
    /// it, or before it at the end.
    pub fn render(&self, delivery: &Delivery, file_name: &str) -> String {
        let job = &delivery.job;
        let mut out = String::new();
        let mut skip_separator = false;
        for part in &self.parts {
            let value = match part {
                Part::Text(text) if skip_separator => {
                    skip_separator = false;
                    text.trim_start_matches(SEPARATORS).to_string()
                }
                Part::Text(text) => text.clone(),
                Part::Order => sanitize(job.order_number.as_deref().unwrap_or("")),
                Part::Customer => sanitize(job.customer.as_deref().unwrap_or("")),
                Part::Job => sanitize(&job.id),
                Part::JobName => sanitize(&job.name),
                Part::Send => job.send_count.to_string(),
                Part::Queue => sanitize(&delivery.queue),
                Part::Name => file_name.to_string(),
            };
            if !matches!(part, Part::Text(_)) {
                skip_separator = value.is_empty();
                if skip_separator {
                    continue;
                }
            }
            out.push_str(&value);
        }
        if skip_separator {
            out.truncate(out.trim_end_matches(SEPARATORS).len());
        }
        out.trim_start_matches('.').to_string()
    }
}

/// What stands between placeholders and goes with an empty one.
const SEPARATORS: [char; 4] = ['_', '-', ' ', '.'];

/// A rule for a path of folders below the hotfolder, such as `{customer}/{order}`: one
/// name rule per folder. A folder whose name comes out empty is left out, so a path
/// never holds an empty step, and no step can be `..` or leave the hotfolder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderPathRule {
    steps: Vec<NamingRule>,
}

impl FolderPathRule {
    pub fn parse(template: &str) -> Result<FolderPathRule, String> {
        let steps = template
            .split('/')
            .filter(|step| !step.is_empty())
            .map(NamingRule::parse_without_name)
            .collect::<Result<Vec<_>, _>>()?;
        if steps.is_empty() {
            return Err("the rule names no folder".into());
        }
        Ok(FolderPathRule { steps })
    }

    /// The folders for `delivery`, each a checked file name; the error names the one
    /// that is not.
    pub fn render(&self, delivery: &Delivery) -> Result<Vec<String>, String> {
        let mut folders = Vec::new();
        for step in &self.steps {
            let folder = step.render_without_name(delivery);
            if folder.is_empty() {
                continue;
            }
            check_file_name(&folder).map_err(|why| format!("folder {folder:?}: {why}"))?;
            folders.push(folder);
        }
        Ok(folders)
    }
}

/// Replaces what may not stand in a file name with `_` and caps the length.
fn sanitize(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| {
            if c.is_control()
                || is_invisible(c)
                || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|')
            {
                '_'
            } else {
                c
            }
        })
        .collect();
    let mut end = cleaned.len().min(64);
    while !cleaned.is_char_boundary(end) {
        end -= 1;
    }
    cleaned[..end].trim().to_string()
}

/// The `n`th alternative to a name that is already taken: `cards.pdf` becomes
/// `cards_2.pdf`, `cards_3.pdf`, ... The extension stays last so a RIP's filters still
/// match.
pub fn clash_name(name: &str, n: u32) -> String {
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}_{n}.{ext}"),
        _ => format!("{name}_{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Delivery, DeliveryJob};

    fn delivery(order: Option<&str>) -> Delivery {
        Delivery {
            id: "d-1".into(),
            queue: "indigo".into(),
            lease_expires_at: time::OffsetDateTime::UNIX_EPOCH,
            job: DeliveryJob {
                id: "J-1001".into(),
                name: "Cards / Smith".into(),
                order_number: order.map(String::from),
                send_count: 2,
                customer: None,
                ticket: None,
            },
            files: vec![],
        }
    }

    #[test]
    fn renders_the_default_rule() {
        let rule = NamingRule::parse("{order}_{job}_{name}").unwrap();
        assert_eq!(
            rule.render(&delivery(Some("MC-5521")), "cards.pdf"),
            "MC-5521_J-1001_cards.pdf"
        );
        assert_eq!(
            rule.render(&delivery(None), "cards.pdf"),
            "J-1001_cards.pdf"
        );
    }

    #[test]
    fn makes_server_values_safe() {
        let rule = NamingRule::parse("{job_name}-{send}-{name}").unwrap();
        assert_eq!(
            rule.render(&delivery(None), "a.pdf"),
            "Cards _ Smith-2-a.pdf"
        );
    }

    #[test]
    fn refuses_bad_rules() {
        assert!(NamingRule::parse("{order}_{job}")
            .unwrap_err()
            .contains("{name}"));
        assert!(NamingRule::parse("{nope}_{name}")
            .unwrap_err()
            .contains("unknown placeholder"));
        assert!(NamingRule::parse("sub/{name}").is_err());
        assert!(NamingRule::parse("{name").is_err());
    }

    #[test]
    fn refuses_hostile_names() {
        for bad in [
            "",
            ".",
            "..",
            "a/b.pdf",
            "a\\b.pdf",
            "a\0b",
            "a\nb",
            ".hidden",
            "CON",
            "nul.txt",
            "com1.pdf",
            "COM\u{b9}.pdf",
            "invoice\u{202e}fdp.exe",
            "cards\u{200b}.pdf",
            "cards\u{2028}.pdf",
            "cards.pdf.",
            "cards.pdf ",
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(check_file_name(&"x".repeat(201)).is_err());
        assert!(check_file_name("Business cards (v2).pdf").is_ok());
        assert!(check_file_name("console.pdf").is_ok());
    }

    #[test]
    fn twins_share_a_clash_key() {
        assert_eq!(clash_key("Caf\u{e9}.pdf"), clash_key("Cafe\u{301}.pdf"));
        assert_eq!(clash_key("Cards.PDF"), clash_key("cards.pdf"));
        assert_ne!(clash_key("cards-1.pdf"), clash_key("cards-2.pdf"));
    }

    #[test]
    fn server_values_lose_invisible_characters() {
        let mut hostile = delivery(Some("MC\u{202e}1"));
        hostile.job.id = "J\u{2028}1".into();
        let rule = NamingRule::parse("{order}_{job}_{name}").unwrap();
        assert_eq!(rule.render(&hostile, "a.pdf"), "MC_1_J_1_a.pdf");
    }

    #[test]
    fn empty_placeholders_collapse_with_their_separator() {
        let rule = NamingRule::parse_without_name("{order}_{job}_{customer}").unwrap();
        assert_eq!(rule.render(&delivery(None), ""), "J-1001");
        let mut with_customer = delivery(Some("MC-1"));
        with_customer.job.customer = Some("Smith & Co".into());
        assert_eq!(rule.render(&with_customer, ""), "MC-1_J-1001_Smith & Co");
        assert!(NamingRule::parse_without_name("{order}_{name}").is_err());
    }

    #[test]
    fn folder_paths_never_leave_the_hotfolder() {
        let rule = FolderPathRule::parse("{customer}/{order}").unwrap();
        let mut hostile = delivery(Some(".."));
        hostile.job.customer = Some("../../etc".into());
        assert_eq!(rule.render(&hostile).unwrap(), ["_.._etc"]);
        assert_eq!(rule.render(&delivery(None)).unwrap(), Vec::<String>::new());
        let mut plain = delivery(Some("MC-5521"));
        plain.job.customer = Some("Smith".into());
        assert_eq!(rule.render(&plain).unwrap(), ["Smith", "MC-5521"]);
        plain.job.customer = Some("ACME Inc.".into());
        plain.job.order_number = Some("Aux".into());
        assert_eq!(rule.render(&plain).unwrap(), ["ACME Inc", "_Aux"]);
        assert!(FolderPathRule::parse("{name}/x").is_err());
        assert!(FolderPathRule::parse("/").is_err());
    }

    #[test]
    fn clash_names_keep_the_extension() {
        assert_eq!(clash_name("cards.pdf", 2), "cards_2.pdf");
        assert_eq!(clash_name("README", 3), "README_3");
    }
}
