//! The OTLP trace export request (`ExportTraceServiceRequest`) in protobuf wire format, written
//! straight from the SDK's [`SpanData`].
//!
//! `opentelemetry-otlp` first converts every span into the generated `opentelemetry-proto`
//! structs (an owned `String` for every attribute key and string value, a `Vec` for every id)
//! and then encodes those; on a service that exports a span per request that copy is most of
//! the export cost. Here each field is written once into one buffer with prost's encoding
//! primitives. The output decodes to exactly what the SDK's conversion builds (the tests compare
//! the two), including its choices: spans grouped by instrumentation scope in order of first
//! appearance, a `status` message on every span, the "has is-remote" span flags.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

/// `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK` of `trace.proto`.
const HAS_IS_REMOTE: u32 = 0x100;
/// `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK` of `trace.proto`.
const IS_REMOTE: u32 = 0x200;

/// The `Resource` message (and `ResourceSpans.schema_url`) of a process, encoded once.
#[derive(Debug, Clone, Default)]
pub(crate) struct EncodedResource {
    message: Vec<u8>,
    schema_url: String,
}

impl EncodedResource {
    pub(crate) fn new(resource: &Resource) -> Self {
        let mut message = Vec::new();
        for (key, value) in resource.iter() {
            nested(&mut message, 1, |b| key_value(b, key.as_str(), value));
        }
        Self {
            message,
            schema_url: resource.schema_url().unwrap_or_default().to_owned(),
        }
    }
}

/// Encodes `spans` as one `ExportTraceServiceRequest` from `resource`, appending to `out`.
pub(crate) fn export_request(out: &mut Vec<u8>, resource: &EncodedResource, spans: &[SpanData]) {
    // Scopes in order of first appearance, as the SDK's own conversion groups them; a process
    // has a handful, so a linear search beats hashing every span's scope.
    let mut scopes: Vec<(&InstrumentationScope, Vec<&SpanData>)> = Vec::new();
    for span in spans {
        match scopes
            .iter_mut()
            .find(|(scope, _)| **scope == span.instrumentation_scope)
        {
            Some((_, members)) => members.push(span),
            None => scopes.push((&span.instrumentation_scope, vec![span])),
        }
    }
    nested(out, 1, |rs| {
        // ResourceSpans.resource: always present, as the SDK sends it.
        encode_key(1, WireType::LengthDelimited, rs);
        encode_varint(resource.message.len() as u64, rs);
        rs.extend_from_slice(&resource.message);
        for (scope, members) in &scopes {
            nested(rs, 2, |ss| scope_spans(ss, scope, members));
        }
        string(rs, 3, &resource.schema_url);
    });
}

fn scope_spans(out: &mut Vec<u8>, scope: &InstrumentationScope, spans: &[&SpanData]) {
    nested(out, 1, |s| {
        string(s, 1, scope.name());
        string(s, 2, scope.version().unwrap_or_default());
        for kv in scope.attributes() {
            nested(s, 3, |b| key_value(b, kv.key.as_str(), &kv.value));
        }
    });
    for span in spans {
        nested(out, 2, |s| self::span(s, span));
    }
    string(out, 3, scope.schema_url().unwrap_or_default());
}

fn span(out: &mut Vec<u8>, span: &SpanData) {
    let cx = &span.span_context;
    bytes(out, 1, &cx.trace_id().to_bytes());
    bytes(out, 2, &cx.span_id().to_bytes());
    trace_state(out, 3, cx);
    if span.parent_span_id != SpanId::INVALID {
        bytes(out, 4, &span.parent_span_id.to_bytes());
    }
    string(out, 5, &span.name);
    uint(out, 6, kind(&span.span_kind));
    fixed64(out, 7, nanos(span.start_time));
    fixed64(out, 8, nanos(span.end_time));
    attributes(out, 9, &span.attributes);
    uint(out, 10, u64::from(span.dropped_attributes_count));
    for event in span.events.iter() {
        nested(out, 11, |e| {
            fixed64(e, 1, nanos(event.timestamp));
            string(e, 2, &event.name);
            attributes(e, 3, &event.attributes);
            uint(e, 4, u64::from(event.dropped_attributes_count));
        });
    }
    uint(out, 12, u64::from(span.events.dropped_count));
    for link in span.links.iter() {
        let lcx = &link.span_context;
        nested(out, 13, |l| {
            bytes(l, 1, &lcx.trace_id().to_bytes());
            bytes(l, 2, &lcx.span_id().to_bytes());
            trace_state(l, 3, lcx);
            attributes(l, 4, &link.attributes);
            uint(l, 5, u64::from(link.dropped_attributes_count));
            fixed32(l, 6, flags(lcx.trace_flags().to_u8(), lcx.is_remote()));
        });
    }
    uint(out, 14, u64::from(span.links.dropped_count));
    nested(out, 15, |s| match &span.status {
        Status::Unset => {}
        Status::Ok => uint(s, 3, 1),
        Status::Error { description } => {
            string(s, 2, description);
            uint(s, 3, 2);
        }
    });
    fixed32(
        out,
        16,
        flags(cx.trace_flags().to_u8(), span.parent_span_is_remote),
    );
}

fn flags(trace_flags: u8, remote: bool) -> u32 {
    u32::from(trace_flags) | HAS_IS_REMOTE | if remote { IS_REMOTE } else { 0 }
}

fn kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn trace_state(out: &mut Vec<u8>, tag: u32, cx: &SpanContext) {
    let state = cx.trace_state();
    if *state != opentelemetry::trace::TraceState::NONE {
        string(out, tag, &state.header());
    }
}

fn attributes(out: &mut Vec<u8>, tag: u32, attributes: &[KeyValue]) {
    for kv in attributes {
        nested(out, tag, |b| key_value(b, kv.key.as_str(), &kv.value));
    }
}

fn key_value(out: &mut Vec<u8>, key: &str, value: &Value) {
    string(out, 1, key);
    nested(out, 2, |v| any_value(v, value));
}

/// An `AnyValue`: a oneof, so its field is written even when it holds the default value.
fn any_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(b) => {
            encode_key(2, WireType::Varint, out);
            encode_varint(u64::from(*b), out);
        }
        Value::I64(i) => {
            encode_key(3, WireType::Varint, out);
            encode_varint(*i as u64, out);
        }
        Value::F64(f) => {
            encode_key(4, WireType::SixtyFourBit, out);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::String(s) => string_value(out, s.as_str()),
        Value::Array(array) => nested(out, 5, |a| match array {
            Array::Bool(v) => v.iter().for_each(|x| array_item(a, &Value::Bool(*x))),
            Array::I64(v) => v.iter().for_each(|x| array_item(a, &Value::I64(*x))),
            Array::F64(v) => v.iter().for_each(|x| array_item(a, &Value::F64(*x))),
            Array::String(v) => v.iter().for_each(|x| nested(a, 1, |s| string_value(s, x))),
            // A kind of array added to the API after this was written: its text, not nothing.
            other => array_item(a, &Value::String(StringValue::from(other.to_string()))),
        }),
        // Likewise for a kind of value added later.
        other => string_value(out, other.to_string()),
    }
}

fn array_item(out: &mut Vec<u8>, value: &Value) {
    nested(out, 1, |v| any_value(v, value));
}

fn string_value(out: &mut Vec<u8>, s: impl AsRef<str>) {
    let s = s.as_ref();
    encode_key(1, WireType::LengthDelimited, out);
    encode_varint(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

/// A proto3 `string` field: omitted when empty.
fn string(out: &mut Vec<u8>, tag: u32, s: &str) {
    bytes(out, tag, s.as_bytes());
}

/// A proto3 `bytes` field: omitted when empty.
fn bytes(out: &mut Vec<u8>, tag: u32, b: &[u8]) {
    if !b.is_empty() {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }
}

/// A proto3 varint field (uint32, uint64, enum): omitted when zero.
fn uint(out: &mut Vec<u8>, tag: u32, v: u64) {
    if v != 0 {
        encode_key(tag, WireType::Varint, out);
        encode_varint(v, out);
    }
}

fn fixed64(out: &mut Vec<u8>, tag: u32, v: u64) {
    if v != 0 {
        encode_key(tag, WireType::SixtyFourBit, out);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn fixed32(out: &mut Vec<u8>, tag: u32, v: u32) {
    if v != 0 {
        encode_key(tag, WireType::ThirtyTwoBit, out);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// An embedded message: `body` writes its fields after room left for the length, which is
/// filled in afterwards (the body moves back over the room it did not need).
fn nested(out: &mut Vec<u8>, tag: u32, body: impl FnOnce(&mut Vec<u8>)) {
    const ROOM: usize = 5; // a u32 length needs at most 5 varint bytes
    encode_key(tag, WireType::LengthDelimited, out);
    let start = out.len();
    out.resize(start + ROOM, 0);
    body(out);
    let len = out.len() - start - ROOM;
    let width = encoded_len_varint(len as u64);
    let mut prefix = &mut out[start..start + width];
    encode_varint(len as u64, &mut prefix);
    out.copy_within(start + ROOM.., start + width);
    out.truncate(start + width + len);
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use opentelemetry::trace::{
        Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
    use prost::Message;

    use super::*;

    fn context(
        trace: u128,
        span: u64,
        flags: TraceFlags,
        remote: bool,
        state: &str,
    ) -> SpanContext {
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            flags,
            remote,
            TraceState::from_key_value(
                state
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .filter_map(|kv| kv.split_once('=')),
            )
            .unwrap(),
        )
    }

    fn every_kind_of_value() -> Vec<KeyValue> {
        vec![
            KeyValue::new("static.str", "GET"),
            KeyValue::new("owned.str", String::from("/users/123")),
            KeyValue::new(
                "shared.str",
                Value::String(StringValue::from(std::sync::Arc::<str>::from("arc"))),
            ),
            KeyValue::new("empty.str", ""),
            KeyValue::new("bool.true", true),
            KeyValue::new("bool.false", false),
            KeyValue::new("int", 404_i64),
            KeyValue::new("int.zero", 0_i64),
            KeyValue::new("int.negative", -7_i64),
            KeyValue::new("float", 0.25_f64),
            KeyValue::new("float.zero", 0.0_f64),
            KeyValue::new("array.bool", Value::Array(Array::Bool(vec![true, false]))),
            KeyValue::new("array.int", Value::Array(Array::I64(vec![1, -2, 0]))),
            KeyValue::new("array.float", Value::Array(Array::F64(vec![1.5, 0.0]))),
            KeyValue::new(
                "array.string",
                Value::Array(Array::String(vec!["a".into(), "".into()])),
            ),
            KeyValue::new("array.empty", Value::Array(Array::I64(vec![]))),
            KeyValue::new("unicode", "héllo ✓"),
            KeyValue::new("long", "x".repeat(300)),
        ]
    }

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
    }

    fn spans() -> Vec<SpanData> {
        let server = InstrumentationScope::builder("organism").build();
        let library = InstrumentationScope::builder("sqlx")
            .with_version("0.8.6")
            .with_schema_url("https://opentelemetry.io/schemas/1.26.0")
            .with_attributes([KeyValue::new("scope.attr", 1_i64)])
            .build();
        let root = SpanData {
            span_context: context(
                0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
                0x00f0_67aa_0ba9_02b7,
                TraceFlags::SAMPLED,
                false,
                "",
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: Cow::Borrowed("GET /beat"),
            start_time: at(0),
            end_time: at(3),
            attributes: vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.response.status_code", 200_i64),
            ],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: server.clone(),
        };
        let mut everything = root.clone();
        everything.span_context = context(7, 8, TraceFlags::SAMPLED, true, "vendor=a,other=b");
        everything.parent_span_id = SpanId::from(9);
        everything.parent_span_is_remote = true;
        everything.span_kind = SpanKind::Client;
        everything.name = Cow::Owned("SELECT users".to_owned());
        everything.attributes = every_kind_of_value();
        everything.dropped_attributes_count = 3;
        everything.events.events = vec![
            opentelemetry::trace::Event::new("exception", at(1), every_kind_of_value(), 2),
            opentelemetry::trace::Event::new("empty", at(2), vec![], 0),
        ];
        everything.events.dropped_count = 4;
        everything.links.links = vec![
            Link::new(
                context(11, 12, TraceFlags::default(), true, "k=v"),
                vec![KeyValue::new("link", true)],
                1,
            ),
            Link::with_context(context(13, 14, TraceFlags::SAMPLED, false, "")),
        ];
        everything.links.dropped_count = 5;
        everything.status = Status::error("connection refused");
        everything.instrumentation_scope = library.clone();
        let mut ok = root.clone();
        ok.status = Status::Ok;
        ok.span_kind = SpanKind::Internal;
        let mut empty_error = root.clone();
        empty_error.status = Status::error("");
        empty_error.span_kind = SpanKind::Producer;
        empty_error.instrumentation_scope = library;
        let mut consumer = root.clone();
        consumer.span_kind = SpanKind::Consumer;
        consumer.name = Cow::Borrowed("");
        consumer.start_time = UNIX_EPOCH; // zero timestamps are omitted, as proto3 does
        consumer.end_time = UNIX_EPOCH;
        vec![root, everything, ok, empty_error, consumer]
    }

    fn resource() -> Resource {
        Resource::builder_empty()
            .with_service_name("heart")
            .with_attributes([
                KeyValue::new("service.instance.id", "b1e4"),
                KeyValue::new("k8s.pod.name", "heart-7d9c"),
                KeyValue::new("process.pid", 4242_i64),
            ])
            .with_schema_url([], "https://opentelemetry.io/schemas/1.26.0")
            .build()
    }

    /// What opentelemetry-otlp would send for the same batch.
    fn sdk_encoding(resource: &Resource, spans: Vec<SpanData>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                spans,
                &ResourceAttributesWithSchema::from(resource),
            ),
        }
    }

    fn ours(resource: &Resource, spans: &[SpanData]) -> Vec<u8> {
        let mut out = Vec::new();
        export_request(&mut out, &EncodedResource::new(resource), spans);
        out
    }

    #[test]
    fn decodes_to_what_the_sdk_conversion_builds() {
        let resource = resource();
        let bytes = ours(&resource, &spans());
        let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        let expected = sdk_encoding(&resource, spans());
        assert_eq!(decoded, expected);
        // Same message, same field order, same omissions: the bytes themselves agree.
        assert_eq!(bytes, expected.encode_to_vec());
    }

    #[test]
    fn one_scope_group_per_scope_in_order_of_first_appearance() {
        let decoded =
            ExportTraceServiceRequest::decode(ours(&resource(), &spans()).as_slice()).unwrap();
        let groups: Vec<(String, usize)> = decoded.resource_spans[0]
            .scope_spans
            .iter()
            .map(|s| (s.scope.as_ref().unwrap().name.clone(), s.spans.len()))
            .collect();
        assert_eq!(groups, [("organism".to_owned(), 3), ("sqlx".to_owned(), 2)]);
    }

    #[test]
    fn an_empty_resource_and_batch_still_make_a_valid_request() {
        let resource = Resource::builder_empty().build();
        let bytes = ours(&resource, &[]);
        let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded, sdk_encoding(&resource, vec![]));
    }

    #[test]
    fn lengths_that_need_several_varint_bytes_are_written_minimally() {
        let mut big = spans().remove(0);
        big.attributes = (0..2000)
            .map(|i| KeyValue::new(format!("attr.{i}"), "v".repeat(i % 200)))
            .collect();
        let resource = resource();
        let bytes = ours(&resource, std::slice::from_ref(&big));
        assert_eq!(bytes, sdk_encoding(&resource, vec![big]).encode_to_vec());
    }
}
