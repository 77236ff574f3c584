//! Reading a claim answer one delivery at a time. The server may lease us several
//! deliveries in one answer; one of them with a string that is not valid UTF-8, a lone
//! surrogate or a field of the wrong type must not make the others unreadable (they are
//! leased to us, and would wait for their lease to run out), and the bad one must still
//! be failed by its id. A JSON parser stops at the first such error, so the answer is
//! first split into each delivery's bytes, which are then parsed on their own.

use std::ops::Range;

use crate::config::Secret;
use crate::protocol::Delivery;

/// Longest delivery id the protocol allows, in characters.
const MAX_ID_CHARS: usize = 128;

/// One delivery from a claim answer.
#[derive(Debug, Clone)]
pub enum Claimed {
    /// Well-formed: ready for the check step (boxed: a ticket makes it large).
    Ready(Box<Delivery>),
    /// Leased to us but not readable; it is failed by its id when it has a readable one.
    Malformed { id: Option<String>, problem: String },
}

impl Claimed {
    /// The same, with `secret` blotted out of every text in it: a server may have
    /// written it with JSON escapes that only parsing turns into the secret.
    pub(crate) fn redacted(self, secret: &Secret) -> Claimed {
        match self {
            Claimed::Ready(delivery) => {
                let text = serde_json::to_string(&delivery).unwrap_or_default();
                if !text.contains(secret.expose()) {
                    return Claimed::Ready(delivery);
                }
                match serde_json::from_str(&secret.redact(&text)) {
                    Ok(clean) => Claimed::Ready(Box::new(clean)),
                    Err(_) => Claimed::Malformed {
                        id: None,
                        problem: "the delivery holds the agent token".into(),
                    },
                }
            }
            Claimed::Malformed { id, problem } => Claimed::Malformed {
                id: id.filter(|id| !id.contains(secret.expose())),
                problem: secret.redact(&problem),
            },
        }
    }
}

/// Reads the deliveries of a claim answer; `Err` when the answer as a whole is not a
/// JSON object with a `deliveries` array.
pub(crate) fn parse(body: &[u8]) -> Result<Vec<Claimed>, String> {
    let members = object_members(body).ok_or("the claim answer is not a JSON object")?;
    let list = members
        .iter()
        .find(|(key, _)| key == "deliveries")
        .map(|(_, value)| value.clone())
        .ok_or("the claim answer has no `deliveries`")?;
    let list = &body[list];
    let elements = array_elements(list).ok_or("`deliveries` is not a JSON array")?;
    Ok(elements
        .into_iter()
        .map(|element| one(&list[element]))
        .collect())
}

fn one(bytes: &[u8]) -> Claimed {
    match serde_json::from_slice::<Delivery>(bytes) {
        Ok(delivery) if usable_id(&delivery.id) => Claimed::Ready(Box::new(delivery)),
        Ok(delivery) => Claimed::Malformed {
            id: None,
            problem: format!(
                "the delivery's id {:?} is not 1 to {MAX_ID_CHARS} characters, or is . or ..",
                delivery.id.chars().take(MAX_ID_CHARS).collect::<String>()
            ),
        },
        Err(err) => Claimed::Malformed {
            id: delivery_id(bytes),
            problem: format!("the delivery is malformed: {err}"),
        },
    }
}

/// The `id` of a delivery that cannot be read whole, when that much can be read.
fn delivery_id(bytes: &[u8]) -> Option<String> {
    let members = object_members(bytes)?;
    let (_, value) = members.iter().find(|(key, _)| key == "id")?;
    let id: String = serde_json::from_slice(&bytes[value.clone()]).ok()?;
    usable_id(&id).then_some(id)
}

/// Whether `id` is 1 to 128 characters and can be put into a URL. `.` and `..` cannot
/// be one path segment, even percent-encoded: they name the folder or its parent.
fn usable_id(id: &str) -> bool {
    id != "." && id != ".." && (1..=MAX_ID_CHARS).contains(&id.chars().count())
}

/// The members of the JSON object `bytes` holds: each key (decoded, or empty when it
/// cannot be) and the byte range of its value.
fn object_members(bytes: &[u8]) -> Option<Vec<(String, Range<usize>)>> {
    sequence(bytes, b'{', b'}', |at| {
        let key_end = value_end(bytes, at)?;
        let key = serde_json::from_slice::<String>(&bytes[at..key_end]).unwrap_or_default();
        let colon = skip_space(bytes, key_end);
        (bytes.get(colon) == Some(&b':')).then_some(())?;
        let start = skip_space(bytes, colon + 1);
        let end = value_end(bytes, start)?;
        Some(((key, start..end), end))
    })
}

/// The byte ranges of the elements of the JSON array `bytes` holds.
fn array_elements(bytes: &[u8]) -> Option<Vec<Range<usize>>> {
    sequence(bytes, b'[', b']', |at| {
        let end = value_end(bytes, at)?;
        Some((at..end, end))
    })
}

/// The comma-separated items between `open` and `close` that `bytes` holds, each read
/// by `item` from its first byte, which gives the item and where it ends.
fn sequence<T>(
    bytes: &[u8],
    open: u8,
    close: u8,
    mut item: impl FnMut(usize) -> Option<(T, usize)>,
) -> Option<Vec<T>> {
    let mut at = skip_space(bytes, 0);
    (bytes.get(at) == Some(&open)).then_some(())?;
    at = skip_space(bytes, at + 1);
    let mut items = Vec::new();
    if bytes.get(at) == Some(&close) {
        return Some(items);
    }
    loop {
        let (value, end) = item(at)?;
        items.push(value);
        at = skip_space(bytes, end);
        match *bytes.get(at)? {
            b',' => at = skip_space(bytes, at + 1),
            byte if byte == close => return Some(items),
            _ => return None,
        }
    }
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(|b| b" \t\r\n".contains(b)) {
        at += 1;
    }
    at
}

/// Where the JSON value starting at `start` ends. Only the structure is followed
/// (strings, nesting); what is inside is left to the parser.
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    match *bytes.get(start)? {
        b'"' => string_end(bytes, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut at = start;
            loop {
                match *bytes.get(at)? {
                    b'"' => {
                        at = string_end(bytes, at)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(at + 1);
                        }
                    }
                    _ => {}
                }
                at += 1;
            }
        }
        // A number, `true`, `false` or `null`: up to the next delimiter.
        _ => {
            let len = bytes[start..]
                .iter()
                .position(|b| b",:}] \t\r\n".contains(b))
                .unwrap_or(bytes.len() - start);
            (len > 0).then_some(start + len)
        }
    }
}

/// Where the JSON string starting at `start` (its opening quote) ends.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut at = start + 1;
    loop {
        match *bytes.get(at)? {
            b'\\' => at += 2,
            b'"' => return Some(at + 1),
            _ => at += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: &str, name: &str) -> String {
        format!(
            r#"{{"id": "{id}", "queue": "indigo", "lease_expires_at": "2026-11-21T10:05:00Z",
               "job": {{"id": "J-1", "name": "Cards, \"v2\" [rush]", "order_number": null, "send_count": 1}},
               "files": [{{"name": "{name}", "size": 3, "sha256": "{}", "url": "/f/1"}}]}}"#,
            "a".repeat(64)
        )
    }

    #[test]
    fn a_bad_string_spoils_only_its_own_delivery() {
        let mut body = format!(
            r#"{{"extra": {{"nested": [1, 2]}}, "deliveries": [{}, {}, {}]}}"#,
            delivery("d-1", "a.pdf"),
            delivery("d-2", "BAD"),
            delivery("d-3", "lone\\ud800.pdf"),
        )
        .into_bytes();
        let bad = body.windows(3).position(|w| w == b"BAD").unwrap();
        body[bad] = 0xff;
        let claimed = parse(&body).unwrap();
        assert_eq!(claimed.len(), 3);
        assert!(matches!(&claimed[0], Claimed::Ready(d) if d.id == "d-1"));
        for (index, id) in [(1, "d-2"), (2, "d-3")] {
            match &claimed[index] {
                Claimed::Malformed { id: Some(read), .. } => assert_eq!(read, id),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn an_id_out_of_bounds_or_not_addressable_is_not_used() {
        for id in ["x".repeat(129), String::new(), ".".into(), "..".into()] {
            let body = format!(r#"{{"deliveries": [{}]}}"#, delivery(&id, "a.pdf"));
            assert!(
                matches!(
                    &parse(body.as_bytes()).unwrap()[0],
                    Claimed::Malformed { id: None, .. }
                ),
                "{id:?}"
            );
        }
    }

    #[test]
    fn a_broken_answer_is_refused_whole() {
        assert!(parse(b"{\"deliveries\": [").is_err());
        assert!(parse(b"[]").is_err());
        assert!(parse(b"{\"other\": []}").is_err());
        assert!(parse(b"{\"deliveries\": []}").unwrap().is_empty());
    }
}
