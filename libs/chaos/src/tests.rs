//! Router tests: the chaos switchboard behind the real service skeleton.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use service_kit::{BaseConfig, Context};

use super::*;

fn context(request_timeout: Duration) -> Context {
    let mut base = BaseConfig::for_tests("chaos-test");
    base.request_timeout = request_timeout;
    Context::new(base).unwrap()
}

/// The token a [`TestApp`] is configured with unless a test names another.
const TEST_TOKEN: &str = "test-token";

struct TestApp {
    token: Option<String>,
    ctx: Context,
    chaos: Chaos,
    router: Router,
    exits: Arc<AtomicUsize>,
}

impl TestApp {
    /// An app whose `/chaos` takes `token` (default [`TEST_TOKEN`]).
    fn new(token: Option<&str>) -> Self {
        Self::with_timeout(token, Duration::from_secs(30))
    }

    /// An app with no token configured: `/chaos` is closed.
    fn closed() -> Self {
        Self::build(None, Duration::from_secs(30))
    }

    fn with_timeout(token: Option<&str>, request_timeout: Duration) -> Self {
        Self::build(Some(token.unwrap_or(TEST_TOKEN)), request_timeout)
    }

    fn build(token: Option<&str>, request_timeout: Duration) -> Self {
        let ctx = context(request_timeout);
        let exits = Arc::new(AtomicUsize::new(0));
        let counter = exits.clone();
        let chaos = Chaos::with_exit(
            &ctx,
            token.map(SecretString::from),
            Arc::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .unwrap();
        let business = Router::new().route("/work", get(|| async { "done" }));
        let routes = chaos.wrap(business).merge(chaos.routes());
        let router = service_kit::assemble(&ctx, routes);
        Self {
            token: token.map(str::to_owned),
            ctx,
            chaos,
            router,
            exits,
        }
    }

    /// Sends `req` through testbed's [`testbed::TestRouter`]: the status and the JSON body
    /// (`Null` when empty, the text as a JSON string when not JSON).
    async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let reply = testbed::TestRouter::new(self.router.clone())
            .send(req)
            .await;
        let value = match (reply.text.is_empty(), reply.body.is_null()) {
            (true, _) => Value::Null,
            (false, true) => Value::String(reply.text),
            (false, false) => reply.body,
        };
        (reply.status, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    /// The bearer token sent: `None` = the app's own, `Some("")` = no `Authorization` header.
    fn bearer<'a>(&'a self, token: Option<&'a str>) -> Option<&'a str> {
        token.or(self.token.as_deref()).filter(|t| !t.is_empty())
    }

    async fn post(&self, body: impl Into<Body>, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = Request::post("/chaos").header("content-type", "application/json");
        if let Some(t) = self.bearer(token) {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        self.send(req.body(body.into()).unwrap()).await
    }

    async fn set(&self, faults: Value) -> Value {
        let (status, body) = self.post(faults.to_string(), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn delete(&self, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = Request::delete("/chaos");
        if let Some(t) = self.bearer(token) {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    async fn gauge(&self, fault: &str) -> i64 {
        let metrics = testbed::TestRouter::new(self.router.clone())
            .metrics()
            .await;
        metrics
            .value("chaos_fault_active", &[("fault", fault)])
            .unwrap_or_else(|| {
                panic!(
                    "no chaos_fault_active{{fault={fault:?}}} in\n{}",
                    metrics.text()
                )
            }) as i64
    }
}

#[tokio::test]
async fn everything_is_off_by_default() {
    let app = TestApp::new(None);
    let (s, body) = app.get("/chaos").await;
    assert_eq!(s, 200);
    assert_eq!(
        body["faults"],
        json!({"error_rate": 0.0, "latency_ms": 0, "hang": false, "crash_after_s": null,
               "leak_mb_per_s": 0, "fail_readiness": false})
    );
    assert_eq!(body["active"], json!([]));
    for fault in FAULTS {
        assert_eq!(app.gauge(fault).await, 0, "{fault}");
    }
    for _ in 0..20 {
        assert_eq!(app.get("/work").await.0, 200);
    }
    assert_eq!(app.get("/readyz").await.0, 200);
}

#[tokio::test]
async fn error_rate_one_fails_every_business_request_and_nothing_else() {
    let app = TestApp::new(None);
    let body = app.set(json!({"error_rate": 1.0})).await;
    assert_eq!(body["faults"]["error_rate"], 1.0);
    assert_eq!(body["active"], json!(["error_rate"]));
    for _ in 0..20 {
        let (s, body) = app.get("/work").await;
        assert_eq!(s, 500);
        assert_eq!(body["error"]["code"], "chaos", "{body}");
    }
    assert_eq!(app.get("/healthz").await.0, 200);
    assert_eq!(app.get("/readyz").await.0, 200);
    assert_eq!(app.get("/chaos").await.0, 200);
    assert_eq!(app.get("/nowhere").await.0, 404, "unknown routes stay 404s");
    assert_eq!(app.gauge("error_rate").await, 1);
    assert_eq!(app.gauge("latency").await, 0);
}

#[tokio::test]
async fn a_partial_error_rate_fails_about_that_share() {
    let app = TestApp::new(None);
    app.set(json!({"error_rate": 0.5})).await;
    let mut failed = 0;
    for _ in 0..400 {
        if app.get("/work").await.0 == 500 {
            failed += 1;
        }
    }
    // Binomial(400, 0.5): the bounds are more than 6 standard deviations out.
    assert!((140..=260).contains(&failed), "{failed} of 400 failed");
}

// Paused time: the delays are the runtime's clock, exact, whatever the machine's load.
#[tokio::test(start_paused = true)]
async fn latency_delays_business_routes_by_the_asked_time() {
    let app = TestApp::new(None);
    app.set(json!({"latency_ms": 250})).await;
    let start = tokio::time::Instant::now();
    assert_eq!(app.get("/work").await.0, 200);
    let took = start.elapsed();
    assert!(
        (Duration::from_millis(250)..Duration::from_millis(260)).contains(&took),
        "took {took:?}"
    );
    assert_eq!(app.gauge("latency").await, 1);
}

#[tokio::test(start_paused = true)]
async fn latency_does_not_delay_probes() {
    let app = TestApp::new(None);
    app.set(json!({"latency_ms": 250})).await;
    let start = tokio::time::Instant::now();
    assert_eq!(app.get("/healthz").await.0, 200);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test]
async fn hang_never_answers_until_the_request_timeout() {
    let app = TestApp::with_timeout(None, Duration::from_millis(300));
    app.set(json!({"hang": true})).await;
    let start = Instant::now();
    let (s, body) = app.get("/work").await;
    let took = start.elapsed();
    assert_eq!(s, 503, "{body}");
    assert_eq!(body["error"]["code"], "timeout");
    assert!(took >= Duration::from_millis(300), "took {took:?}");
    assert_eq!(app.get("/healthz").await.0, 200, "probes are not hung");
    assert_eq!(app.gauge("hang").await, 1);

    app.set(json!({"hang": false})).await;
    assert_eq!(app.get("/work").await.0, 200);
}

#[tokio::test]
async fn a_hung_request_is_released_by_shutdown() {
    let app = TestApp::new(None);
    app.set(json!({"hang": true})).await;
    let hung = tokio::spawn({
        let app = testbed::TestRouter::new(app.router.clone());
        async move { app.get("/work").await.status }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!hung.is_finished());
    app.ctx.shutdown.cancel();
    let status = tokio::time::timeout(Duration::from_secs(10), hung)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 503);
}

#[tokio::test]
async fn fail_readiness_flips_readyz_naming_the_check() {
    let app = TestApp::new(None);
    app.set(json!({"fail_readiness": true})).await;
    let (s, body) = app.get("/readyz").await;
    assert_eq!(s, 503);
    assert_eq!(body["failing"][0]["check"], "chaos", "{body}");
    assert_eq!(app.get("/healthz").await.0, 200);
    assert_eq!(
        app.get("/work").await.0,
        200,
        "readiness does not fail requests"
    );
    assert_eq!(app.gauge("fail_readiness").await, 1);

    app.delete(None).await;
    assert_eq!(app.get("/readyz").await.0, 200);
    assert_eq!(app.gauge("fail_readiness").await, 0);
}

#[tokio::test]
async fn updates_merge_and_delete_restores_everything() {
    let app = TestApp::new(None);
    app.set(json!({"latency_ms": 10})).await;
    let body = app
        .set(json!({"error_rate": 1.0, "fail_readiness": true, "crash_after_s": 3600, "leak_mb_per_s": 1}))
        .await;
    assert_eq!(
        body["faults"]["latency_ms"], 10,
        "absent fields are left as they were"
    );
    assert_eq!(
        body["active"],
        json!(["error_rate", "latency", "crash", "leak", "fail_readiness"])
    );
    for fault in ["error_rate", "latency", "crash", "leak", "fail_readiness"] {
        assert_eq!(app.gauge(fault).await, 1, "{fault}");
    }
    assert_eq!(app.get("/work").await.0, 500);

    let (s, body) = app.delete(None).await;
    assert_eq!(s, 200);
    assert_eq!(
        body["faults"],
        serde_json::to_value(Faults::default()).unwrap()
    );
    assert_eq!(body["leaked_bytes"], 0);
    for fault in FAULTS {
        assert_eq!(app.gauge(fault).await, 0, "{fault}");
    }
    assert_eq!(app.get("/work").await.0, 200);
    assert_eq!(app.get("/readyz").await.0, 200);
    assert_eq!(app.get("/chaos").await.1["active"], json!([]));
}

#[tokio::test]
async fn bad_bodies_are_4xx_json_naming_the_field() {
    let app = TestApp::new(None);
    let cases = [
        (r#"{"error_rate": 1.5}"#, 422, Some("error_rate")),
        (r#"{"error_rate": -0.1}"#, 422, Some("error_rate")),
        (r#"{"error_rate": "lots"}"#, 422, Some("error_rate")),
        (r#"{"latency_ms": 60001}"#, 422, Some("latency_ms")),
        (r#"{"latency_ms": -5}"#, 422, Some("latency_ms")),
        (r#"{"latency_ms": 1.5}"#, 422, Some("latency_ms")),
        (r#"{"hang": "yes"}"#, 422, Some("hang")),
        (r#"{"crash_after_s": 3601}"#, 422, Some("crash_after_s")),
        (r#"{"leak_mb_per_s": 257}"#, 422, Some("leak_mb_per_s")),
        (r#"{"fail_readiness": 1}"#, 422, Some("fail_readiness")),
        (
            r#"{"error_rate": 0.1, "explode": true}"#,
            422,
            Some("explode"),
        ),
        (r#"{"error_rate": 0.1"#, 400, None),
        (r#"[1, 2]"#, 422, None),
    ];
    for (body, status, field) in cases {
        let (s, v) = app.post(body, None).await;
        assert_eq!(s.as_u16(), status, "{body} -> {v}");
        assert!(v["error"]["code"].is_string(), "{body} -> {v}");
        if let Some(field) = field {
            assert_eq!(v["error"]["field"], field, "{body} -> {v}");
        }
    }
    let huge = format!(
        r#"{{"error_rate": 0.1, "pad": "{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let (s, v) = app.post(huge, None).await;
    assert_eq!(s, 413, "{v}");
    let (s, v) = app
        .send(
            Request::post("/chaos")
                .header("authorization", format!("Bearer {TEST_TOKEN}"))
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(s, 415, "{v}");

    assert_eq!(
        app.chaos.faults(),
        Faults::default(),
        "a rejected body changes nothing"
    );
    assert_eq!(app.get("/work").await.0, 200);
}

#[tokio::test]
async fn a_configured_token_guards_post_and_delete() {
    let app = TestApp::new(Some("s3cret"));
    let (s, v) = app.post(r#"{"error_rate": 1}"#, Some("")).await;
    assert_eq!(s, 401);
    assert_eq!(v["error"]["code"], "unauthorized");
    let (s, _) = app.post(r#"{"error_rate": 1}"#, Some("wrong")).await;
    assert_eq!(s, 401);
    let (s, _) = app.post(r#"{"nonsense": 1}"#, Some("")).await;
    assert_eq!(s, 401, "the token is checked before the body");
    assert_eq!(
        app.get("/work").await.0,
        200,
        "unauthorised changes do nothing"
    );

    let (s, _) = app.post(r#"{"error_rate": 1}"#, Some("s3cret")).await;
    assert_eq!(s, 200);
    assert_eq!(app.get("/work").await.0, 500);
    assert_eq!(app.get("/chaos").await.0, 200, "reading is open");

    let (s, v) = app.delete(Some("")).await;
    assert_eq!(s, 401);
    assert_eq!(v["error"]["code"], "unauthorized");
    assert_eq!(app.get("/work").await.0, 500);
    let (s, _) = app.delete(Some("s3cret")).await;
    assert_eq!(s, 200);
    assert_eq!(app.get("/work").await.0, 200);
}

#[tokio::test]
async fn without_a_token_post_and_delete_are_closed() {
    let app = TestApp::closed();
    for token in [Some(""), Some("anything")] {
        let (s, v) = app.post(r#"{"error_rate": 1}"#, token).await;
        assert_eq!(s, 403, "{v}");
        assert_eq!(v["error"]["code"], "not_configured");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("CHAOS_TOKEN")
        );
        let (s, _) = app.delete(token).await;
        assert_eq!(s, 403);
    }
    assert_eq!(app.get("/work").await.0, 200, "nothing changed");
    assert_eq!(app.get("/chaos").await.0, 200, "reading stays open");
}

#[tokio::test]
async fn cross_site_changes_are_refused() {
    let app = TestApp::new(None);
    let req = Request::post("/chaos")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TEST_TOKEN}"))
        .header("host", "127.0.0.1:8081")
        .header("origin", "http://evil.example")
        .body(Body::from(r#"{"error_rate": 1}"#))
        .unwrap();
    let (s, v) = app.send(req).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "cross_site");
    assert_eq!(app.get("/work").await.0, 200);
}

#[tokio::test]
async fn crash_fires_after_the_delay() {
    let app = TestApp::new(None);
    app.set(json!({"crash_after_s": 1})).await;
    assert_eq!(app.gauge("crash").await, 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(app.exits.load(Ordering::SeqCst), 0, "too early");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(app.exits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn crash_is_disarmed_by_null_delete_and_shutdown() {
    let app = TestApp::new(None);
    app.set(json!({"crash_after_s": 1})).await;
    app.set(json!({"crash_after_s": null})).await;
    assert_eq!(app.gauge("crash").await, 0);
    app.set(json!({"crash_after_s": 1})).await;
    app.delete(None).await;
    let other = TestApp::new(None);
    other.set(json!({"crash_after_s": 1})).await;
    other.ctx.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.exits.load(Ordering::SeqCst), 0);
    assert_eq!(other.exits.load(Ordering::SeqCst), 0);
}

/// Resident set size of this process, from `/proc/self/statm`.
#[cfg(target_os = "linux")]
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leak_grows_the_resident_set_until_delete_frees_it() {
    const MIB: u64 = 1024 * 1024;
    let app = TestApp::new(None);
    let before = rss_bytes();
    app.set(json!({"leak_mb_per_s": 64})).await;
    assert_eq!(app.gauge("leak").await, 1);
    tokio::time::sleep(Duration::from_millis(1250)).await;
    let held = app.chaos.leaked_bytes();
    let grown = rss_bytes().saturating_sub(before);
    assert!(held >= 48 * MIB, "held {held}");
    assert!(grown >= 40 * MIB, "RSS grew by {grown} only");
    let (_, body) = app.get("/chaos").await;
    assert!(body["leaked_bytes"].as_u64().unwrap() >= held);

    let peak = rss_bytes();
    app.delete(None).await;
    assert_eq!(app.chaos.leaked_bytes(), 0);
    let after = rss_bytes();
    assert!(
        peak - after >= 40 * MIB,
        "RSS went from {peak} to {after} only"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(app.chaos.leaked_bytes(), 0, "the leak stopped");
    assert_eq!(app.gauge("leak").await, 0);
}

#[tokio::test]
async fn shutdown_stops_the_leak() {
    let app = TestApp::new(None);
    app.set(json!({"leak_mb_per_s": 1})).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    app.ctx.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let held = app.chaos.leaked_bytes();
    assert!(held > 0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(app.chaos.leaked_bytes(), held, "no growth after shutdown");
}
