//! Local mode end to end: a real organ process (the built `heart` binary when present, else an
//! in-process server on a free port) is killed; the alert arrives at the webhook; the healer
//! restarts it through the launcher control API (served here by a small axum server that
//! implements the documented API); heart answers `/healthz` and `/readyz` again within the
//! verification timeout (5 s) and the decision is audited. In dry run the same scenario records
//! the decision and changes nothing.
//!
//! "Within 5 s" is the healer's own verification timeout: a `healed` result says heart answered
//! in time. The waits here only end a test that went wrong; they assert no duration.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alertmanager::Alert;
use auto_healer::local::LocalPlatform;
use axum::Json;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use http::StatusCode;
use serde_json::{Value, json};
use support::healer::TestHealer;
use testbed::Served;

/// How long a wait for the healer or heart may take before the test is failed: a bound for a
/// test that went wrong, not a timing requirement.
const LOCAL_WAIT: Duration = Duration::from_secs(60);

/// How the organ runs.
enum Running {
    Process(tokio::process::Child),
    InProcess(Served),
}

struct Organ {
    port: u16,
    running: Option<Running>,
    restarts: u32,
}

fn heart_binary() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    ["debug", "release"]
        .iter()
        .map(|p| target.join(p).join("heart"))
        .find(|p| p.is_file())
}

/// A stand-in for heart: alive and ready.
fn heart_stand_in() -> axum::Router {
    axum::Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({"status": "alive"})) }),
        )
        .route(
            "/readyz",
            get(|| async { Json(json!({"status": "ready"})) }),
        )
}

impl Organ {
    async fn start(&mut self) {
        let addr = format!("127.0.0.1:{}", self.port);
        self.running = Some(match heart_binary() {
            Some(bin) => Running::Process(
                tokio::process::Command::new(bin)
                    .env("LISTEN_ADDR", &addr)
                    .env("RUST_LOG", "warn")
                    .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .expect("spawn heart"),
            ),
            None => {
                Running::InProcess(Served::start_on(addr.parse().unwrap(), heart_stand_in()).await)
            }
        });
    }

    async fn stop(&mut self) {
        match self.running.take() {
            Some(Running::Process(mut c)) => {
                let _ = c.kill().await;
            }
            Some(Running::InProcess(served)) => served.stop().await,
            None => {}
        }
    }
}

/// The launcher control API of CONTRACTS.md, over organs this test owns.
#[derive(Clone)]
struct Launcher {
    organs: Arc<tokio::sync::Mutex<BTreeMap<String, Organ>>>,
    calls: Arc<Mutex<Vec<String>>>,
}

impl Launcher {
    fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/services", get(list))
            .route("/services/{name}/{verb}", post(control))
            .with_state(self.clone())
    }

    async fn stop_heart(&self) {
        self.organs
            .lock()
            .await
            .get_mut("heart")
            .unwrap()
            .stop()
            .await;
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

async fn list(State(l): State<Launcher>) -> Json<Value> {
    let organs = l.organs.lock().await;
    Json(json!(organs.iter().map(|(n, o)| json!({"name": n, "state": if o.running.is_some() {"running"} else {"stopped"}, "restarts": o.restarts})).collect::<Vec<_>>()))
}

async fn control(
    State(l): State<Launcher>,
    Path((name, verb)): Path<(String, String)>,
) -> (StatusCode, Json<Value>) {
    l.calls.lock().unwrap().push(format!("{verb} {name}"));
    let mut organs = l.organs.lock().await;
    let Some(o) = organs.get_mut(&name) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": "not_found", "message": "no such service"}})),
        );
    };
    match verb.as_str() {
        "restart" => {
            o.stop().await;
            o.start().await;
            o.restarts += 1;
        }
        "stop" => o.stop().await,
        "start" => o.start().await,
        _ => {
            return (
                StatusCode::NOT_FOUND,
                Json(json!({"error": {"code": "not_found", "message": "no such verb"}})),
            );
        }
    }
    (
        StatusCode::ACCEPTED,
        Json(json!({"name": name, "state": "running", "restarts": o.restarts})),
    )
}

async fn healthy(url: &str) -> bool {
    let c = testbed::http_client();
    for p in ["/healthz", "/readyz"] {
        match c
            .get(format!("{url}{p}"))
            .timeout(Duration::from_millis(500))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {}
            _ => return false,
        }
    }
    true
}

/// Heart under the launcher, and a local-mode healer restarting it through the launcher.
struct Scenario {
    launcher: Launcher,
    heart_url: String,
    healer: TestHealer,
    _launcher_served: Served,
}

async fn scenario(dry_run: bool) -> Scenario {
    let port = testbed::free_port();
    let heart_url = format!("http://127.0.0.1:{port}");
    let launcher = Launcher {
        organs: Arc::new(tokio::sync::Mutex::new(BTreeMap::from([(
            "heart".to_owned(),
            Organ {
                port,
                running: None,
                restarts: 0,
            },
        )]))),
        calls: Arc::new(Mutex::new(Vec::new())),
    };
    launcher
        .organs
        .lock()
        .await
        .get_mut("heart")
        .unwrap()
        .start()
        .await;
    assert!(
        testbed::wait_until(LOCAL_WAIT, || healthy(&heart_url)).await,
        "heart did not start"
    );
    let launcher_served = Served::start(launcher.router()).await;
    let launcher_url = launcher_served.url();
    let heart = heart_url.clone();
    let healer = TestHealer::build(
        |ctx, dir| {
            let audit = Some(dir.join("audit.jsonl"));
            Arc::new(
                LocalPlatform::new(&launcher_url, None, audit, ctx.http_client())
                    .with_service_url("heart", &heart),
            )
        },
        |c| {
            c.dry_run = Some(dry_run);
            c.policy.guards.verify_timeout = Duration::from_secs(5);
        },
    );
    Scenario {
        launcher,
        heart_url,
        healer,
        _launcher_served: launcher_served,
    }
}

impl Scenario {
    /// Kills heart and posts the alert about it.
    async fn kill_heart_and_alert(&self) {
        self.launcher.stop_heart().await;
        assert!(!healthy(&self.heart_url).await, "heart is down");
        let alert = Alert::firing([
            ("alertname", "ServiceDown"),
            ("service", "heart"),
            ("severity", "critical"),
            ("remediation", "restart-pod"),
            ("finding", "down"),
        ]);
        let reply = self.healer.post_alerts(vec![alert]).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    }

    /// Waits until the newest decision's result is `result`.
    async fn wait_for_result(&self, result: &str) {
        let arrived = testbed::wait_until(LOCAL_WAIT, || async {
            self.healer
                .actions()
                .await
                .first()
                .is_some_and(|a| a["result"] == result)
        })
        .await;
        assert!(arrived, "no {result}: {:?}", self.healer.actions().await);
    }

    /// The guard state file as JSON.
    fn state_file(&self) -> Value {
        let path = self.healer.dir.path().join("state.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }
}

/// A scenario in which heart was killed, the alert posted and heart healed.
async fn healed_scenario() -> Scenario {
    let s = scenario(false).await;
    s.kill_heart_and_alert().await;
    s.wait_for_result("healed").await;
    s
}

#[tokio::test]
async fn a_killed_organ_is_restarted_through_the_launcher_and_verified() {
    let s = healed_scenario().await;
    assert!(
        healthy(&s.heart_url).await,
        "heart answers /healthz and /readyz again"
    );
    assert_eq!(s.launcher.calls(), ["restart heart"]);
    let a = s.healer.actions().await;
    assert_eq!(a[0]["result"], "healed");
    assert_eq!(a[0]["action"], "restart-service");
    assert_eq!(a[0]["target"], json!({"type": "service", "name": "heart"}));
    assert_eq!(a[1]["result"], "acted");
    s.launcher.stop_heart().await;
}

#[tokio::test]
async fn a_heal_is_audited_to_the_file_and_kept_in_the_guard_state() {
    let s = healed_scenario().await;
    let audit = std::fs::read_to_string(s.healer.dir.path().join("audit.jsonl")).unwrap();
    let results: Vec<String> = audit
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["result"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(results, ["acted", "healed"]);
    assert_eq!(
        s.state_file()["state"]["subjects"]["service/heart"]["attempts"][0]["outcome"],
        "healed"
    );
    s.launcher.stop_heart().await;
}

#[tokio::test]
async fn a_heal_is_counted_with_its_time_to_heal() {
    let s = healed_scenario().await;
    let metrics = s.healer.client.metrics().await;
    let acted = [("action", "restart-service"), ("result", "success")];
    assert_eq!(
        metrics.value("auto_healer_actions_total", &acted),
        Some(1.0)
    );
    assert_eq!(
        metrics.value("auto_healer_time_to_heal_seconds_count", &[]),
        Some(1.0)
    );
    s.launcher.stop_heart().await;
}

#[tokio::test]
async fn the_same_alert_right_after_a_heal_is_left_alone_by_the_cooldown() {
    let s = healed_scenario().await;
    s.kill_heart_and_alert().await;
    s.wait_for_result("skipped").await;
    assert_eq!(s.healer.actions().await[0]["guard"], "cooldown");
    assert_eq!(s.launcher.calls(), ["restart heart"]);
}

#[tokio::test]
async fn dry_run_records_the_decision_and_changes_nothing() {
    let s = scenario(true).await;
    s.kill_heart_and_alert().await;
    // The dry-run record ends the handling of the alert: nothing can follow it.
    s.wait_for_result("dry-run").await;
    let a = s.healer.actions().await;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["action"], "restart-service");
    assert!(
        a[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("dry run: would restart-service service/heart"),
        "{}",
        a[0]["message"]
    );
    assert!(s.launcher.calls().is_empty(), "no launcher call in dry run");
    assert!(!healthy(&s.heart_url).await, "heart stays down");
}

/// The dry run keeps its own record (so it escalates as the real run would); the real guard
/// state is untouched.
#[tokio::test]
async fn dry_run_keeps_its_own_guard_state() {
    let s = scenario(true).await;
    s.kill_heart_and_alert().await;
    s.wait_for_result("dry-run").await;
    let state = &s.state_file()["state"];
    assert!(
        state["subjects"].as_object().unwrap().is_empty()
            && state["actions"].as_array().unwrap().is_empty(),
        "real guard state untouched: {state}"
    );
    assert_eq!(
        state["dry_run"]["subjects"]["service/heart"]["attempts"][0]["outcome"], "dry-run",
        "{state}"
    );
}

#[tokio::test]
async fn dry_run_is_counted_as_such() {
    let s = scenario(true).await;
    s.kill_heart_and_alert().await;
    s.wait_for_result("dry-run").await;
    let metrics = s.healer.client.metrics().await;
    let decided = [("action", "restart-service"), ("result", "dry_run")];
    assert_eq!(
        metrics.value("auto_healer_actions_total", &decided),
        Some(1.0)
    );
}
