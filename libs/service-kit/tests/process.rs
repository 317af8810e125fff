//! Whole-process tests of the skeleton: the `relay` demo binary runs as real child processes with
//! real environment variables, signals and an in-process OTLP receiver.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use otlp_sink::OtlpSink;
use serde_json::{Value, json};
use testbed::HttpSink;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The `relay` demo binary, which cargo builds before this test.
fn relay_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_relay"))
}

struct Service {
    child: Child,
    addr: String,
    stdout: Arc<Mutex<Vec<String>>>,
    /// Reads stdout into `stdout` until the pipe closes.
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl Service {
    /// Starts the relay with `env` and waits for its "listening" log line.
    async fn start(name: &str, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(relay_binary());
        cmd.env_clear()
            .env("OTEL_SERVICE_NAME", name)
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("SHUTDOWN_TIMEOUT", "5s")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn relay");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let sink = stdout.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let addr = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = rx.recv().await {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                if v["message"]
                    .as_str()
                    .is_some_and(|m| m.ends_with("listening"))
                {
                    return v["fields"]["addr"].as_str().unwrap().to_owned();
                }
            }
            panic!("relay exited before listening");
        })
        .await
        .expect("relay did not start within 10 s");
        Self {
            child,
            addr,
            stdout,
            reader: Some(reader),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The text of its `/metrics`.
    async fn metrics(&self) -> String {
        testbed::http_client()
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    fn log_lines(&self) -> Vec<Value> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    async fn terminate(&mut self) -> (Duration, std::process::ExitStatus) {
        let pid = self.child.id().expect("running").to_string();
        let start = Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("exits within 10 s")
            .expect("wait");
        let took = start.elapsed();
        // The process has exited, so its stdout reaches end of file: wait until every line it
        // wrote (the last ones included) has been read.
        if let Some(reader) = self.reader.take() {
            tokio::time::timeout(Duration::from_secs(5), reader)
                .await
                .expect("stdout closes after exit")
                .expect("stdout reader");
        }
        (took, exit)
    }
}

#[tokio::test]
async fn a_request_across_two_services_is_one_trace_in_spans_and_logs() {
    let sink = OtlpSink::start().await.unwrap();
    let endpoint = sink.endpoint();
    let otlp = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ];
    let mut b = Service::start("svc-b", &otlp).await;
    let b_url = format!("http://{}", b.addr);
    let mut env = otlp.to_vec();
    env.push(("NEXT_URL", b_url.as_str()));
    let mut a = Service::start("svc-a", &env).await;

    let response = testbed::http_client()
        .get(a.url("/relay"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["relayed"]["hello"], "relay");

    let arrived = sink
        .wait_for(Duration::from_secs(10), |spans, logs| {
            spans
                .iter()
                .any(|s| s.service == "svc-b" && s.span.name == "GET /hello/{name}")
                && spans
                    .iter()
                    .any(|s| s.service == "svc-a" && s.span.name == "GET /relay")
                && logs
                    .iter()
                    .any(|l| l.service == "svc-a" && l.body() == "relaying")
        })
        .await;
    let spans = sink.spans();
    if !arrived {
        let metrics = a.metrics().await;
        let otel: Vec<&str> = metrics.lines().filter(|l| l.starts_with("otel_")).collect();
        panic!(
            "spans/logs not received: {spans:#?}\nexport metrics of svc-a: {otel:#?}\nstdout: {:#?}",
            a.log_lines()
        );
    }

    let a_server = spans
        .iter()
        .find(|s| s.service == "svc-a" && s.span.name == "GET /relay")
        .unwrap();
    let a_client = spans
        .iter()
        .find(|s| s.service == "svc-a" && s.span.name == "GET")
        .expect("client span");
    let b_server = spans
        .iter()
        .find(|s| s.service == "svc-b" && s.span.name == "GET /hello/{name}")
        .unwrap();
    let trace = a_server.trace_id();
    assert_eq!(a_client.trace_id(), trace);
    assert_eq!(b_server.trace_id(), trace, "one trace across both services");
    assert_eq!(a_server.parent_span_id(), "", "the entry span is a root");
    assert_eq!(a_client.parent_span_id(), a_server.span_id());
    assert_eq!(
        b_server.parent_span_id(),
        a_client.span_id(),
        "traceparent crossed the hop"
    );
    // Semantic-convention attributes, route template rather than raw path.
    assert_eq!(
        b_server.attr("http.route").as_deref(),
        Some("/hello/{name}")
    );
    assert_eq!(b_server.attr("url.path").as_deref(), Some("/hello/relay"));
    assert_eq!(b_server.attr("http.request.method").as_deref(), Some("GET"));
    assert_eq!(
        b_server.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        a_client.attr("server.address").as_deref(),
        Some("127.0.0.1")
    );
    // SpanKind: 2 = server, 3 = client.
    assert_eq!(a_server.span.kind, 2);
    assert_eq!(a_client.span.kind, 3);

    // The log line emitted inside the request carries the trace id in OTLP and on stdout.
    let otlp_log = sink
        .logs()
        .into_iter()
        .find(|l| l.service == "svc-a" && l.body() == "relaying")
        .unwrap();
    assert_eq!(otlp_log.trace_id(), trace);
    let stdout_line = a
        .log_lines()
        .into_iter()
        .find(|l| l["message"] == "relaying")
        .expect("relaying on stdout");
    assert_eq!(stdout_line["trace_id"].as_str(), Some(trace.as_str()));
    assert_eq!(stdout_line["level"], "INFO");
    assert!(
        stdout_line["span_id"]
            .as_str()
            .is_some_and(|s| s.len() == 16)
    );

    a.terminate().await;
    b.terminate().await;
}

/// A collector that accepts every export and never answers (testbed's held HttpSink), and a
/// relay exporting to it over OTLP/HTTP with a one-minute export timeout: any request or
/// shutdown that waited on an export would wait a minute.
async fn relay_with_a_hung_collector(name: &str) -> (HttpSink, Service) {
    let collector = HttpSink::start().await;
    collector.hold();
    let endpoint = collector.url();
    let svc = Service::start(
        name,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "60000"),
        ],
    )
    .await;
    (collector, svc)
}

#[tokio::test]
async fn a_hung_collector_holds_no_request() {
    let (collector, mut svc) = relay_with_a_hung_collector("collector-hung").await;
    let client = testbed::http_client_builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let hello = |client: reqwest::Client, url: String| async move {
        let r = client
            .get(url)
            .send()
            .await
            .expect("answered, not held by an export");
        assert_eq!(r.status(), 200);
    };
    hello(client.clone(), svc.url("/hello/x")).await;
    // An export is now held at the collector, unanswered...
    collector
        .wait_for_requests(1, Duration::from_secs(30))
        .await;
    // ...and requests are answered all the same.
    for _ in 0..20 {
        hello(client.clone(), svc.url("/hello/x")).await;
    }
    svc.terminate().await;
}

#[tokio::test]
async fn a_hung_collector_does_not_stall_shutdown() {
    let (collector, mut svc) = relay_with_a_hung_collector("collector-hung").await;
    testbed::http_client()
        .get(svc.url("/hello/x"))
        .send()
        .await
        .unwrap();
    collector
        .wait_for_requests(1, Duration::from_secs(30))
        .await;
    // terminate() allows 10 s; the held export would take 60.
    let (_, status) = svc.terminate().await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn exports_to_a_dead_collector_are_counted_as_dropped() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dead = format!("http://{closed}");
    let mut down = Service::start(
        "collector-down",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", dead.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ],
    )
    .await;
    let client = testbed::http_client();
    for _ in 0..20 {
        let r = client.get(down.url("/hello/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let metrics = down.metrics().await;
    assert!(
        metrics.contains("otel_export_dropped_items_total"),
        "{metrics}"
    );
    let (_, status) = down.terminate().await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn bad_environment_variables_are_all_named_and_exit_2() {
    let output = Command::new(relay_binary())
        .env_clear()
        .env("LISTEN_ADDR", "localhost-ish")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "morse")
        .env("NEXT_URL", "gopher://next")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for var in ["LISTEN_ADDR", "OTEL_EXPORTER_OTLP_PROTOCOL", "NEXT_URL"] {
        assert!(stderr.contains(var), "{var} not named: {stderr}");
    }
    assert!(
        output.stdout.is_empty(),
        "nothing starts before the config is valid"
    );
}

#[tokio::test]
async fn a_request_in_flight_when_sigterm_arrives_still_completes() {
    let mut svc = Service::start("drain", &[]).await;
    let url = svc.url("/slow?ms=1500");
    let in_flight = tokio::spawn(async move {
        let r = testbed::http_client().get(url).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (took, status) = svc.terminate().await;
    let (code, body) = in_flight.await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(body, "done");
    assert!(status.success(), "{status:?}");
    assert!(
        took >= Duration::from_millis(900),
        "exited before the request finished: {took:?}"
    );
    let messages: Vec<String> = svc
        .log_lines()
        .iter()
        .filter_map(|l| l["message"].as_str().map(str::to_owned))
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("draining")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m == "relay stopped"),
        "{messages:?}"
    );
}

#[tokio::test]
async fn the_log_filter_changes_at_runtime() {
    let mut svc = Service::start(
        "filter",
        &[
            ("RUST_LOG", "warn,service_kit=info"),
            ("ADMIN_TOKEN", "adm1n"),
        ],
    )
    .await;
    let client = testbed::http_client();
    client.get(svc.url("/hello/quiet")).send().await.unwrap();
    let put = |body: &'static str, token: Option<&'static str>| {
        let mut r = client.put(svc.url("/admin/log-filter")).body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move {
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.expect("a JSON body");
            (status, body)
        }
    };
    let (status, body) = put("info", None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("unauthorized"))
    );
    let (status, body) = put("info,[oops", Some("adm1n")).await;
    assert_eq!((status, &body["error"]["field"]), (400, &json!("filter")));
    let (status, body) = put("  ", Some("adm1n")).await;
    assert_eq!(status, 400, "an empty filter would silence errors: {body}");
    let (status, _) = put("info", Some("adm1n")).await;
    assert_eq!(status, 200);
    client.get(svc.url("/hello/loud")).send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let greetings: Vec<String> = svc
        .log_lines()
        .iter()
        .filter(|l| l["message"] == "greeting")
        .map(|l| l["fields"]["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(greetings, vec!["loud".to_owned()]);
    svc.terminate().await;
}

#[tokio::test]
async fn the_log_filter_is_closed_without_an_admin_token() {
    let mut svc = Service::start("closed", &[]).await;
    let r = testbed::http_client()
        .put(svc.url("/admin/log-filter"))
        .bearer_auth("guess")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_configured");
    svc.terminate().await;
}

/// Sends raw bytes on a fresh connection and reads what comes back within `wait`.
async fn raw(addr: &str, bytes: &[u8], wait: Duration) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(wait, stream.read_to_end(&mut out))
        .await
        .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// The relay with a 1 s header-read timeout, and its `host:port`.
async fn bounded_relay() -> (Service, String) {
    let svc = Service::start(
        "bounds",
        &[("HEADER_READ_TIMEOUT", "1s"), ("MAX_CONNECTIONS", "4")],
    )
    .await;
    let addr = svc.url("").trim_start_matches("http://").to_owned();
    (svc, addr)
}

#[tokio::test]
async fn a_content_length_over_the_limit_is_a_413_before_the_body() {
    let (mut svc, addr) = bounded_relay().await;
    // The body is never sent: an answer at all means the server did not wait for it.
    let (text, _) = raw(
        &addr,
        b"POST /hello/x HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100000000000\r\n\r\n{",
        Duration::from_secs(10),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("payload_too_large"), "{text}");
    svc.terminate().await;
}

#[tokio::test]
async fn a_half_sent_request_is_closed_after_the_header_timeout() {
    let (mut svc, addr) = bounded_relay().await;
    let start = Instant::now();
    let (_, closed) = raw(
        &addr,
        b"GET /healthz HTTP/1.1\r\nhost: x\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(closed, "a half-sent request holds its connection forever");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "closed before the header timeout: {:?}",
        start.elapsed()
    );
    svc.terminate().await;
}

#[tokio::test]
async fn a_request_id_over_128_bytes_is_replaced_not_echoed() {
    let (mut svc, _) = bounded_relay().await;
    let long = "x".repeat(4096);
    let r = testbed::http_client()
        .get(svc.url("/healthz"))
        .header("x-request-id", &long)
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(id.len() <= 128 && id != long, "{id}");
    svc.terminate().await;
}

/// Over `MAX_CONNECTIONS`: a 503 JSON at once, and the service serves again when the held
/// connections are released. The header-read timeout (which also closes idle connections) is
/// long here, so that the held connections stay open however slowly the machine runs the test.
#[tokio::test]
async fn connections_over_the_limit_get_a_503_json() {
    let mut svc = Service::start(
        "bounds",
        &[("HEADER_READ_TIMEOUT", "60s"), ("MAX_CONNECTIONS", "4")],
    )
    .await;
    let addr = svc.url("").trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (text, closed) = raw(
        &addr,
        b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(closed && text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("\"overloaded\""), "{text}");
    drop(held);
    // The server sees the closes asynchronously: allow it a while, on a slow machine too.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match testbed::http_client().get(svc.url("/healthz")).send().await {
            Ok(r) if r.status() == 200 => break,
            other if Instant::now() > deadline => {
                panic!("released connections never freed their places: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }

    svc.terminate().await;
}
