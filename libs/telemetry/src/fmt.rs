//! JSON log lines: one object per line with `timestamp`, `level`, `target`, `message`, `fields`,
//! the current `span` name, and `trace_id`/`span_id` when the event happens inside a traced span.
//!
//! [`JsonLayer`] only looks at events. `tracing_subscriber::fmt`'s layer would also format every
//! span's fields into a string when the span opens, for a text output this JSON format never
//! prints; on a busy server that cost more than writing the log lines themselves.

use std::fmt;
use std::io::Write as _;

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
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

/// The JSON line of `event`, newline included.
fn line<S>(event: &Event<'_>, ctx: &Context<'_, S>) -> Option<String>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let mut timestamp = String::with_capacity(32);
    SystemTime
        .format_time(&mut Writer::new(&mut timestamp))
        .ok()?;

    let mut visitor = JsonVisitor::default();
    event.record(&mut visitor);

    let meta = event.metadata();
    let mut line = Map::with_capacity(8);
    line.insert("timestamp".into(), Value::String(timestamp));
    line.insert(
        "level".into(),
        Value::String(meta.level().as_str().to_owned()),
    );
    line.insert("target".into(), Value::String(meta.target().to_owned()));
    line.insert(
        "message".into(),
        Value::String(visitor.message.unwrap_or_default()),
    );
    if !visitor.fields.is_empty() {
        line.insert("fields".into(), Value::Object(visitor.fields));
    }
    if let Some(span) = ctx.event_span(event) {
        line.insert("span".into(), Value::String(span.name().to_owned()));
    }
    let cx = opentelemetry::Context::current();
    let span_ref = cx.span();
    let sc = span_ref.span_context();
    if sc.is_valid() {
        line.insert("trace_id".into(), Value::String(sc.trace_id().to_string()));
        line.insert("span_id".into(), Value::String(sc.span_id().to_string()));
    }
    let mut text = serde_json::to_string(&Value::Object(line)).ok()?;
    text.push('\n');
    Some(text)
}

impl<S, W> tracing_subscriber::Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if let Some(text) = line(event, &ctx) {
            // Logging must not fail the program: a write error is dropped.
            let _ = self.make_writer.make_writer().write_all(text.as_bytes());
        }
    }
}

#[derive(Default)]
struct JsonVisitor {
    message: Option<String>,
    fields: Map<String, Value>,
}

impl JsonVisitor {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if name == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else if !name.starts_with("log.") {
            self.fields.insert(name.to_owned(), value);
        }
    }
}

impl Visit for JsonVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, serde_json::json!(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            tracing::info!("second");
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
    }
}
