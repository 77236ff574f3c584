//! Log output through `tracing`: text for a person at a terminal or in the journal,
//! JSON lines for a log collector.
//!
//! Much of what is logged comes from the server (ids, names, error messages) and from
//! hotfolders, and is not to be trusted: a newline in it would forge a log line, an
//! escape sequence would rewrite the terminal, a direction override would make a name
//! read backwards. So every line passes through one writer that escapes such characters
//! and blots out the agent token, whatever field it came in.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use tracing_subscriber::filter::dynamic_filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::{LogFormat, Secret};
use crate::naming::is_invisible;

/// What a reload changes in the installed subscriber.
struct Reconfigure {
    filter: reload::Handle<EnvFilter, Registry>,
    lines: Arc<LineSettings>,
}

/// What every log line is written with; shared by both formats' layers.
#[derive(Debug)]
struct LineSettings {
    /// Whether lines go out as JSON rather than text. Both layers stay installed, and
    /// both see every span, so a reload can switch between them while deliveries (and
    /// their spans) are in flight.
    json: AtomicBool,
    /// Every token this process was given: one replaced by a reload may still come
    /// back in a server's text, so it stays blotted out.
    secrets: RwLock<Vec<Secret>>,
}

/// Set by [`init`] when it installed the subscriber (not in tests that share one).
static RECONFIGURE: OnceLock<Reconfigure> = OnceLock::new();

/// Installs the global log subscriber. `RUST_LOG`, when set, overrides `level`. Colour
/// only on a terminal, and never with `NO_COLOR` set.
pub fn init(level: &str, format: LogFormat, secret: Option<&Secret>) {
    let lines = Arc::new(LineSettings {
        json: AtomicBool::new(format == LogFormat::Json),
        secrets: RwLock::new(secret.into_iter().cloned().collect()),
    });
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let (filter, filter_handle) = reload::Layer::new(filter(level));
    let text = tracing_subscriber::fmt::layer()
        .with_writer(SafeStderr {
            settings: lines.clone(),
            escape: Escape::Text {
                keep_colour: colour,
            },
        })
        .with_ansi(colour)
        .with_target(false);
    let json = tracing_subscriber::fmt::layer()
        .with_writer(SafeStderr {
            settings: lines.clone(),
            escape: Escape::Json,
        })
        .with_ansi(false)
        .with_target(false)
        .json()
        .flatten_event(true)
        .with_current_span(true);
    // Spans always reach both layers; events only the one in use, asked at every
    // event (a dynamic filter), since a reload may switch.
    let (for_text, for_json) = (lines.clone(), lines.clone());
    let text = text.with_filter(dynamic_filter_fn(move |meta, _| {
        meta.is_span() || !for_text.json.load(Ordering::Relaxed)
    }));
    let json = json.with_filter(dynamic_filter_fn(move |meta, _| {
        meta.is_span() || for_json.json.load(Ordering::Relaxed)
    }));
    // A subscriber that is already installed (tests, the demo) is kept.
    if tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .try_init()
        .is_ok()
    {
        let _ = RECONFIGURE.set(Reconfigure {
            filter: filter_handle,
            lines,
        });
    }
}

/// Applies a reloaded `[log]` section and token to the subscriber [`init`] installed;
/// does nothing where another one was installed.
pub(crate) fn reconfigure(level: &str, format: LogFormat, secret: &Secret) -> anyhow::Result<()> {
    let Some(installed) = RECONFIGURE.get() else {
        return Ok(());
    };
    {
        let mut secrets = installed
            .lines
            .secrets
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if !secrets.contains(secret) {
            secrets.push(secret.clone());
        }
    }
    installed
        .lines
        .json
        .store(format == LogFormat::Json, Ordering::Relaxed);
    installed.filter.reload(filter(level))?;
    Ok(())
}

fn filter(level: &str) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// How untrusted characters are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// As Rust escapes (`\n`, `\u{202e}`); our own colour codes are kept when on.
    Text { keep_colour: bool },
    /// As JSON escapes inside a JSON line (`\u202e`); the encoder already escaped
    /// control characters.
    Json,
}

/// `text` with every control character (but a final newline), invisible and
/// direction-changing character escaped, so it shows as what it is.
pub fn printable(text: &str, escape: Escape) -> Cow<'_, str> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let unsafe_char = |c: char| c.is_control() || is_invisible(c);
    // Most lines are plain printable ASCII: one quick pass over the bytes says so.
    if body.bytes().all(|b| (0x20..0x7f).contains(&b)) || !body.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = body;
    while let Some(c) = rest.chars().next() {
        if escape == (Escape::Text { keep_colour: true }) && c == '\u{1b}' {
            if let Some(len) = colour_code_len(rest) {
                out.push_str(&rest[..len]);
                rest = &rest[len..];
                continue;
            }
        }
        if !unsafe_char(c) {
            out.push(c);
        } else if escape == Escape::Json {
            for unit in c.encode_utf16(&mut [0; 2]) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.extend(c.escape_default());
        }
        rest = &rest[c.len_utf8()..];
    }
    if body.len() < text.len() {
        out.push('\n');
    }
    Cow::Owned(out)
}

/// The length of the colour sequence `text` starts with, when it is one the log
/// formatter itself writes (reset, bold, dim, italic, the level colours). Others, such
/// as "conceal", are escaped even on a terminal: they could come from the server.
fn colour_code_len(text: &str) -> Option<usize> {
    const OWN: [&str; 9] = ["0", "1", "2", "3", "31", "32", "33", "34", "35"];
    let inner = text.strip_prefix("\u{1b}[")?;
    let params = inner
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b';')
        .count();
    let own = inner[..params].split(';').all(|code| OWN.contains(&code));
    (own && inner.as_bytes().get(params) == Some(&b'm')).then_some(2 + params + 1)
}

/// At most `max` bytes of `text` (cut on a character boundary), marked when cut: a
/// server's text is kept short in messages.
pub fn clipped(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Standard error, one whole log line per write, made safe on the way.
struct SafeStderr {
    settings: Arc<LineSettings>,
    escape: Escape,
}

impl<'a> MakeWriter<'a> for SafeStderr {
    type Writer = SafeLine<'a>;

    fn make_writer(&'a self) -> SafeLine<'a> {
        SafeLine {
            target: self,
            buffer: Vec::new(),
        }
    }
}

/// One log line being written; it goes out, made safe, when the writer is dropped.
struct SafeLine<'a> {
    target: &'a SafeStderr,
    buffer: Vec<u8>,
}

impl Write for SafeLine<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SafeLine<'_> {
    fn drop(&mut self) {
        let text = match std::str::from_utf8(&self.buffer) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(&self.buffer),
        };
        let secrets = self
            .target
            .settings
            .secrets
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let text = secrets.iter().fold(text, |text, secret| {
            if text.contains(secret.expose()) {
                Cow::Owned(secret.redact(&text))
            } else {
                text
            }
        });
        let line = printable(&text, self.target.escape);
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_lines_and_escapes_are_shown_as_text() {
        let line = "claimed id=d-1\nINFO forged\u{1b}[2J\u{202e}fdp.exe\n";
        assert_eq!(
            printable(line, Escape::Text { keep_colour: false }),
            "claimed id=d-1\\nINFO forged\\u{1b}[2J\\u{202e}fdp.exe\n"
        );
        assert_eq!(
            printable(line, Escape::Json),
            "claimed id=d-1\\u000aINFO forged\\u001b[2J\\u202efdp.exe\n"
        );
    }

    #[test]
    fn colour_codes_survive_only_when_colour_is_on() {
        let line = "\u{1b}[32mINFO\u{1b}[0m ok\u{1b}[1A\u{1b}[8mhidden\n";
        assert_eq!(
            printable(line, Escape::Text { keep_colour: true }),
            "\u{1b}[32mINFO\u{1b}[0m ok\\u{1b}[1A\\u{1b}[8mhidden\n"
        );
        assert_eq!(printable("plain\n", Escape::Json), "plain\n");
    }
}
