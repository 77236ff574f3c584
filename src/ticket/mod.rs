//! The job ticket a queue writes beside each delivery (`ticket = "jdf" | "xjdf" |
//! "json"`), from the job's ticket fields and the files as they were dropped. It is
//! written after every file it names is in place: several devices start on the ticket.
//!
//! Every value from the job side is untrusted: XML escaping is quick-xml's, and
//! characters XML 1.0 cannot carry at all become U+FFFD.

mod jdf;
mod json;
mod xjdf;
mod xml;

use serde::Deserialize;

use crate::protocol::{Delivery, FileRole};

/// The format of a queue's job tickets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketFormat {
    /// JDF 1.4: DFEs and prepress systems.
    Jdf,
    /// XJDF 2.1: newer DFEs and workflow systems.
    Xjdf,
    /// A plain JSON document, for a script.
    Json,
}

impl TicketFormat {
    /// The extension a ticket of this format gets by default.
    pub fn extension(self) -> &'static str {
        match self {
            TicketFormat::Jdf => "jdf",
            TicketFormat::Xjdf => "xjdf",
            TicketFormat::Json => "json",
        }
    }
}

/// One dropped file as a ticket names it.
#[derive(Debug, Clone)]
pub(crate) struct TicketFile<'a> {
    /// Its path from the ticket's folder, `/`-separated, not yet URL-encoded.
    pub(crate) path: &'a str,
    pub(crate) role: FileRole,
    pub(crate) size: u64,
    pub(crate) sha256: &'a str,
}

/// The ticket's bytes for `delivery`, naming `files`.
pub(crate) fn render(
    format: TicketFormat,
    delivery: &Delivery,
    files: &[TicketFile<'_>],
) -> Vec<u8> {
    match format {
        TicketFormat::Jdf => jdf::render(delivery, files),
        TicketFormat::Xjdf => xjdf::render(delivery, files),
        TicketFormat::Json => json::render(delivery, files),
    }
}

/// `path` as a relative URL: each step percent-encoded as a path segment, so spaces,
/// `%`, `#` and `?` in a file name cannot change what the URL points at.
pub(crate) fn relative_url(path: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    /// RFC 3986's unreserved characters stay as they are.
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    path.split('/')
        .map(|step| utf8_percent_encode(step, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// A length in millimetres as PostScript points, which JDF measures in.
fn points(mm: f64) -> String {
    let points = (mm * 72.0 / 25.4 * 100.0).round() / 100.0;
    format!("{points}")
}

/// A number as JDF and XJDF write it: no fraction when there is none.
fn number(value: f64) -> String {
    format!("{value}")
}

/// The finishing steps and notes of a ticket, as one comment for the operator.
fn instructions(delivery: &Delivery) -> Option<String> {
    let ticket = delivery.job.ticket.as_ref()?;
    let mut lines = Vec::new();
    if !ticket.finishing.is_empty() {
        lines.push(format!("Finishing: {}", ticket.finishing.join(", ")));
    }
    lines.extend(ticket.notes.clone());
    (!lines.is_empty()).then(|| lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_paths_become_relative_urls_that_point_nowhere_else() {
        assert_eq!(
            relative_url("MC-1/inside pages.pdf"),
            "MC-1/inside%20pages.pdf"
        );
        assert_eq!(relative_url("a#b?c%.pdf"), "a%23b%3Fc%25.pdf");
        assert_eq!(relative_url("Café.pdf"), "Caf%C3%A9.pdf");
    }

    #[test]
    fn millimetres_become_points() {
        assert_eq!(points(85.0), "240.94");
        assert_eq!(points(210.0), "595.28");
        assert_eq!(number(350.0), "350");
    }
}

#[cfg(test)]
mod rendered {
    //! Each format parsed back, field by field, with hostile values from the job side.

    use quick_xml::events::Event;

    use super::*;
    use crate::protocol::Delivery;

    /// A delivery of two files whose job's ticket has every field; `text` goes into
    /// every free-text field.
    pub(super) fn delivery(text: &str, with_ticket: bool) -> Delivery {
        let ticket = serde_json::json!({"quantity": 500, "sides": "two_sided", "color": "cmyk",
            "media": {"name": text, "width_mm": 85, "height_mm": 55, "weight_gsm": 350},
            "finishing": ["cut", text], "due": "2026-11-23T16:00:00Z", "notes": text});
        serde_json::from_value(serde_json::json!({
            "id": "d-1", "queue": "indigo", "lease_expires_at": "2026-11-21T10:05:00Z",
            "job": {"id": "J-1001", "name": text, "order_number": "MC-5521", "send_count": 1,
                    "customer": text, "ticket": if with_ticket { ticket } else { serde_json::Value::Null }},
            "files": []
        }))
        .unwrap()
    }

    fn files() -> Vec<TicketFile<'static>> {
        vec![
            TicketFile {
                path: "cover.pdf",
                role: FileRole::Cover,
                size: 10,
                sha256: "ab",
            },
            TicketFile {
                path: "inside pages.pdf",
                role: FileRole::Content,
                size: 20,
                sha256: "cd",
            },
        ]
    }

    /// One element as read back: its local name, attributes and text.
    struct Parsed {
        tag: String,
        attributes: Vec<(String, String)>,
        text: String,
    }

    /// Every element of `xml`, in document order.
    fn elements(xml: &[u8]) -> Vec<Parsed> {
        let text = std::str::from_utf8(xml).expect("UTF-8");
        let mut reader = quick_xml::Reader::from_str(text);
        let mut found: Vec<Parsed> = Vec::new();
        loop {
            match reader.read_event().expect("well-formed XML") {
                Event::Start(tag) | Event::Empty(tag) => {
                    let attributes = tag
                        .attributes()
                        .map(|a| {
                            let a = a.expect("attribute");
                            let value = quick_xml::escape::unescape(&a.value)
                                .expect("escaped")
                                .into_owned();
                            (a.key.local_name().as_ref().to_string(), value)
                        })
                        .collect();
                    found.push(Parsed {
                        tag: tag.local_name().as_ref().to_string(),
                        attributes,
                        text: String::new(),
                    });
                }
                // Text comes in pieces: plain runs, and each `&...;` on its own.
                Event::Text(text) => {
                    if let Some(last) = found.last_mut() {
                        last.text.push_str(&text.xml10_content());
                    }
                }
                Event::GeneralRef(reference) => {
                    if let Some(last) = found.last_mut() {
                        let entity = format!("&{};", &*reference);
                        last.text
                            .push_str(&quick_xml::escape::unescape(&entity).expect("known entity"));
                    }
                }
                Event::Eof => return found,
                _ => {}
            }
        }
    }

    /// Attribute `name` of every `element`, in document order.
    fn attributes<'a>(elements: &'a [Parsed], element: &str, name: &str) -> Vec<&'a str> {
        elements
            .iter()
            .filter(|parsed| parsed.tag == element)
            .filter_map(|parsed| parsed.attributes.iter().find(|(key, _)| key == name))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// Attribute `name` of the first `element`.
    fn attribute<'a>(elements: &'a [Parsed], element: &str, name: &str) -> Option<&'a str> {
        attributes(elements, element, name).first().copied()
    }

    const HOSTILE: &str = "Smith \"&\" <Co> 'x' ]]> \u{1}\u{1b}end";
    const READ_BACK: &str = "Smith \"&\" <Co> 'x' ]]> \u{fffd}\u{fffd}end";

    #[test]
    fn jdf_carries_the_ticket_field_by_field_with_hostile_values_escaped() {
        let jdf = elements(&render(
            TicketFormat::Jdf,
            &delivery(HOSTILE, true),
            &files(),
        ));
        assert_eq!(attribute(&jdf, "JDF", "JobID"), Some("J-1001"));
        assert_eq!(attribute(&jdf, "JDF", "Type"), Some("Combined"));
        assert_eq!(attribute(&jdf, "JDF", "Status"), Some("Waiting"));
        assert_eq!(attribute(&jdf, "JDF", "Version"), Some("1.4"));
        assert_eq!(attribute(&jdf, "JDF", "DescriptiveName"), Some(READ_BACK));
        assert_eq!(
            attributes(&jdf, "FileSpec", "URL"),
            ["cover.pdf", "inside%20pages.pdf"]
        );
        assert_eq!(attribute(&jdf, "Media", "DescriptiveName"), Some(READ_BACK));
        assert_eq!(attribute(&jdf, "Media", "Weight"), Some("350"));
        assert_eq!(attribute(&jdf, "Media", "Dimension"), Some("240.94 155.91"));
        assert_eq!(attribute(&jdf, "Component", "Amount"), Some("500"));
        assert_eq!(attribute(&jdf, "ComponentLink", "Amount"), Some("500"));
        assert_eq!(
            attribute(&jdf, "LayoutPreparationParams", "Sides"),
            Some("TwoSidedFlipY")
        );
        assert_eq!(
            attribute(&jdf, "ColorantControl", "ProcessColorModel"),
            Some("DeviceCMYK")
        );
        assert_eq!(
            attribute(&jdf, "NodeInfo", "End"),
            Some("2026-11-23T16:00:00Z")
        );
        assert_eq!(
            attribute(&jdf, "Company", "OrganizationName"),
            Some(READ_BACK)
        );
        let comment = jdf
            .iter()
            .find(|parsed| parsed.tag == "Comment")
            .expect("a comment");
        assert_eq!(
            comment.text.trim_end(),
            format!("Finishing: cut, {READ_BACK}\n{READ_BACK}")
        );
    }

    #[test]
    fn xjdf_carries_the_ticket_field_by_field_with_hostile_values_escaped() {
        let mut hostile = delivery(HOSTILE, true);
        hostile.job.id = "J 1001\"<".into();
        let xjdf = elements(&render(TicketFormat::Xjdf, &hostile, &files()));
        assert_eq!(
            attribute(&xjdf, "XJDF", "xmlns"),
            Some("http://www.CIP4.org/JDFSchema_2_0")
        );
        assert_eq!(
            attribute(&xjdf, "XJDF", "JobID"),
            Some("J_1001__"),
            "a name token"
        );
        assert_eq!(attribute(&xjdf, "XJDF", "Types"), Some("DigitalPrinting"));
        assert_eq!(attribute(&xjdf, "XJDF", "Version"), Some("2.1"));
        assert_eq!(attribute(&xjdf, "Product", "Amount"), Some("500"));
        assert_eq!(
            attribute(&xjdf, "MediaIntent", "MediaQuality"),
            Some(READ_BACK)
        );
        assert_eq!(attribute(&xjdf, "MediaIntent", "Weight"), Some("350"));
        assert_eq!(
            attribute(&xjdf, "LayoutIntent", "Sides"),
            Some("TwoSidedHeadToHead")
        );
        assert_eq!(
            attribute(&xjdf, "LayoutIntent", "FinishedDimensions"),
            Some("240.94 155.91 0")
        );
        assert_eq!(
            attribute(&xjdf, "SurfaceColor", "ColorsUsed"),
            Some("Cyan Magenta Yellow Black")
        );
        assert_eq!(
            attribute(&xjdf, "NodeInfo", "End"),
            Some("2026-11-23T16:00:00Z")
        );
        assert_eq!(
            attribute(&xjdf, "Company", "OrganizationName"),
            Some(READ_BACK)
        );
        assert_eq!(
            attributes(&xjdf, "FileSpec", "URL"),
            ["cover.pdf", "inside%20pages.pdf"]
        );
    }

    #[test]
    fn without_a_ticket_from_the_job_side_only_the_files_are_named() {
        for format in [TicketFormat::Jdf, TicketFormat::Xjdf] {
            let xml = elements(&render(format, &delivery("Cards", false), &files()));
            for invented in [
                "Media",
                "Component",
                "LayoutPreparationParams",
                "NodeInfo",
                "Product",
                "MediaIntent",
            ] {
                assert!(
                    xml.iter().all(|parsed| parsed.tag != invented),
                    "{format:?} has {invented}"
                );
            }
            assert_eq!(attributes(&xml, "FileSpec", "URL").len(), 2);
        }
    }

    #[test]
    fn json_carries_the_job_side_values_as_they_were() {
        let json: serde_json::Value = serde_json::from_slice(&render(
            TicketFormat::Json,
            &delivery(HOSTILE, true),
            &files(),
        ))
        .unwrap();
        assert_eq!(json["job"]["name"], HOSTILE);
        assert_eq!(json["ticket"]["quantity"], 500);
        assert_eq!(json["ticket"]["media"]["name"], HOSTILE);
        assert_eq!(json["files"][1]["path"], "inside pages.pdf");
        assert_eq!(json["files"][0]["role"], "cover");
    }
}
