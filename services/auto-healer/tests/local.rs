//! Local mode end to end: a real organ process (the built `heart` binary when present, else an
//! in-process server on a free port) is killed; the alert arrives at the webhook; the healer
//! restarts it through the launcher control API (served here by a small axum server that
//! implements the documented API); heart answers `/healthz` and `/readyz` again within 5 s and
//! the decision is audited. In dry run the same scenario records the decision and changes nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alertmanager::{Alert, WebhookMessage};
use auto_healer::local::{FileStore, LocalPlatform};
use auto_healer::platform::LeaderFlag;
use auto_healer::{Adapters, AppState, Config, app};
use axum::Json;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use http::StatusCode;
use serde_json::{Value, json};
use service_kit::Context;

/// How the organ runs.
enum Running {
    Process(tokio::process::Child),
    InProcess(tokio::task::JoinHandle<()>),
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
                let listener = loop {
                    match tokio::net::TcpListener::bind(&addr).await {
                        Ok(l) => break l,
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                };
                let router = axum::Router::new()
                    .route(
                        "/healthz",
                        get(|| async { Json(json!({"status": "alive"})) }),
                    )
                    .route(
                        "/readyz",
                        get(|| async { Json(json!({"status": "ready"})) }),
                    );
                Running::InProcess(tokio::spawn(async move {
                    let _ = axum::serve(listener, router).await;
                }))
            }
        });
    }

    async fn stop(&mut self) {
        match self.running.take() {
            Some(Running::Process(mut c)) => {
                let _ = c.kill().await;
            }
            Some(Running::InProcess(h)) => {
                h.abort();
                let _ = h.await;
            }
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

async fn serve(router: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let h = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (url, h)
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

struct Scenario {
    launcher: Launcher,
    heart_url: String,
    healer_url: String,
    dir: tempfile::TempDir,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
    _ctx: Context,
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
        testbed::wait_until(Duration::from_secs(10), || healthy(&heart_url)).await,
        "heart did not start"
    );
    let (launcher_url, l_task) = serve(
        axum::Router::new()
            .route("/services", get(list))
            .route("/services/{name}/{verb}", post(control))
            .with_state(launcher.clone()),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::for_tests(auto_healer::SERVICE);
    let mut config = Config {
        state_dir: dir.path().to_owned(),
        dry_run: Some(dry_run),
        token: Some("local-healer-token".to_owned().into()),
        ..Config::default()
    };
    config.policy.guards.verify_timeout = std::time::Duration::from_secs(5);
    let audit = Some(dir.path().join("audit.jsonl"));
    let platform = LocalPlatform::new(&launcher_url, None, audit, ctx.http_client())
        .with_service_url("heart", &heart_url);
    let state = AppState::with_adapters(
        &ctx,
        config,
        Adapters {
            lease_task: None,
            platform: Arc::new(platform),
            store: Arc::new(FileStore::new(dir.path())),
            leader: Arc::new(LeaderFlag::new(true)),
        },
    )
    .unwrap();
    let (healer_url, h_task) = serve(service_kit::assemble(&ctx, app(state))).await;
    Scenario {
        launcher,
        heart_url,
        healer_url,
        dir,
        _tasks: vec![l_task, h_task],
        _ctx: ctx,
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        for t in &self._tasks {
            t.abort();
        }
    }
}

async fn kill_heart_and_alert(s: &Scenario) -> Instant {
    s.launcher
        .organs
        .lock()
        .await
        .get_mut("heart")
        .unwrap()
        .stop()
        .await;
    assert!(!healthy(&s.heart_url).await, "heart is down");
    let alert = Alert::firing([
        ("alertname", "ServiceDown"),
        ("service", "heart"),
        ("severity", "critical"),
        ("remediation", "restart-pod"),
        ("finding", "down"),
    ]);
    let body =
        serde_json::to_vec(&WebhookMessage::builder("auto-healer").alert(alert).build()).unwrap();
    let start = Instant::now();
    let resp = testbed::http_client()
        .post(format!("{}/webhook/alertmanager", s.healer_url))
        .bearer_auth("local-healer-token")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    start
}

async fn actions(s: &Scenario) -> Vec<Value> {
    let v: Value = testbed::http_client()
        .get(format!("{}/api/v1/actions", s.healer_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["actions"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_killed_organ_is_restarted_through_the_launcher_and_verified() {
    let s = scenario(false).await;
    let start = kill_heart_and_alert(&s).await;
    let healed = testbed::wait_until(Duration::from_secs(5), || async {
        actions(&s).await.iter().any(|a| a["result"] == "healed")
    })
    .await;
    assert!(healed, "not healed within 5 s: {:?}", actions(&s).await);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        healthy(&s.heart_url).await,
        "heart answers /healthz and /readyz again"
    );
    assert_eq!(*s.launcher.calls.lock().unwrap(), ["restart heart"]);

    let a = actions(&s).await;
    assert_eq!(a[0]["result"], "healed");
    assert_eq!(a[0]["action"], "restart-service");
    assert_eq!(a[0]["target"], json!({"type": "service", "name": "heart"}));
    assert_eq!(a[1]["result"], "acted");
    // Audit file and guard state survive the process.
    let audit = std::fs::read_to_string(s.dir.path().join("audit.jsonl")).unwrap();
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
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(s.dir.path().join("state.json")).unwrap())
            .unwrap();
    assert_eq!(
        state["state"]["subjects"]["service/heart"]["attempts"][0]["outcome"],
        "healed"
    );
    // Metrics.
    let metrics = testbed::http_client()
        .get(format!("{}/metrics", s.healer_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains("auto_healer_actions_total{action=\"restart-service\",result=\"success\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("auto_healer_time_to_heal_seconds_count 1"),
        "{metrics}"
    );

    // The same alert again right away: the cooldown guard leaves it alone, and says so.
    kill_heart_and_alert(&s).await;
    let skipped = testbed::wait_until(Duration::from_secs(5), || async {
        actions(&s)
            .await
            .first()
            .is_some_and(|a| a["result"] == "skipped")
    })
    .await;
    assert!(skipped);
    assert_eq!(actions(&s).await[0]["guard"], "cooldown");
    assert_eq!(s.launcher.calls.lock().unwrap().len(), 1);
    s.launcher
        .organs
        .lock()
        .await
        .get_mut("heart")
        .unwrap()
        .stop()
        .await;
}

#[tokio::test]
async fn dry_run_records_the_decision_and_changes_nothing() {
    let s = scenario(true).await;
    kill_heart_and_alert(&s).await;
    let recorded = testbed::wait_until(Duration::from_secs(5), || async {
        actions(&s).await.iter().any(|a| a["result"] == "dry-run")
    })
    .await;
    assert!(recorded);
    let a = actions(&s).await;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["action"], "restart-service");
    assert!(
        a[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("dry run: would restart-service service/heart")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        s.launcher.calls.lock().unwrap().is_empty(),
        "no launcher call in dry run"
    );
    assert!(!healthy(&s.heart_url).await, "heart stays down");
    // The dry run keeps its own record (so it escalates as the real run would); the real
    // guard state is untouched.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.dir.path().join("state.json")).unwrap()).unwrap();
    let state = &state["state"];
    assert!(
        state["subjects"].as_object().unwrap().is_empty()
            && state["actions"].as_array().unwrap().is_empty(),
        "real guard state untouched: {state}"
    );
    assert_eq!(
        state["dry_run"]["subjects"]["service/heart"]["attempts"][0]["outcome"], "dry-run",
        "{state}"
    );
    let metrics = testbed::http_client()
        .get(format!("{}/metrics", s.healer_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains("auto_healer_actions_total{action=\"restart-service\",result=\"dry_run\"} 1"),
        "{metrics}"
    );
}
