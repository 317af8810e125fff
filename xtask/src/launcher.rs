//! The local launcher: starts service processes, prefixes their logs, and serves a small control
//! API (`docs/CONTRACTS.md`) through which the auto-healer restarts what crashed. It never
//! restarts anything by itself.
//!
//! The control API listens on loopback only, answers only requests whose `Host` names that
//! loopback address (no DNS rebinding), requires `Authorization: Bearer <LAUNCHER_TOKEN>` on
//! every route, and refuses cross-site browser requests (`Origin`, `Sec-Fetch-Site`) and form or
//! text bodies.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How to start one process.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Service name (also the log prefix).
    pub name: String,
    /// Executable.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Port it serves on, if it is one of ours (for readiness polling).
    pub port: Option<u16>,
    /// Whether to echo its output.
    pub echo: bool,
}

#[derive(Debug)]
struct Managed {
    spec: Spec,
    child: Option<Child>,
    pid: Option<u32>,
    state: String,
    restarts: u32,
    started: Option<Instant>,
}

/// Running processes by name.
#[derive(Clone, Debug, Default)]
pub struct Launcher {
    procs: Arc<Mutex<BTreeMap<String, Managed>>>,
}

fn prefix_width() -> usize {
    topology::SERVICES
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(8)
        .max(10)
}

/// Renders one of our JSON log lines readably; other lines pass through.
fn render(line: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return line.to_owned();
    };
    let Some(message) = v.get("message").and_then(Value::as_str) else {
        return line.to_owned();
    };
    let time = v
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.get(11..19))
        .unwrap_or("");
    let level = v.get("level").and_then(Value::as_str).unwrap_or("");
    let mut out = format!("{time} {level:<5} {message}");
    if let Some(fields) = v.get("fields").and_then(Value::as_object) {
        for (k, val) in fields {
            match val {
                Value::String(s) => out.push_str(&format!(" {k}={s}")),
                other => out.push_str(&format!(" {k}={other}")),
            }
        }
    }
    if let Some(trace) = v.get("trace_id").and_then(Value::as_str) {
        out.push_str(&format!(" trace_id={trace}"));
    }
    out
}

impl Launcher {
    /// Registers `spec` and starts it.
    pub async fn add(&self, spec: Spec) -> anyhow::Result<()> {
        let name = spec.name.clone();
        {
            let mut procs = self.procs.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            procs.insert(
                name.clone(),
                Managed {
                    spec,
                    child: None,
                    pid: None,
                    state: "stopped".into(),
                    restarts: 0,
                    started: None,
                },
            );
        }
        self.start(&name).await
    }

    /// Starts `name` if it is not running.
    pub async fn start(&self, name: &str) -> anyhow::Result<()> {
        let spec = {
            let procs = self.procs.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let m = procs
                .get(name)
                .with_context(|| format!("no service {name:?}"))?;
            if m.child.is_some() {
                return Ok(());
            }
            m.spec.clone()
        };
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {} ({})", name, spec.program.display()))?;
        let pid = child.id();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let prefix = format!("{:>width$} |", spec.name, width = prefix_width());
            let echo = spec.echo;
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if echo {
                        println!("{prefix} {}", render(&line));
                    }
                }
            });
        }
        let mut procs = self.procs.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        if let Some(m) = procs.get_mut(name) {
            m.child = Some(child);
            m.pid = pid;
            m.state = "running".into();
            m.started = Some(Instant::now());
        }
        Ok(())
    }

    /// Stops `name` (SIGTERM, then SIGKILL after `grace`).
    pub async fn stop(&self, name: &str, grace: Duration) -> anyhow::Result<()> {
        let child = {
            let mut procs = self.procs.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let m = procs
                .get_mut(name)
                .with_context(|| format!("no service {name:?}"))?;
            m.state = "stopped".into();
            m.pid = None;
            m.child.take()
        };
        if let Some(mut child) = child {
            terminate(&mut child, grace).await;
        }
        Ok(())
    }

    /// Stops then starts `name`.
    pub async fn restart(&self, name: &str) -> anyhow::Result<()> {
        self.stop(name, Duration::from_secs(3)).await?;
        if let Ok(mut procs) = self.procs.lock()
            && let Some(m) = procs.get_mut(name)
        {
            m.restarts += 1;
        }
        self.start(name).await
    }

    /// Notices processes that exited by themselves (never restarts them).
    pub fn reap(&self) {
        let Ok(mut procs) = self.procs.lock() else {
            return;
        };
        for (name, m) in procs.iter_mut() {
            if let Some(child) = m.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let code = status
                    .code()
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "signal".into());
                println!(
                    "{:>width$} | exited ({code}); not restarting it: repairing is the auto-healer's job",
                    name,
                    width = prefix_width()
                );
                m.state = format!("exited ({code})");
                m.child = None;
                m.pid = None;
            }
        }
    }

    /// Every process's state as JSON.
    pub fn status(&self) -> Value {
        let procs = self.procs.lock().map(|p| {
            p.values()
                .map(|m| {
                    json!({
                        "name": m.spec.name,
                        "port": m.spec.port,
                        "pid": m.pid,
                        "state": m.state,
                        "restarts": m.restarts,
                        "uptime_s": m.started.filter(|_| m.child.is_some()).map(|s| s.elapsed().as_secs()),
                    })
                })
                .collect::<Vec<_>>()
        });
        json!({ "services": procs.unwrap_or_default() })
    }

    /// Whether `name` is known.
    pub fn knows(&self, name: &str) -> bool {
        self.procs.lock().is_ok_and(|p| p.contains_key(name))
    }

    /// The pid of `name`, if running.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.procs.lock().ok()?.get(name)?.pid
    }

    /// Stops everything, in reverse start order.
    pub async fn stop_all(&self) {
        let names: Vec<String> = self
            .procs
            .lock()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        for name in names.iter().rev() {
            let _ = self.stop(name, Duration::from_secs(8)).await;
        }
    }
}

async fn terminate(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}

/// Polls `http://127.0.0.1:{port}{path}` until it answers 200 or `timeout` passes.
pub async fn wait_http_ok(port: u16, path: &str, timeout: Duration) -> anyhow::Result<Duration> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()?;
    let url = format!("http://127.0.0.1:{port}{path}");
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(&url).send().await
            && r.status().is_success()
        {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("{url} not OK after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[derive(Clone)]
struct Control {
    launcher: Launcher,
    token: Arc<SecretString>,
    addr: SocketAddr,
}

fn authorized(control: &Control, headers: &HeaderMap) -> bool {
    let token = &control.token;
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    !presented.is_empty()
        && bool::from(presented.as_bytes().ct_eq(token.expose_secret().as_bytes()))
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// Every check a control request passes before it is looked at: `Host` names the loopback
/// address the API listens on, the request is not cross-site, a body (if any) is JSON, and the
/// bearer token matches.
fn admit(control: &Control, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let port = control.addr.port();
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let allowed = [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ];
    if !allowed.iter().any(|a| a.eq_ignore_ascii_case(host)) {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "bad_host",
            format!(
                "the control API answers only Host 127.0.0.1:{port} or localhost:{port}, got {host:?}"
            ),
        )));
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !(site == "same-origin" || site == "none")
    {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "cross_site",
            format!("cross-site requests are refused (Sec-Fetch-Site {site:?})"),
        )));
    }
    if let Some(origin) = headers.get("origin") {
        let origin = origin.to_str().unwrap_or("null");
        let same = origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.trim_end_matches('/').eq_ignore_ascii_case(host));
        if !same {
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                "cross_site",
                format!("cross-site requests are refused (Origin {origin:?})"),
            )));
        }
    }
    if let Some(ctype) = headers.get("content-type") {
        let ctype = ctype.to_str().unwrap_or("");
        if !ctype.trim_start().starts_with("application/json") {
            return Err(Box::new(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("the control API takes no body but JSON, got {ctype:?}"),
            )));
        }
    }
    if !authorized(control, headers) {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token (LAUNCHER_TOKEN, in .organism/tokens.env) is required".into(),
        )));
    }
    Ok(())
}

async fn act(control: Control, headers: HeaderMap, name: String, action: &'static str) -> Response {
    if let Err(refused) = admit(&control, &headers) {
        return *refused;
    }
    if !control.launcher.knows(&name) {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no service named {name:?}"),
        );
    }
    let result = match action {
        "restart" => control.launcher.restart(&name).await,
        "stop" => control.launcher.stop(&name, Duration::from_secs(5)).await,
        _ => control.launcher.start(&name).await,
    };
    match result {
        Ok(()) => {
            println!(
                "{:>width$} | {action} requested through the control API",
                name,
                width = prefix_width()
            );
            (
                StatusCode::ACCEPTED,
                axum::Json(
                    json!({"service": name, "action": action, "pid": control.launcher.pid(&name)}),
                ),
            )
                .into_response()
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "launcher",
            format!("{e:#}"),
        ),
    }
}

/// Serves the control API on `addr` (a loopback address) until the runtime stops; every route
/// requires `token`.
pub async fn serve_control(
    launcher: Launcher,
    addr: SocketAddr,
    token: SecretString,
) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() {
        bail!("the control API listens on loopback only, not {addr}");
    }
    if token.expose_secret().len() < 16 {
        bail!("the control API's token must be at least 16 characters");
    }
    let control = Control {
        launcher,
        token: Arc::new(token),
        addr,
    };
    let app = router(control);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("control API: cannot listen on {addr}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}

fn router(control: Control) -> Router {
    Router::new()
        .route(
            "/services",
            get(|State(c): State<Control>, h: HeaderMap| async move {
                match admit(&c, &h) {
                    Ok(()) => axum::Json(c.launcher.status()).into_response(),
                    Err(refused) => *refused,
                }
            }),
        )
        .route(
            "/services/{name}/restart",
            post(
                |State(c): State<Control>, h: HeaderMap, Path(n): Path<String>| {
                    act(c, h, n, "restart")
                },
            ),
        )
        .route(
            "/services/{name}/stop",
            post(
                |State(c): State<Control>, h: HeaderMap, Path(n): Path<String>| {
                    act(c, h, n, "stop")
                },
            ),
        )
        .route(
            "/services/{name}/start",
            post(
                |State(c): State<Control>, h: HeaderMap, Path(n): Path<String>| {
                    act(c, h, n, "start")
                },
            ),
        )
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route; see docs/CONTRACTS.md".into(),
            )
        })
        .with_state(control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn app() -> Router {
        router(Control {
            launcher: Launcher::default(),
            token: Arc::new(SecretString::from(TOKEN)),
            addr: "127.0.0.1:8090".parse().unwrap(),
        })
    }

    async fn call(headers: &[(&str, &str)]) -> (u16, Value) {
        let mut req = axum::http::Request::post("/services/heart/restart");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let response = app()
            .oneshot(req.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn the_control_api_admits_only_local_authenticated_same_site_calls() {
        let bearer = format!("Bearer {TOKEN}");
        let ok = [
            ("host", "127.0.0.1:8090"),
            ("authorization", bearer.as_str()),
        ];
        // An unknown service is a 404: the request got through every check.
        assert_eq!(call(&ok).await.0, 404);
        type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str);
        let cases: Vec<Case<'_>> = vec![
            (vec![("host", "127.0.0.1:8090")], 401, "unauthorized"),
            (
                vec![("host", "127.0.0.1:8090"), ("authorization", "Bearer nope")],
                401,
                "unauthorized",
            ),
            (
                vec![
                    ("host", "evil.example:8090"),
                    ("authorization", bearer.as_str()),
                ],
                403,
                "bad_host",
            ),
            (vec![("authorization", bearer.as_str())], 403, "bad_host"),
            (
                vec![
                    ("host", "127.0.0.1:8090"),
                    ("authorization", bearer.as_str()),
                    ("origin", "http://evil.example"),
                ],
                403,
                "cross_site",
            ),
            (
                vec![
                    ("host", "127.0.0.1:8090"),
                    ("authorization", bearer.as_str()),
                    ("sec-fetch-site", "cross-site"),
                ],
                403,
                "cross_site",
            ),
            (
                vec![
                    ("host", "127.0.0.1:8090"),
                    ("authorization", bearer.as_str()),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                415,
                "unsupported_media_type",
            ),
        ];
        for (headers, status, code) in cases {
            let (s, body) = call(&headers).await;
            assert_eq!(
                (s, body["error"]["code"].as_str().unwrap()),
                (status, code),
                "{headers:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_control_api_refuses_to_listen_beyond_loopback_or_without_a_real_token() {
        let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
        assert!(
            serve_control(Launcher::default(), any, SecretString::from(TOKEN))
                .await
                .is_err()
        );
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert!(
            serve_control(Launcher::default(), local, SecretString::from(""))
                .await
                .is_err()
        );
    }
}
