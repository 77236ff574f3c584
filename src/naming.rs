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
    let stem = name.split('.').next().unwrap_or(name).trim_end();
    if WINDOWS_RESERVED
        .iter()
        .any(|reserved| stem.eq_ignore_ascii_case(reserved))
    {
        return Err(format!(
            "the file name {name:?} is a reserved device name on Windows"
        ));
    }
    Ok(())
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
    Name,
}

/// A queue's naming rule, such as `{order}_{job}_{name}`.
///
/// Placeholders: `{order}` (order number, left out with the separator after it when the
/// job has none), `{job}` (job id), `{job_name}`, `{send}` (send count), `{queue}` and
/// `{name}` (the file's own name, required so the extension survives).
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
    pub fn parse(template: &str) -> Result<NamingRule, String> {
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
                "name" => Part::Name,
                other => {
                    return Err(format!(
                        "unknown placeholder {{{other}}} (known: {{order}}, {{job}}, {{job_name}}, {{send}}, {{queue}}, {{name}})"
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
        if !parts.contains(&Part::Name) {
            return Err("the rule must contain {name}, the file's own name".into());
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

    /// The name `file_name` of `delivery` gets in the hotfolder. Values from the server
    /// other than the (already checked) file name are made safe: characters that cannot
    /// stand in a file name become `_`.
    pub fn render(&self, delivery: &Delivery, file_name: &str) -> String {
        let mut out = String::new();
        let mut skip_separator = false;
        for part in &self.parts {
            let value = match part {
                Part::Text(text) if skip_separator => {
                    skip_separator = false;
                    text.trim_start_matches(['_', '-', ' ', '.']).to_string()
                }
                Part::Text(text) => text.clone(),
                Part::Order => match &delivery.job.order_number {
                    Some(order) if !order.trim().is_empty() => sanitize(order),
                    _ => {
                        skip_separator = true;
                        continue;
                    }
                },
                Part::Job => sanitize(&delivery.job.id),
                Part::JobName => sanitize(&delivery.job.name),
                Part::Send => delivery.job.send_count.to_string(),
                Part::Queue => sanitize(&delivery.queue),
                Part::Name => file_name.to_string(),
            };
            if !matches!(part, Part::Text(_)) {
                skip_separator = false;
            }
            out.push_str(&value);
        }
        out.trim_start_matches('.').to_string()
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
    fn clash_names_keep_the_extension() {
        assert_eq!(clash_name("cards.pdf", 2), "cards_2.pdf");
        assert_eq!(clash_name("README", 3), "README_3");
    }
}
