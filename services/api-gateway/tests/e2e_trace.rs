//! End to end, traced: heart, user-service (over a real PostgreSQL) and the gateway on
//! 127.0.0.1:0 in this process, exporting to an in-process OTLP receiver.
//!
//! The global tracing subscriber can be installed once per process, so this binary holds one
//! test and the three services share one tracer provider (one `service.name`): spans are told
//! apart by name, kind and attributes. In-process rather than child processes because the
//! user-service binary is only reachable by path from its own package; the trace context still
//! crosses real HTTP connections (`traceparent`) exactly as between processes.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use otlp_sink::{OtlpSink, ReceivedSpan};
use telemetry::TelemetryConfig;

const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const STATUS_ERROR: i32 = 2;

fn status_code(span: &ReceivedSpan) -> i32 {
    span.span.status.as_ref().map_or(0, |s| s.code)
}

/// The gateway server span for `path`, and the chain below it in the same trace.
struct Chain {
    gateway: ReceivedSpan,
    client: ReceivedSpan,
    user_service: ReceivedSpan,
    db: ReceivedSpan,
}

fn chain(spans: &[ReceivedSpan], path: &str) -> Option<Chain> {
    let gateway = spans
        .iter()
        .find(|s| s.span.name == "GET /user/{id}" && s.attr("url.path").as_deref() == Some(path))?;
    let in_trace = |s: &&ReceivedSpan| s.trace_id() == gateway.trace_id();
    let client = spans
        .iter()
        .filter(in_trace)
        .find(|s| s.parent_span_id() == gateway.span_id() && s.span.kind == CLIENT)?;
    let user_service = spans
        .iter()
        .filter(in_trace)
        .find(|s| s.parent_span_id() == client.span_id() && s.span.name == "GET /users/{id}")?;
    let db = spans
        .iter()
        .filter(in_trace)
        .find(|s| s.parent_span_id() == user_service.span_id() && s.span.name == "SELECT users")?;
    Some(Chain {
        gateway: gateway.clone(),
        client: client.clone(),
        user_service: user_service.clone(),
        db: db.clone(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_lookups_are_one_trace_from_gateway_to_database() {
    let sink = OtlpSink::start().await.unwrap();
    let endpoint = sink.endpoint();
    let env: HashMap<&str, &str> = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_TRACES_SAMPLER", "always_on"),
        ("OTEL_SERVICE_NAME", "organism-e2e"),
    ]
    .into_iter()
    .collect();
    let config = TelemetryConfig::from_env(&env, "organism-e2e", "0.0.0-test").unwrap();
    let telemetry = telemetry::init(&config, &prometheus::Registry::new()).unwrap();

    let pg = testbed::Postgres::start().await;
    let users = common::user_service(&pg.url()).await;
    let heart = common::heart().await;
    let (gw_ctx, gw_router) = common::gateway_router(api_gateway::Config::with_upstreams(
        &users.url(),
        &heart.url(),
        &common::closed_url(),
    ));
    let gateway = common::serve_assembled(gw_ctx, gw_router).await;

    let client = testbed::http_client_builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let get = |path: &str| client.get(format!("{}{path}", gateway.url())).send();
    let found = get("/user/123").await.unwrap();
    assert_eq!(found.status().as_u16(), 200);
    let traceresponse = found.headers()["traceresponse"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value = found.json().await.unwrap();
    assert_eq!(body["name"], "Ada Lovelace");
    let missing = get("/user/999").await.unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let beat = get("/beat").await.unwrap();
    assert_eq!(beat.status().as_u16(), 200);
    assert!(beat.json::<serde_json::Value>().await.unwrap().is_object());

    let complete = sink
        .wait_for(Duration::from_secs(20), |spans, _| {
            chain(spans, "/user/123").is_some()
                && chain(spans, "/user/999").is_some()
                && beat_trace(spans).is_some()
        })
        .await;
    let spans = sink.spans();
    let names: Vec<_> = spans
        .iter()
        .map(|s| (s.span.name.clone(), s.trace_id()))
        .collect();
    assert!(complete, "incomplete traces; spans received: {names:#?}");

    let ok = chain(&spans, "/user/123").unwrap();
    // The trace the client was told about is the one that reached the database.
    assert!(
        traceresponse.contains(&ok.gateway.trace_id()),
        "{traceresponse}"
    );
    assert_eq!(ok.gateway.span.kind, SERVER);
    assert_eq!(ok.gateway.attr("http.route").as_deref(), Some("/user/{id}"));
    assert_eq!(
        ok.gateway.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        ok.client.attr("url.full").unwrap(),
        format!("{}/users/123", users.url())
    );
    assert_eq!(ok.user_service.span.kind, SERVER);
    assert_eq!(
        ok.user_service.attr("http.route").as_deref(),
        Some("/users/{id}")
    );
    assert_eq!(ok.db.span.kind, CLIENT);
    assert_eq!(ok.db.attr("db.system").as_deref(), Some("postgresql"));
    assert_eq!(ok.db.attr("db.system.name").as_deref(), Some("postgresql"));
    assert_eq!(ok.db.attr("db.operation").as_deref(), Some("SELECT"));
    assert_eq!(ok.db.attr("db.operation.name").as_deref(), Some("SELECT"));
    assert_eq!(ok.db.attr("db.collection.name").as_deref(), Some("users"));
    assert_eq!(ok.db.attr("db.namespace").as_deref(), Some("testbed"));
    assert_eq!(ok.db.attr("server.port"), Some(pg.port().to_string()));
    for span in [&ok.gateway, &ok.client, &ok.user_service, &ok.db] {
        assert_ne!(status_code(span), STATUS_ERROR, "{}", span.span.name);
    }

    // A 404 is an answer, not an error, at every hop.
    let nf = chain(&spans, "/user/999").unwrap();
    assert_ne!(
        nf.gateway.trace_id(),
        ok.gateway.trace_id(),
        "one trace per request"
    );
    assert_eq!(
        nf.gateway.attr("http.response.status_code").as_deref(),
        Some("404")
    );
    assert_eq!(
        nf.client.attr("http.response.status_code").as_deref(),
        Some("404")
    );
    assert_eq!(
        nf.user_service.attr("http.response.status_code").as_deref(),
        Some("404")
    );
    for span in [&nf.gateway, &nf.client, &nf.user_service, &nf.db] {
        assert_ne!(
            status_code(span),
            STATUS_ERROR,
            "{} is marked as an error",
            span.span.name
        );
    }

    // /beat reached heart in a trace of its own, across the same hop (the wait above required
    // both spans: the batch holding /beat may be exported after the user lookups' ones).
    let (beat_gateway, beat_heart) = beat_trace(&spans).unwrap();
    assert_ne!(beat_gateway.trace_id(), ok.gateway.trace_id());
    assert_eq!(beat_heart.trace_id(), beat_gateway.trace_id());

    drop(gateway);
    drop(users);
    drop(heart);
    telemetry.guard.shutdown(Duration::from_secs(2)).await;
}

/// The gateway's root `GET /beat` span and a `GET /beat` span with a parent in the same trace
/// (heart's), once both have arrived.
fn beat_trace(spans: &[ReceivedSpan]) -> Option<(&ReceivedSpan, &ReceivedSpan)> {
    let root = spans
        .iter()
        .find(|s| s.span.name == "GET /beat" && s.parent_span_id().is_empty())?;
    let child = spans.iter().find(|s| {
        s.trace_id() == root.trace_id()
            && s.span.name == "GET /beat"
            && !s.parent_span_id().is_empty()
    })?;
    Some((root, child))
}
