//! `cargo xtask explore`: Grafana Explore, proven offline.
//!
//! Runs api-gateway, user-service, brain and heart as separate processes (each its own
//! resource, as in the cluster) exporting to one OTLP receiver (`otlp-sink`: gateway and
//! user-service over http/protobuf, the default protocol; brain and heart over gRPC, as the
//! chart sets it), sends real requests through gateway → user-service and brain → heart, and
//! checks, from what the receiver got and what the services wrote on stdout:
//!
//! - every request has exactly one log line per service it crossed (OTLP log record and JSON
//!   stdout line) with method, route template, status, duration and request id, carrying the
//!   trace and span ids of that service's server span; also when the trace is not sampled
//!   (then with no span), and none for `/healthz`;
//! - the resource attributes become, under the collector configuration
//!   (`k8s/values/opentelemetry-collector.yaml`) and Loki's OTLP label mapping, the Loki labels
//!   `service_name`, `service_namespace`, `k8s_namespace_name`, `k8s_pod_name`, and Tempo's
//!   service name is the same `service.name`;
//! - the Grafana datasources of `k8s/values/kube-prometheus-stack.yaml` (parsed here, not copied)
//!   link both ways: Loki's derived fields (the regex on the JSON line, the `trace_id` structured
//!   metadata of an OTLP record) yield the trace id of the request's spans, and Tempo's
//!   `tracesToLogsV2` query, filled for a span, selects that request's log lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use otlp_sink::{OtlpSink, ReceivedLog, ReceivedSpan};
use serde_yaml_ng::Value as Yaml;

use crate::cargo::{self, Profile};
use crate::{launcher, root};

const GATEWAY: u16 = 18180;
const HEART: u16 = 18181;
const BRAIN: u16 = 18182;
const USERS: u16 = 18183;
const SERVER: i32 = 2;
/// The namespace the services are said to run in (downward API, as the chart sets it).
const NAMESPACE: &str = "organism";

/// Collector processors that leave resource and log attributes as they are.
const ATTRIBUTE_NEUTRAL_PROCESSORS: &[&str] = &["memory_limiter", "batch"];

pub fn run(_args: &[&str]) -> anyhow::Result<ExitCode> {
    cargo::build(
        Profile::Dev,
        &["heart", "brain", "api-gateway", "user-service"],
    )?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(explore())?;
    println!("explore: log lines, spans, labels and Grafana links agree");
    Ok(ExitCode::SUCCESS)
}

/// A service process writing its stdout to a file; killed when dropped.
struct Proc {
    _child: tokio::process::Child,
    stdout: PathBuf,
}

impl Proc {
    /// The JSON lines written so far.
    fn lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.stdout)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn raw(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }
}

async fn start(
    dir: &Path,
    name: &str,
    port: u16,
    env: Vec<(String, String)>,
) -> anyhow::Result<Proc> {
    let stdout = dir.join(format!("{name}.log"));
    let child = tokio::process::Command::new(cargo::binary(Profile::Dev, name))
        .envs(env)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("OTEL_SERVICE_NAME", name)
        .env(
            "OTEL_RESOURCE_ATTRIBUTES",
            format!("service.namespace={NAMESPACE},deployment.environment.name=explore"),
        )
        .env("K8S_POD_NAME", format!("{name}-7d4b9c-x1"))
        .env("K8S_NAMESPACE_NAME", NAMESPACE)
        .env("K8S_NODE_NAME", "node-1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout)?)
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    launcher::wait_http_ok(port, "/readyz", Duration::from_secs(30)).await?;
    Ok(Proc {
        _child: child,
        stdout,
    })
}

/// The two Grafana links, read from the chart values.
struct Links {
    /// Loki derived fields: (`regex` or `label`, matcher).
    derived: Vec<(String, String)>,
    /// Tempo `tracesToLogsV2.query`, with Grafana's `$$` unescaped.
    traces_to_logs: String,
}

fn yaml(path: &str) -> anyhow::Result<Yaml> {
    let text = std::fs::read_to_string(root().join(path)).with_context(|| path.to_owned())?;
    serde_yaml_ng::from_str(&text).with_context(|| format!("parsing {path}"))
}

fn links() -> anyhow::Result<Links> {
    let values = yaml("k8s/values/kube-prometheus-stack.yaml")?;
    let sources = values["grafana"]["additionalDataSources"]
        .as_sequence()
        .context("grafana.additionalDataSources")?;
    let of_type = |t: &str| {
        sources
            .iter()
            .find(|s| s["type"].as_str() == Some(t))
            .with_context(|| format!("no {t} datasource"))
    };
    let loki = of_type("loki")?;
    let tempo = of_type("tempo")?;
    let mut derived = Vec::new();
    for field in loki["jsonData"]["derivedFields"]
        .as_sequence()
        .context("loki jsonData.derivedFields")?
    {
        ensure!(
            field["datasourceUid"].as_str() == tempo["uid"].as_str(),
            "derived field {:?} does not point at the Tempo datasource",
            field["name"]
        );
        derived.push((
            field["matcherType"].as_str().unwrap_or("regex").to_owned(),
            field["matcherRegex"]
                .as_str()
                .context("matcherRegex")?
                .replace("$$", "$"),
        ));
    }
    let t2l = &tempo["jsonData"]["tracesToLogsV2"];
    ensure!(
        t2l["datasourceUid"].as_str() == loki["uid"].as_str(),
        "tracesToLogsV2 does not point at the Loki datasource"
    );
    let query = t2l["query"]
        .as_str()
        .context("tracesToLogsV2.query")?
        .replace("$$", "$");
    Ok(Links {
        derived,
        traces_to_logs: query,
    })
}

/// Checks that the collector passes resource attributes through untouched to Loki (OTLP) and
/// Tempo, so that Loki's own OTLP label mapping applies.
fn check_collector() -> anyhow::Result<()> {
    let values = yaml("k8s/values/opentelemetry-collector.yaml")?;
    let config = &values["config"];
    let pipelines = &config["service"]["pipelines"];
    for (pipeline, exporter) in [("logs", "otlphttp/loki"), ("traces", "otlp/tempo")] {
        let p = &pipelines[pipeline];
        let exporters: Vec<&str> = p["exporters"]
            .as_sequence()
            .with_context(|| format!("{pipeline} exporters"))?
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        ensure!(
            exporters.contains(&exporter),
            "the {pipeline} pipeline does not export to {exporter}"
        );
        ensure!(
            p["receivers"]
                .as_sequence()
                .is_some_and(|r| r.iter().any(|r| r.as_str() == Some("otlp"))),
            "the {pipeline} pipeline does not receive OTLP"
        );
        for processor in p["processors"].as_sequence().into_iter().flatten() {
            let name = processor.as_str().unwrap_or_default();
            ensure!(
                ATTRIBUTE_NEUTRAL_PROCESSORS
                    .iter()
                    .any(|n| name == *n || name.starts_with(&format!("{n}/"))),
                "the {pipeline} pipeline has processor {name:?}, which may change attributes: \
                 teach this test what it does to the labels"
            );
        }
    }
    let loki = config["exporters"]["otlphttp/loki"]["endpoint"]
        .as_str()
        .context("otlphttp/loki endpoint")?;
    ensure!(
        loki.trim_end_matches('/').ends_with("/otlp"),
        "logs go to {loki}, not Loki's native OTLP endpoint (/otlp): labels would differ"
    );
    // Loki's values must not override the default OTLP label mapping this test applies.
    let loki_values = yaml("k8s/values/loki.yaml")?;
    ensure!(
        loki_values["loki"]["limits_config"]["otlp_config"].is_null()
            && loki_values["loki"]["distributor"]["otlp_config"].is_null(),
        "Loki values set otlp_config: teach this test the label mapping"
    );
    Ok(())
}

/// The Loki stream labels of a record with these resource attributes.
fn loki_labels(resource: &[(String, String)]) -> BTreeMap<String, String> {
    resource
        .iter()
        .filter(|(k, _)| testbed::LOKI_DEFAULT_INDEX_ATTRIBUTES.contains(&k.as_str()))
        .map(|(k, v)| (k.replace('.', "_"), v.clone()))
        .collect()
}

/// A LogQL query of the form `{l="v", …} | key="v" | …`, evaluated against one log record:
/// stream labels from its resource, label filters against its structured metadata (`trace_id`,
/// `span_id`, attributes with `_` for `.`).
fn logql_selects(query: &str, log: &ReceivedLog) -> anyhow::Result<bool> {
    let re = regex::Regex::new(r#"^\s*\{(?P<sel>[^}]*)\}(?P<pipe>.*)$"#)?;
    let caps = re
        .captures(query)
        .with_context(|| format!("not a LogQL query this test reads: {query}"))?;
    let matcher = regex::Regex::new(r#"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"([^"]*)"\s*$"#)?;
    let labels = loki_labels(&log.resource);
    for m in caps["sel"].split(',').filter(|m| !m.trim().is_empty()) {
        let c = matcher
            .captures(m)
            .with_context(|| format!("stream matcher {m:?}: only l=\"v\" is understood"))?;
        if labels.get(&c[1]) != Some(&c[2].to_owned()) {
            return Ok(false);
        }
    }
    let metadata = |key: &str| -> Option<String> {
        match key {
            "trace_id" => Some(log.trace_id()),
            "span_id" => Some(log.span_id()),
            other => log
                .record
                .attributes
                .iter()
                .find(|kv| kv.key.replace('.', "_") == other)
                .map(|kv| format!("{:?}", kv.value)),
        }
    };
    for stage in caps["pipe"].split('|').filter(|s| !s.trim().is_empty()) {
        let c = matcher
            .captures(stage)
            .with_context(|| format!("pipeline stage {stage:?}: only | l=\"v\" is understood"))?;
        if metadata(&c[1]).as_deref() != Some(&c[2]) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Grafana's interpolation of the tracesToLogs query for one span.
fn fill_traces_to_logs(query: &str, span: &ReceivedSpan) -> anyhow::Result<String> {
    let tags = regex::Regex::new(r#"\$\{__span\.tags\["([^"]+)"\]\}"#)?;
    let filled = tags.replace_all(query, |c: &regex::Captures<'_>| {
        span.attr(&c[1])
            .or_else(|| {
                span.resource
                    .iter()
                    .find(|(k, _)| *k == c[1])
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_default()
    });
    let filled = filled
        .replace("${__trace.traceId}", &span.trace_id())
        .replace("${__span.spanId}", &span.span_id());
    ensure!(
        !filled.contains("${"),
        "tracesToLogs query has a variable this test does not fill: {filled}"
    );
    Ok(filled)
}

/// One service's part of one request.
struct Hop<'a> {
    service: &'a str,
    route: &'a str,
    status: u16,
    /// The request id the line must carry (else any non-empty one).
    request_id: Option<&'a str>,
    trace_id: &'a str,
    /// Whether the trace is sampled (then the server span must be exported, else must not).
    sampled: bool,
}

/// Checks one hop: its server span (when sampled), its OTLP log record, its stdout line.
fn check_hop(
    hop: &Hop<'_>,
    spans: &[ReceivedSpan],
    logs: &[ReceivedLog],
    stdout: &[serde_json::Value],
    links: &Links,
) -> anyhow::Result<()> {
    let record = check_log_record(hop, logs)?;
    let line = check_stdout_line(hop, record, stdout)?;
    check_derived_fields(hop, record, line, links)?;
    let Some(span) = check_server_span(hop, record, spans)? else {
        return Ok(());
    };
    check_same_service(hop.service, record, span)?;
    check_traces_to_logs(hop, record, span, logs, links)
}

/// The hop's one OTLP `request` log record, with the request's route, method, status, duration
/// and request id.
fn check_log_record<'l>(hop: &Hop<'_>, logs: &'l [ReceivedLog]) -> anyhow::Result<&'l ReceivedLog> {
    let &Hop {
        service,
        route,
        status,
        request_id,
        trace_id,
        ..
    } = hop;
    let records: Vec<&ReceivedLog> = logs
        .iter()
        .filter(|l| l.service == service && l.trace_id() == trace_id && l.body() == "request")
        .collect();
    ensure!(
        records.len() == 1,
        "{service}: expected one OTLP request log record in trace {trace_id}, got {}",
        records.len()
    );
    let record = records[0];
    let attr = |k: &str| record.attr(k).unwrap_or_default();
    ensure!(
        attr("http.route") == route,
        "{service}: http.route {:?}",
        attr("http.route")
    );
    ensure!(attr("http.request.method") == "GET", "{service}: method");
    ensure!(
        attr("http.response.status_code") == status.to_string(),
        "{service}: status {:?}",
        attr("http.response.status_code")
    );
    ensure!(
        attr("duration_ms").parse::<f64>().is_ok_and(|d| d >= 0.0),
        "{service}: duration_ms {:?}",
        attr("duration_ms")
    );
    if let Some(id) = request_id {
        ensure!(
            attr("request_id") == id,
            "{service}: request_id {:?}",
            attr("request_id")
        );
    } else {
        ensure!(!attr("request_id").is_empty(), "{service}: no request_id");
    }
    Ok(record)
}

/// The hop's one stdout `request` line: the same span, route and request id as its OTLP record.
fn check_stdout_line<'s>(
    hop: &Hop<'_>,
    record: &ReceivedLog,
    stdout: &'s [serde_json::Value],
) -> anyhow::Result<&'s serde_json::Value> {
    let &Hop {
        service,
        route,
        trace_id,
        ..
    } = hop;
    let lines: Vec<&serde_json::Value> = stdout
        .iter()
        .filter(|l| l["trace_id"] == trace_id && l["message"] == "request")
        .collect();
    ensure!(
        lines.len() == 1,
        "{service}: expected one stdout request line in trace {trace_id}, got {}",
        lines.len()
    );
    let line = lines[0];
    ensure!(
        line["span_id"] == record.span_id().as_str(),
        "{service}: stdout and OTLP lines name different spans"
    );
    ensure!(
        line["fields"]["http.route"] == route,
        "{service}: stdout route"
    );
    ensure!(
        line["fields"]["request_id"] == record.attr("request_id").unwrap_or_default().as_str(),
        "{service}: stdout request_id"
    );
    Ok(line)
}

/// Loki → Tempo: each derived field finds the trace id in the stdout line (regex) or the OTLP
/// record (label).
fn check_derived_fields(
    hop: &Hop<'_>,
    record: &ReceivedLog,
    line: &serde_json::Value,
    links: &Links,
) -> anyhow::Result<()> {
    let (service, trace_id) = (hop.service, hop.trace_id);
    let raw = serde_json::to_string(line)?;
    for (kind, matcher) in &links.derived {
        let found = match kind.as_str() {
            "regex" => regex::Regex::new(matcher)?
                .captures(&raw)
                .and_then(|c| c.get(1))
                .map(|m| m.as_str().to_owned()),
            // A label matcher reads the structured metadata of an OTLP record.
            "label" => match matcher.as_str() {
                "trace_id" => Some(record.trace_id()),
                other => bail!("derived field on label {other:?}: not a trace id"),
            },
            other => bail!("derived field matcherType {other:?}"),
        };
        ensure!(
            found.as_deref() == Some(trace_id),
            "{service}: derived field {kind} {matcher:?} gives {found:?}, not {trace_id}"
        );
    }
    Ok(())
}

/// The hop's one server span, named for its route and holding the log record (`None`, and no
/// span exported, when the trace is not sampled).
fn check_server_span<'s>(
    hop: &Hop<'_>,
    record: &ReceivedLog,
    spans: &'s [ReceivedSpan],
) -> anyhow::Result<Option<&'s ReceivedSpan>> {
    let &Hop {
        service,
        route,
        trace_id,
        sampled,
        ..
    } = hop;
    let server_spans: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.service == service && s.trace_id() == trace_id && s.span.kind == SERVER)
        .collect();
    if !sampled {
        ensure!(
            server_spans.is_empty(),
            "{service}: unsampled trace exported"
        );
        return Ok(None);
    }
    ensure!(
        server_spans.len() == 1,
        "{service}: {} server spans",
        server_spans.len()
    );
    let span = server_spans[0];
    ensure!(
        span.span_id() == record.span_id(),
        "{service}: the log line's span id {} is not its server span's {}",
        record.span_id(),
        span.span_id()
    );
    ensure!(
        span.span.name == format!("GET {route}"),
        "{service}: span name {}",
        span.span.name
    );
    Ok(Some(span))
}

/// Same service in Tempo and in Loki, with the namespace and pod labels.
fn check_same_service(
    service: &str,
    record: &ReceivedLog,
    span: &ReceivedSpan,
) -> anyhow::Result<()> {
    let labels = loki_labels(&record.resource);
    ensure!(
        labels.get("service_name").map(String::as_str) == Some(service) && span.service == service,
        "{service}: Loki service_name {:?}, Tempo service {:?}",
        labels.get("service_name"),
        span.service
    );
    for (label, want) in [
        ("service_namespace", NAMESPACE),
        ("k8s_namespace_name", NAMESPACE),
    ] {
        ensure!(
            labels.get(label).map(String::as_str) == Some(want),
            "{service}: Loki label {label} {:?}",
            labels.get(label)
        );
    }
    ensure!(
        labels.contains_key("k8s_pod_name"),
        "{service}: no k8s_pod_name label"
    );
    Ok(())
}

/// Tempo → Loki: the query filled for this span selects this line, and only lines of its trace.
fn check_traces_to_logs(
    hop: &Hop<'_>,
    record: &ReceivedLog,
    span: &ReceivedSpan,
    logs: &[ReceivedLog],
    links: &Links,
) -> anyhow::Result<()> {
    let (service, trace_id) = (hop.service, hop.trace_id);
    let query = fill_traces_to_logs(&links.traces_to_logs, span)?;
    ensure!(
        logql_selects(&query, record)?,
        "{service}: {query} does not select the request's line"
    );
    for other in logs.iter().filter(|l| l.trace_id() != trace_id) {
        ensure!(
            !logql_selects(&query, other)?,
            "{service}: {query} also selects a line of trace {}",
            other.trace_id()
        );
    }
    Ok(())
}

/// The four organs, started with their stdout in files and their telemetry going to the sink
/// (heart and brain over gRPC, user-service and the gateway over HTTP).
struct Organs {
    // Stopped (dropped) in this order: callers first.
    gateway: Proc,
    users: Proc,
    brain: Proc,
    heart: Proc,
}

impl Organs {
    async fn start(dir: &Path, sink: &OtlpSink) -> anyhow::Result<Self> {
        let http = |extra: Vec<(String, String)>| {
            let mut e = vec![(
                "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
                sink.http_endpoint(),
            )];
            e.extend(extra);
            e
        };
        let grpc = |extra: Vec<(String, String)>| {
            let mut e = vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), sink.endpoint()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(), "grpc".to_owned()),
            ];
            e.extend(extra);
            e
        };
        let heart = start(dir, "heart", HEART, grpc(vec![])).await?;
        let brain = start(
            dir,
            "brain",
            BRAIN,
            grpc(vec![(
                "HEART_URL".into(),
                format!("http://127.0.0.1:{HEART}"),
            )]),
        )
        .await?;
        let users = start(
            dir,
            "user-service",
            USERS,
            http(vec![(
                "DATABASE_URL".into(),
                format!("sqlite://{}/users.db", dir.display()),
            )]),
        )
        .await?;
        let gateway = start(
            dir,
            "api-gateway",
            GATEWAY,
            http(vec![
                (
                    "USER_SERVICE_URL".into(),
                    format!("http://127.0.0.1:{USERS}"),
                ),
                ("HEART_URL".into(), format!("http://127.0.0.1:{HEART}")),
                ("BRAIN_URL".into(), format!("http://127.0.0.1:{BRAIN}")),
            ]),
        )
        .await?;
        Ok(Self {
            gateway,
            users,
            brain,
            heart,
        })
    }
}

/// A trace the caller left unsampled (`traceparent` flags 00).
const UNSAMPLED_TRACE: &str = "5b8efff798038103d269b633813fc60c";

/// The requests made, by trace.
struct Requests {
    /// gateway → user-service, with a request id of ours.
    user_trace: String,
    /// Its status (the user may or may not exist).
    user_status: u16,
    /// brain → heart.
    think_trace: String,
}

/// The trace id of a response's `traceresponse` header.
fn trace_of(r: &reqwest::Response) -> anyhow::Result<String> {
    let tr = r
        .headers()
        .get("traceresponse")
        .context("no traceresponse header")?
        .to_str()?;
    Ok(tr.split('-').nth(1).context("traceresponse")?.to_owned())
}

/// gateway → user-service, brain → heart sampled and unsampled, and a probe.
async fn send_requests() -> anyhow::Result<Requests> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let user = client
        .get(format!("http://127.0.0.1:{GATEWAY}/user/123"))
        .header("x-request-id", "explore-user-123")
        .send()
        .await?;
    let user_status = user.status().as_u16();
    let user_trace = trace_of(&user)?;
    let think = client
        .get(format!("http://127.0.0.1:{BRAIN}/think?pulse=true"))
        .send()
        .await?;
    ensure!(
        think.status().is_success(),
        "/think answered {}",
        think.status()
    );
    let think_trace = trace_of(&think)?;
    // brain → heart again, the caller saying "not sampled": log lines still, no spans.
    let quiet = client
        .get(format!("http://127.0.0.1:{BRAIN}/think?pulse=true"))
        .header(
            "traceparent",
            format!("00-{UNSAMPLED_TRACE}-eee19b7ec3c1b174-00"),
        )
        .send()
        .await?;
    ensure!(
        quiet.status().is_success(),
        "/think answered {}",
        quiet.status()
    );
    // A probe: not logged by default.
    client
        .get(format!("http://127.0.0.1:{GATEWAY}/healthz"))
        .send()
        .await?;
    Ok(Requests {
        user_trace,
        user_status,
        think_trace,
    })
}

/// Waits until every expected line and server span arrived (then a little more, so a
/// duplicate would be seen) and returns what the sink holds.
async fn received(
    sink: &OtlpSink,
    req: &Requests,
) -> anyhow::Result<(Vec<ReceivedSpan>, Vec<ReceivedLog>)> {
    let arrived = sink
        .wait_for(Duration::from_secs(20), |spans, logs| {
            let lines = |t: &str| {
                logs.iter()
                    .filter(|l| l.trace_id() == t && l.body() == "request")
                    .count()
            };
            let server = |t: &str| {
                spans
                    .iter()
                    .filter(|s| s.trace_id() == t && s.span.kind == SERVER)
                    .count()
            };
            lines(&req.user_trace) >= 2
                && lines(&req.think_trace) >= 2
                && lines(UNSAMPLED_TRACE) >= 2
                && server(&req.user_trace) >= 2
                && server(&req.think_trace) >= 2
        })
        .await;
    // Let stragglers (a duplicate would be one) arrive before judging.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (spans, logs) = (sink.spans(), sink.logs());
    ensure!(
        arrived,
        "telemetry incomplete: {} spans, {} log records: {:#?}",
        spans.len(),
        logs.len(),
        logs.iter()
            .map(|l| (l.service.clone(), l.body(), l.trace_id()))
            .collect::<Vec<_>>()
    );
    Ok((spans, logs))
}

/// Every hop of the three requests, with the process whose stdout holds its line.
fn hops<'a>(organs: &'a Organs, req: &'a Requests) -> [(&'a Proc, Hop<'a>); 6] {
    let hop = |service, route, status, request_id, trace_id, sampled| Hop {
        service,
        route,
        status,
        request_id,
        trace_id,
        sampled,
    };
    let rid = Some("explore-user-123");
    let (user, think) = (req.user_trace.as_str(), req.think_trace.as_str());
    [
        (
            &organs.gateway,
            hop(
                "api-gateway",
                "/user/{id}",
                req.user_status,
                rid,
                user,
                true,
            ),
        ),
        (
            &organs.users,
            hop(
                "user-service",
                "/users/{id}",
                req.user_status,
                rid,
                user,
                true,
            ),
        ),
        (
            &organs.brain,
            hop("brain", "/think", 200, None, think, true),
        ),
        (&organs.heart, hop("heart", "/beat", 200, None, think, true)),
        (
            &organs.brain,
            hop("brain", "/think", 200, None, UNSAMPLED_TRACE, false),
        ),
        (
            &organs.heart,
            hop("heart", "/beat", 200, None, UNSAMPLED_TRACE, false),
        ),
    ]
}

/// Parents: user-service's server span is a grandchild of the gateway's (through its client
/// span), heart's of brain's: one trace in Tempo.
fn check_parents(req: &Requests, spans: &[ReceivedSpan]) -> anyhow::Result<()> {
    for (trace, upper, lower) in [
        (&req.user_trace, "api-gateway", "user-service"),
        (&req.think_trace, "brain", "heart"),
    ] {
        let server = |svc: &str| {
            spans
                .iter()
                .find(|s| s.service == svc && s.trace_id() == *trace && s.span.kind == SERVER)
        };
        let (up, low) = (
            server(upper).context("upper")?,
            server(lower).context("lower")?,
        );
        let client = spans
            .iter()
            .find(|s| s.span_id() == low.parent_span_id())
            .context("the lower server span's parent was not exported")?;
        ensure!(
            client.parent_span_id() == up.span_id() || client.span_id() == up.span_id(),
            "{lower}'s server span does not descend from {upper}'s"
        );
    }
    Ok(())
}

async fn explore() -> anyhow::Result<()> {
    check_collector()?;
    let links = links()?;
    let sink = OtlpSink::start().await?;
    let dir = std::env::temp_dir().join(format!("organism-explore-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let organs = Organs::start(&dir, &sink).await?;
    let req = send_requests().await?;
    let (spans, logs) = received(&sink, &req).await?;
    for (proc, hop) in &hops(&organs, &req) {
        check_hop(hop, &spans, &logs, &proc.lines(), &links)
            .with_context(|| format!("stdout of {}:\n{}", hop.service, proc.raw()))?;
    }
    check_parents(&req, &spans)?;
    ensure!(
        !logs
            .iter()
            .any(|l| l.attr("http.route").as_deref() == Some("/healthz")),
        "a /healthz probe was logged"
    );
    drop(organs);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_datasources_are_read() {
        let l = links().unwrap();
        assert!(
            l.traces_to_logs.contains("${__trace.traceId}"),
            "{}",
            l.traces_to_logs
        );
        assert!(l.derived.iter().any(|(k, _)| k == "regex"));
        check_collector().unwrap();
    }

    #[test]
    fn loki_labels_follow_the_default_otlp_mapping() {
        let labels = loki_labels(&[
            ("service.name".into(), "heart".into()),
            ("k8s.namespace.name".into(), "organism".into()),
            ("service.version".into(), "1.0".into()),
        ]);
        assert_eq!(
            labels.get("service_name").map(String::as_str),
            Some("heart")
        );
        assert_eq!(
            labels.get("k8s_namespace_name").map(String::as_str),
            Some("organism")
        );
        assert!(
            !labels.contains_key("service_version"),
            "structured metadata, not a label"
        );
    }
}
