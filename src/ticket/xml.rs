//! A small element tree the tickets are built as, written out by quick-xml, which
//! escapes every attribute value and text.

use std::borrow::Cow;

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

/// One XML element with its attributes, text and children, in document order.
#[derive(Debug, Default)]
pub(super) struct Element {
    name: &'static str,
    attributes: Vec<(&'static str, String)>,
    text: Option<String>,
    children: Vec<Element>,
}

impl Element {
    pub(super) fn new(name: &'static str) -> Element {
        Element {
            name,
            ..Element::default()
        }
    }

    /// Adds attribute `name`; a value from the job side is made fit for XML first.
    pub(super) fn attr(mut self, name: &'static str, value: impl AsRef<str>) -> Element {
        self.attributes
            .push((name, xml_text(value.as_ref()).into_owned()));
        self
    }

    /// Adds attribute `name` when there is a value.
    pub(super) fn attr_some(self, name: &'static str, value: Option<impl AsRef<str>>) -> Element {
        match value {
            Some(value) => self.attr(name, value),
            None => self,
        }
    }

    pub(super) fn text(mut self, text: &str) -> Element {
        self.text = Some(xml_text(text).into_owned());
        self
    }

    pub(super) fn child(mut self, child: Element) -> Element {
        self.children.push(child);
        self
    }

    pub(super) fn children(mut self, children: impl IntoIterator<Item = Element>) -> Element {
        self.children.extend(children);
        self
    }

    /// The document: an XML declaration and this element, indented.
    pub(super) fn into_document(self) -> Vec<u8> {
        let mut writer = Writer::new_with_indent(Vec::new(), b' ', 2);
        let written = writer
            .write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
            .and_then(|()| self.write(&mut writer));
        // Writing into memory cannot fail.
        debug_assert!(written.is_ok());
        let mut bytes = writer.into_inner();
        bytes.push(b'\n');
        bytes
    }

    fn write(&self, writer: &mut Writer<Vec<u8>>) -> std::io::Result<()> {
        let mut start = BytesStart::new(self.name);
        for (name, value) in &self.attributes {
            start.push_attribute((*name, value.as_str()));
        }
        if self.text.is_none() && self.children.is_empty() {
            return writer.write_event(Event::Empty(start));
        }
        writer.write_event(Event::Start(start))?;
        if let Some(text) = &self.text {
            writer.write_event(Event::Text(BytesText::new(text)))?;
        }
        for child in &self.children {
            child.write(writer)?;
        }
        writer.write_event(Event::End(BytesEnd::new(self.name)))
    }
}

/// Text from the job side made fit for XML 1.0: characters it cannot carry at all,
/// even escaped (control characters other than tab, line feed and carriage return,
/// U+FFFE and U+FFFF), become U+FFFD.
pub(super) fn xml_text(value: &str) -> Cow<'_, str> {
    let unfit = |c: char| {
        (u32::from(c) < 0x20 && !matches!(c, '\t' | '\n' | '\r'))
            || matches!(c, '\u{fffe}' | '\u{ffff}')
    };
    if value.chars().any(unfit) {
        Cow::Owned(
            value
                .chars()
                .map(|c| if unfit(c) { '\u{fffd}' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(value)
    }
}
