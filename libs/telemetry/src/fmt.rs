//! JSON log lines: one object per line with `timestamp`, `level`, `target`, `message`, `fields`,
//! the current `span` name, and `trace_id`/`span_id` when the event happens inside a traced span.
//!
//! [`JsonLayer`] only looks at events. `tracing_subscriber::fmt`'s layer would also format every
//! span's fields into a string when the span opens, for a text output this JSON format never
//! prints; on a busy server that cost more than writing the log lines themselves.

use std::fmt::{self, Write as _};
use std::io::Write as _;

use opentelemetry::trace::TraceContextExt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The log layer installed by [`crate::init`]: events as JSON lines, one write per line, on a
/// [`MakeWriter`] (`std::io::stdout` in services).
#[derive(Debug, Clone)]
pub struct JsonLayer<W> {
    make_writer: W,
}

impl<W> JsonLayer<W>
where
    W: for<'w> MakeWriter<'w> + 'static,
{
    /// A layer writing to what `make_writer` makes.
    pub fn new(make_writer: W) -> Self {
        Self { make_writer }
    }
}

thread_local! {
    /// The line being written, reused from event to event on each thread.
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Appends `s` to `out` as a JSON string, quotes included.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    push_json_inner(out, s);
    out.push('"');
}

/// Appends `s` to `out` escaped for the inside of a JSON string.
fn push_json_inner(out: &mut String, s: &str) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

/// A `fmt::Write` that escapes what it is given for the inside of a JSON string.
struct Escaping<'a>(&'a mut String);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        push_json_inner(self.0, s);
        Ok(())
    }
}

/// Writes the JSON line of `event`, newline included, into `out`: fields written straight
/// into one reused buffer, with no intermediate JSON tree.
fn line<S>(event: &Event<'_>, ctx: &Context<'_, S>, out: &mut String) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let meta = event.metadata();
    out.push_str("{\"timestamp\":\"");
    SystemTime.format_time(&mut Writer::new(out))?;
    out.push_str("\",\"level\":\"");
    out.push_str(meta.level().as_str());
    out.push_str("\",\"target\":");
    push_json_str(out, meta.target());
    let mut visitor = JsonVisitor {
        fields: String::new(),
        message: None,
    };
    event.record(&mut visitor);
    out.push_str(",\"message\":");
    match &visitor.message {
        Some(m) => out.push_str(m),
        None => out.push_str("\"\""),
    }
    if !visitor.fields.is_empty() {
        out.push_str(",\"fields\":{");
        out.push_str(&visitor.fields);
        out.push('}');
    }
    if let Some(span) = ctx.event_span(event) {
        out.push_str(",\"span\":");
        push_json_str(out, span.name());
    }
    let cx = opentelemetry::Context::current();
    let span_ref = cx.span();
    let sc = span_ref.span_context();
    if sc.is_valid() {
        write!(
            out,
            ",\"trace_id\":\"{}\",\"span_id\":\"{}\"",
            sc.trace_id(),
            sc.span_id()
        )?;
    }
    out.push_str("}\n");
    Ok(())
}

impl<S, W> tracing_subscriber::Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let write = |out: &mut String| {
            out.clear();
            if line(event, &ctx, out).is_ok() {
                // Logging must not fail the program: a write error is dropped.
                let _ = self.make_writer.make_writer().write_all(out.as_bytes());
            }
        };
        // A reentrant event (logged while writing one) gets a buffer of its own.
        let reused = LINE.with(|cell| match cell.try_borrow_mut() {
            Ok(mut out) => {
                write(&mut out);
                if out.capacity() > 64 * 1024 {
                    *out = String::new();
                }
                true
            }
            Err(_) => false,
        });
        if !reused {
            write(&mut String::new());
        }
    }
}

/// Collects an event's fields as the inside of a JSON object, and its message as a JSON string.
struct JsonVisitor {
    /// `"name":value` pairs, comma-separated.
    fields: String,
    /// The message, already a JSON string.
    message: Option<String>,
}

impl JsonVisitor {
    /// Starts the value of `field` and returns where to write it, or `None` to skip the field.
    fn key(&mut self, field: &Field) -> Option<&mut String> {
        let name = field.name();
        if name == "message" {
            return Some(self.message.insert(String::new()));
        }
        if name.starts_with("log.") {
            return None;
        }
        if !self.fields.is_empty() {
            self.fields.push(',');
        }
        push_json_str(&mut self.fields, name);
        self.fields.push(':');
        Some(&mut self.fields)
    }

    fn put_raw(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        let is_message = field.name() == "message";
        if let Some(out) = self.key(field) {
            if is_message {
                out.push('"');
                let _ = out.write_fmt(value);
                out.push('"');
            } else {
                let _ = out.write_fmt(value);
            }
        }
    }

    fn put_str(&mut self, field: &Field, value: &str) {
        if let Some(out) = self.key(field) {
            push_json_str(out, value);
        }
    }

    fn put_display(&mut self, field: &Field, value: &dyn fmt::Display) {
        if let Some(out) = self.key(field) {
            out.push('"');
            let _ = write!(Escaping(out), "{value}");
            out.push('"');
        }
    }
}

impl Visit for JsonVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.put_raw(field, format_args!("{value}"));
        } else {
            self.put_str(field, &value.to_string());
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put_raw(field, format_args!("{value}"));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put_raw(field, format_args!("{value}"));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put_raw(field, format_args!("{value}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put_str(field, value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put_display(field, value);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if let Some(out) = self.key(field) {
            out.push('"');
            let _ = write!(Escaping(out), "{value:?}");
            out.push('"');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn one_json_object_per_line_with_fields() {
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber =
            tracing_subscriber::registry().with(JsonLayer::new(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("work");
            let _e = span.enter();
            tracing::warn!(user_id = 42, ok = true, "user \"quoted\"\nnext line");
            tracing::info!(
                ratio = 0.5,
                n = -3_i64,
                err = &std::io::Error::other("disk \"full\"") as &(dyn std::error::Error + 'static),
                dbg = ?vec!["a\tb"],
                ctrl = "bell\u{7}",
                "second {}",
                "formatted"
            );
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        let first: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["level"], "WARN");
        assert_eq!(first["message"], "user \"quoted\"\nnext line");
        assert_eq!(first["fields"]["user_id"], 42);
        assert_eq!(first["fields"]["ok"], true);
        assert_eq!(first["span"], "work");
        assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(first.get("trace_id").is_none(), "no OTel span, no trace id");
        let second: Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second["message"], "second formatted");
        assert_eq!(second["fields"]["ratio"], 0.5);
        assert_eq!(second["fields"]["n"], -3);
        assert_eq!(second["fields"]["err"], "disk \"full\"");
        assert_eq!(second["fields"]["dbg"], "[\"a\\tb\"]");
        assert_eq!(second["fields"]["ctrl"], "bell\u{7}");
        assert_eq!(second["level"], "INFO");
    }
}
