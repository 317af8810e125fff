//! `cargo xtask from-chart`: the chart's own configuration, executed on this machine.
//!
//! ```text
//! cargo xtask from-chart up        [--release] [--no-build]   run what `helmfile sync` would deploy
//! cargo xtask from-chart scenario  [NAME..] [--release] [--no-build]
//! cargo xtask from-chart self-test [--release] [--no-build]   each injected wiring fault fails a scenario
//! ```
//!
//! 1. **Render.** `helm template organism k8s/charts/organism -n organism -f
//!    k8s/values/organism-kind.yaml` and `helm template kube-prometheus-stack
//!    ../shared/charts/kube-prometheus-stack-88.5.3.tgz -n monitoring -f
//!    k8s/values/kube-prometheus-stack.yaml` (helm from `ci/lib/tools.sh`), as helmfile.yaml
//!    releases them.
//! 2. **Translate**, by exactly these rules and nothing else:
//!    - every container of every rendered Deployment runs with the rendered `env` (values,
//!      `$(VAR)` expansion, `secretKeyRef`s, `fieldRef`s) and the rendered ConfigMap files at
//!      their mount paths (written under the state directory; a value naming a mount path is
//!      pointed there);
//!    - Secrets are exactly those the render contains (the chart generates its tokens, the ack
//!      signing key and Alertmanager's copy of the webhook tokens itself:
//!      `templates/tokens.yaml`); a reference to a missing key fails the start, as
//!      `CreateContainerConfigError` would;
//!    - cluster DNS names and ports become loopback addresses by the one table [`LOOPBACK`]; a
//!      URL (in env, config files, Secrets, Alertmanager receivers) naming a Service that is not
//!      in it fails the start, as DNS would in the cluster. `LISTEN_ADDR 0.0.0.0:P` binds
//!      127.0.0.1:P;
//!    - what needs a Kubernetes API runs in the services' local platform mode, named in
//!      [`LOCAL_PLATFORM`]: health-monitor probes the services over HTTP instead of watching
//!      the API, auto-healer restarts processes through the launcher instead of deleting pods,
//!      alert-service does not enrich from the API;
//!    - time: every duration in the rendered rules (`for:`, range and subquery windows), in
//!      Alertmanager's route timings and in the healer's and alert-service's configuration files
//!      (`*_secs`, `interval`, `after`) is divided by [`TIME_SCALE`] (at least 1 s); nothing else
//!      is changed. Prometheus scrapes and evaluates every second.
//! 3. **Run**: Prometheus with the rendered PrometheusRule's groups and one scrape job per
//!    rendered ServiceMonitor; Alertmanager with the rendered `alertmanager.yaml` (routes,
//!    receivers, inhibitions, webhook bearer files); PostgreSQL and an SMTP sink stand in for the
//!    `postgres` StatefulSet and Mailpit; the seven services on their loopback ports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::cargo::Profile;
use crate::launcher::{self, Launcher, Spec};
use crate::root;
use crate::up::{self, CONTROL_ADDR, Options};

/// Durations of rules, routes and policies are divided by this (at least 1 s remains).
pub const TIME_SCALE: u64 = 12;

/// Where a cluster address goes on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// A fixed loopback port.
    Port(u16),
    /// The SMTP sink's port (chosen at start).
    Smtp,
    /// The PostgreSQL stand-in's port (chosen at start).
    Postgres,
}

/// The one table from cluster Service (name, namespace, port) to loopback. Services of both
/// releases that our configuration addresses; anything else is "no such Service".
pub const LOOPBACK: &[(&str, &str, u16, Local)] = &[
    same_port(topology::API_GATEWAY, "organism"),
    same_port(topology::HEART, "organism"),
    same_port(topology::BRAIN, "organism"),
    same_port(topology::USER_SERVICE, "organism"),
    same_port(topology::HEALTH_MONITOR, "organism"),
    same_port(topology::AUTO_HEALER, "organism"),
    same_port(topology::ALERT_SERVICE, "organism"),
    ("postgres", "organism", 5432, Local::Postgres),
    (
        "kube-prometheus-stack-prometheus",
        "monitoring",
        topology::PROMETHEUS.port,
        Local::Port(topology::PROMETHEUS.port),
    ),
    (
        "kube-prometheus-stack-alertmanager",
        "monitoring",
        topology::ALERTMANAGER.port,
        Local::Port(topology::ALERTMANAGER.port),
    ),
    ("mailpit", "monitoring", 1025, Local::Smtp),
    // Nothing listens there locally: telemetry export degrades (the services keep running).
    (
        "opentelemetry-collector",
        "monitoring",
        4317,
        Local::Port(4317),
    ),
    (
        "opentelemetry-collector",
        "monitoring",
        4318,
        Local::Port(4318),
    ),
];

/// A [`LOOPBACK`] row: `service` in `namespace`, on the same port on loopback.
const fn same_port(
    service: topology::Service,
    namespace: &'static str,
) -> (&'static str, &'static str, u16, Local) {
    (
        service.name,
        namespace,
        service.port,
        Local::Port(service.port),
    )
}

/// What each service does instead of calling the Kubernetes API (its local platform mode),
/// added to the rendered environment.
pub const LOCAL_PLATFORM: &[(&str, &str, &str, &str)] = &[
    (
        "health-monitor",
        "HEALTH_MONITOR_MODE",
        "local",
        "watches of pods/nodes/workloads, API server health, pod /readyz probes -> HTTP probes of the seven services",
    ),
    (
        "auto-healer",
        "AUTO_HEALER_MODE",
        "local",
        "pod deletes, rollouts, scaling, node actions -> restarts through the launcher; Lease/ConfigMap state -> files",
    ),
    (
        "alert-service",
        "ALERT_SERVICE_KUBERNETES",
        "false",
        "enrichment from pods/log and events -> none (links only)",
    ),
];

/// A wiring fault the self-test injects into the render; each must fail a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breakage {
    /// auto-healer's `AUTO_HEALER_TOKEN` renamed: the token is required, so the healer stops at
    /// start with a configuration error (exit code 2) naming the variable.
    WrongEnvName,
    /// Alertmanager's auto-healer receiver points at a Service that does not exist.
    MissingService,
    /// The webhook token Secret Alertmanager reads lacks the auto-healer's key.
    MissingToken,
    /// The route to the auto-healer matches nothing the alerts carry.
    NonMatchingReceiver,
}

impl Breakage {
    /// What the failing scenario must say: the breakage was caught for its own reason.
    pub fn expected_failure(self) -> &'static str {
        match self {
            Breakage::WrongEnvName => "auto-healer did not become ready (exited (2))",
            Breakage::MissingService => "not a Service of the deployment",
            Breakage::MissingToken => "has no key auto-healer",
            Breakage::NonMatchingReceiver => "was not restarted",
        }
    }

    /// Every breakage.
    pub const ALL: [Breakage; 4] = [
        Breakage::WrongEnvName,
        Breakage::MissingService,
        Breakage::MissingToken,
        Breakage::NonMatchingReceiver,
    ];
}

/// The rendered manifests of both releases.
#[derive(Debug, Clone)]
pub struct Render {
    /// Every document (organism, then kube-prometheus-stack).
    pub docs: Vec<Value>,
}

fn helm() -> anyhow::Result<String> {
    let out = Command::new("bash")
        .args([
            "-c",
            ". ci/lib/tools.sh && ensure_helm >&2 && command -v helm",
        ])
        .current_dir(root())
        .output()
        .context("running ci/lib/tools.sh ensure_helm")?;
    if !out.status.success() {
        bail!(
            "ensure_helm failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn helm_template(helm: &str, args: &[&str]) -> anyhow::Result<Vec<Value>> {
    let out = Command::new(helm)
        .arg("template")
        .args(args)
        .current_dir(root())
        .output()
        .with_context(|| format!("helm template {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "helm template {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc)?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// Renders both releases as helmfile.yaml declares them.
pub fn render() -> anyhow::Result<Render> {
    let helm = helm()?;
    let kps = root().join("../shared/charts/kube-prometheus-stack-88.5.3.tgz");
    if !kps.exists() {
        bail!(
            "{} is missing (../shared/charts holds the upstream charts)",
            kps.display()
        );
    }
    let mut docs = helm_template(
        &helm,
        &[
            "organism",
            "k8s/charts/organism",
            "-n",
            "organism",
            "-f",
            "k8s/values/organism-kind.yaml",
        ],
    )?;
    docs.extend(helm_template(
        &helm,
        &[
            "kube-prometheus-stack",
            &kps.display().to_string(),
            "-n",
            "monitoring",
            "-f",
            "k8s/values/kube-prometheus-stack.yaml",
        ],
    )?);
    Ok(Render { docs })
}

impl Render {
    fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.docs.iter().filter(move |d| d["kind"] == kind)
    }

    fn named(&self, kind: &str, name: &str) -> Option<&Value> {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
    }

    fn named_mut(&mut self, kind: &str, name: &str) -> Option<&mut Value> {
        self.docs
            .iter_mut()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
    }

    /// Injects a wiring fault (self-test).
    pub fn break_it(&mut self, b: Breakage) -> anyhow::Result<()> {
        match b {
            Breakage::WrongEnvName => {
                let d = self
                    .named_mut("Deployment", "auto-healer")
                    .ok_or_else(|| anyhow!("no auto-healer Deployment"))?;
                for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
                    .as_array_mut()
                    .into_iter()
                    .flatten()
                {
                    if e["name"] == "AUTO_HEALER_TOKEN" {
                        e["name"] = json!("AUTO_HEALER_TOKN");
                    }
                }
            }
            Breakage::MissingService | Breakage::NonMatchingReceiver => {
                let mut am = self.alertmanager_yaml()?;
                if b == Breakage::MissingService {
                    for r in am["receivers"].as_array_mut().into_iter().flatten() {
                        for w in r["webhook_configs"].as_array_mut().into_iter().flatten() {
                            if let Some(u) = w["url"].as_str() {
                                w["url"] = json!(u.replace("auto-healer.", "autohealer."));
                            }
                        }
                    }
                } else {
                    for r in am["route"]["routes"].as_array_mut().into_iter().flatten() {
                        if r["receiver"] == "auto-healer" {
                            r["matchers"] = json!(["remediation = \"never-set\""]);
                        }
                    }
                }
                self.set_alertmanager_yaml(&am)?;
            }
            Breakage::MissingToken => {
                // As if Alertmanager's copy of the tokens lacked the auto-healer's key.
                self.docs.push(json!({
                    "kind": "Secret", "apiVersion": "v1",
                    "metadata": {"name": "alertmanager-webhook-tokens", "namespace": "monitoring"},
                    "stringData": {"alert-service": "only-this-one"}
                }));
            }
        }
        Ok(())
    }

    fn alertmanager_secret_name(&self) -> &'static str {
        "alertmanager-kube-prometheus-stack-alertmanager"
    }

    /// The rendered Alertmanager configuration.
    pub fn alertmanager_yaml(&self) -> anyhow::Result<Value> {
        let s = self
            .named("Secret", self.alertmanager_secret_name())
            .ok_or_else(|| anyhow!("the render has no Alertmanager configuration Secret"))?;
        let text = secret_data(s)
            .remove("alertmanager.yaml")
            .ok_or_else(|| anyhow!("no alertmanager.yaml in the Alertmanager Secret"))?;
        Ok(serde_yaml_ng::from_str(&text)?)
    }

    fn set_alertmanager_yaml(&mut self, am: &Value) -> anyhow::Result<()> {
        let name = self.alertmanager_secret_name();
        let text = serde_yaml_ng::to_string(am)?;
        let s = self
            .named_mut("Secret", name)
            .ok_or_else(|| anyhow!("no Alertmanager Secret"))?;
        s["data"] = json!({});
        s["stringData"] = json!({ "alertmanager.yaml": text });
        Ok(())
    }
}

fn secret_data(s: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in s["data"].as_object().into_iter().flatten() {
        if let Some(b) = v.as_str()
            && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b)
        {
            out.insert(k.clone(), String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    for (k, v) in s["stringData"].as_object().into_iter().flatten() {
        if let Some(t) = v.as_str() {
            out.insert(k.clone(), t.to_owned());
        }
    }
    out
}

/// Every Secret by name (a later document of the same name wins).
fn secrets(render: &Render) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut all = BTreeMap::new();
    for s in render.of_kind("Secret") {
        if let Some(name) = s["metadata"]["name"].as_str() {
            all.insert(name.to_owned(), secret_data(s));
        }
    }
    all
}

// ---------------------------------------------------------------------------------------------
// The loopback table

/// Resolves cluster addresses with [`LOOPBACK`].
#[derive(Debug, Clone, Copy)]
pub struct Resolver {
    /// The SMTP sink's port.
    pub smtp: u16,
    /// PostgreSQL's port.
    pub postgres: u16,
}

/// `name.ns`, `name.ns.svc`, `name.ns.svc.cluster.local` → (name, ns); `None` for other hosts.
fn cluster_host(host: &str) -> Option<(&str, &str)> {
    let h = host
        .strip_suffix(".svc.cluster.local")
        .or_else(|| host.strip_suffix(".svc"))
        .unwrap_or(host);
    let (name, ns) = h.split_once('.')?;
    (!ns.contains('.') && !name.is_empty() && ["organism", "monitoring"].contains(&ns))
        .then_some((name, ns))
}

impl Resolver {
    /// The loopback port of a cluster address, or an error naming what is missing.
    pub fn port(&self, host: &str, port: u16) -> anyhow::Result<Option<u16>> {
        let Some((name, ns)) = cluster_host(host) else {
            return Ok(None);
        };
        let local = LOOPBACK
            .iter()
            .find(|(n, s, p, _)| *n == name && *s == ns && *p == port)
            .map(|(_, _, _, l)| *l)
            .ok_or_else(|| {
                anyhow!(
                    "{host}:{port} is not a Service of the deployment (not in the loopback table)"
                )
            })?;
        Ok(Some(match local {
            Local::Port(p) => p,
            Local::Smtp => self.smtp,
            Local::Postgres => self.postgres,
        }))
    }

    /// A URL with its cluster `host:port` replaced by `127.0.0.1:<loopback port>`.
    pub fn url(&self, text: &str) -> anyhow::Result<String> {
        let Ok(mut url) = reqwest::Url::parse(text) else {
            return Ok(text.to_owned());
        };
        let Some(host) = url.host_str().map(str::to_owned) else {
            return Ok(text.to_owned());
        };
        let Some(port) = url.port_or_known_default() else {
            return Ok(text.to_owned());
        };
        match self.port(&host, port)? {
            Some(p) => {
                url.set_host(Some("127.0.0.1"))
                    .map_err(|e| anyhow!("{text}: {e}"))?;
                url.set_port(Some(p))
                    .map_err(|()| anyhow!("{text}: port"))?;
                let mut out = String::from(url);
                if !text.ends_with('/') && out.ends_with('/') && !text.contains("/?") {
                    // Url adds a trailing slash to an empty path; keep the rendered form.
                    out.pop();
                }
                Ok(out)
            }
            None => Ok(text.to_owned()),
        }
    }

    /// Rewrites URLs and `host:`/`port:` pairs anywhere in a YAML/JSON value.
    pub fn value(&self, v: &mut Value) -> anyhow::Result<()> {
        match v {
            Value::String(s) if s.contains("://") => *s = self.url(s)?,
            Value::Array(a) => {
                for x in a {
                    self.value(x)?;
                }
            }
            Value::Object(o) => {
                if let (Some(Value::String(h)), Some(p)) = (o.get("host"), o.get("port"))
                    && let Some(p) = p.as_u64().and_then(|p| u16::try_from(p).ok())
                    && let Some(local) = self.port(h, p)?
                {
                    o.insert("host".into(), json!("127.0.0.1"));
                    o.insert("port".into(), json!(local));
                }
                for x in o.values_mut() {
                    self.value(x)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Time

/// Seconds of a Prometheus/humantime duration (`90s`, `2m`, `1h30m`, `500ms` → 0).
pub fn duration_secs(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    let mut total = 0u64;
    let mut num = String::new();
    let mut chars = t.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0
            }
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 604_800,
            _ => return None,
        };
        total += n * unit;
        any = true;
    }
    (any && num.is_empty()).then_some(total)
}

/// A duration divided by [`TIME_SCALE`], at least 1 s, as `Ns`.
pub fn scaled(secs: u64) -> String {
    format!("{}s", (secs / TIME_SCALE).max(1))
}

/// The rule text with every `for:` value and every `[range]` / `[range:step]` scaled.
pub fn scale_promql(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let inner = &after[..close];
        let parts: Vec<&str> = inner.split(':').collect();
        let scaled_parts: Option<Vec<String>> = parts
            .iter()
            .map(|p| duration_secs(p).filter(|_| !p.is_empty()).map(scaled))
            .collect();
        match scaled_parts {
            Some(s) if parts.len() <= 2 => out.push_str(&format!("[{}]", s.join(":"))),
            _ => out.push_str(&format!("[{inner}]")),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The rendered PrometheusRule groups with [`TIME_SCALE`] applied.
pub fn scaled_rule_groups(render: &Render) -> anyhow::Result<Value> {
    let mut groups = Vec::new();
    for r in render.of_kind("PrometheusRule") {
        if r["metadata"]["namespace"] != "organism" && r["metadata"]["name"] != "organism" {
            // kube-prometheus-stack's own rules need kube-state-metrics, node-exporter, ...
            continue;
        }
        for g in r["spec"]["groups"].as_array().into_iter().flatten() {
            let mut g = g.clone();
            for rule in g["rules"].as_array_mut().into_iter().flatten() {
                if let Some(e) = rule["expr"].as_str() {
                    rule["expr"] = json!(scale_promql(e));
                }
                if let Some(f) = rule["for"].as_str().and_then(duration_secs) {
                    rule["for"] = json!(scaled(f));
                }
            }
            groups.push(g);
        }
    }
    if groups.is_empty() {
        bail!("the render has no organism PrometheusRule");
    }
    Ok(json!({ "groups": groups }))
}

/// Scales `*_secs` numbers and the humantime durations (`interval`, `after`, the healer's guard
/// windows and step timeouts, `group_*`, `repeat_interval`, ...) in a configuration file.
pub fn scale_config(v: &mut Value) {
    match v {
        Value::Array(a) => a.iter_mut().for_each(scale_config),
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                if k.ends_with("_secs")
                    && let Some(n) = x.as_u64()
                {
                    *x = json!((n / TIME_SCALE).max(1));
                    continue;
                }
                if [
                    "interval",
                    "after",
                    "escalation_after",
                    "escalation_window",
                    "cooldown",
                    "rate_limit_window",
                    "flap_window",
                    "verify_timeout",
                    "timeout",
                    "ttl",
                    "check_interval",
                    "group_wait",
                    "group_interval",
                    "repeat_interval",
                ]
                .contains(&k.as_str())
                    && let Some(s) = x.as_str().and_then(duration_secs)
                {
                    *x = json!(scaled(s));
                    continue;
                }
                scale_config(x);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Translation of the Deployments

/// One service as the render runs it.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    /// Deployment (= service) name.
    pub name: String,
    /// Its loopback port.
    pub port: u16,
    /// Arguments.
    pub args: Vec<String>,
    /// Environment, translated.
    pub env: Vec<(String, String)>,
}

fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = value.to_owned();
    for (k, v) in env {
        out = out.replace(&format!("$({k})"), v);
    }
    out
}

/// Translates every rendered Deployment of our seven services; writes their ConfigMap files
/// under `state/mounts/<service>/`.
pub fn plan_services(
    render: &Render,
    resolver: &Resolver,
    state: &Path,
) -> anyhow::Result<Vec<ServicePlan>> {
    let secrets = secrets(render);
    let mut plans = Vec::new();
    for topology::Service { name, port } in &topology::SERVICES {
        let d = render
            .named("Deployment", name)
            .ok_or_else(|| anyhow!("the render has no Deployment {name}"))?;
        let pod = &d["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let command: Vec<String> = c["command"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect();
        if command.first().map(String::as_str) != Some(&format!("/usr/local/bin/{name}")) {
            bail!("{name}: command {command:?} is not /usr/local/bin/{name}");
        }
        let mounts = mount_config_maps(render, resolver, state, name, pod)?;
        let mut env = translate_env(c, name, *port, &secrets, &mounts, resolver)?;
        add_local_platform(&mut env, name, state);
        let args = c["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(|a| expand(a, &env)))
            .collect();
        plans.push(ServicePlan {
            name: (*name).to_owned(),
            port: *port,
            args,
            env,
        });
    }
    Ok(plans)
}

/// The container's ConfigMap volumes as files under `state/mounts/<service>/<volume>/` (URLs
/// resolved to loopback, durations scaled): (mount path, directory).
fn mount_config_maps(
    render: &Render,
    resolver: &Resolver,
    state: &Path,
    name: &str,
    pod: &Value,
) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let c = &pod["containers"][0];
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        let vol_name = m["name"].as_str().unwrap_or_default();
        let mount = m["mountPath"].as_str().unwrap_or_default();
        let Some(vol) = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == vol_name)
        else {
            bail!("{name}: volumeMount {vol_name} has no volume");
        };
        let dir = state.join("mounts").join(name).join(vol_name);
        std::fs::create_dir_all(&dir)?;
        if let Some(cm) = vol["configMap"]["name"].as_str() {
            let cm_doc = render
                .named("ConfigMap", cm)
                .ok_or_else(|| anyhow!("{name}: ConfigMap {cm} is not rendered"))?;
            for (key, text) in cm_doc["data"].as_object().into_iter().flatten() {
                let text = text.as_str().unwrap_or_default();
                let mut v: Value = serde_yaml_ng::from_str(text)
                    .with_context(|| format!("{name}: ConfigMap {cm} key {key}"))?;
                resolver
                    .value(&mut v)
                    .with_context(|| format!("{name}: ConfigMap {cm} key {key}"))?;
                scale_config(&mut v);
                std::fs::write(dir.join(key), serde_yaml_ng::to_string(&v)?)?;
            }
        }
        mounts.push((mount.to_owned(), dir));
    }
    Ok(mounts)
}

/// The container's environment, translated: field references to local values, Secret keys to
/// the rendered Secrets' data, listen addresses to loopback, mount paths to the files of
/// [`mount_config_maps`], cluster URLs to loopback.
fn translate_env(
    c: &Value,
    name: &str,
    port: u16,
    secrets: &BTreeMap<String, BTreeMap<String, String>>,
    mounts: &[(String, PathBuf)],
    resolver: &Resolver,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut env: Vec<(String, String)> = Vec::new();
    for e in c["env"].as_array().into_iter().flatten() {
        let key = e["name"].as_str().unwrap_or_default().to_owned();
        let value = if let Some(v) = e["value"].as_str() {
            expand(v, &env)
        } else if let Some(f) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match f {
                "metadata.name" => format!("{name}-local"),
                "metadata.namespace" => "organism".to_owned(),
                "spec.nodeName" => "localhost".to_owned(),
                "metadata.uid" => format!("00000000-0000-4000-8000-{:012}", port),
                other => bail!("{name}: env {key} from fieldRef {other} has no local value"),
            }
        } else if e["valueFrom"]["secretKeyRef"].is_object() {
            let r = &e["valueFrom"]["secretKeyRef"];
            let (s, k) = (
                r["name"].as_str().unwrap_or_default(),
                r["key"].as_str().unwrap_or_default(),
            );
            match secrets.get(s).and_then(|d| d.get(k)) {
                Some(v) => v.clone(),
                None if r["optional"] == true => continue,
                None => bail!(
                    "{name}: env {key} needs Secret {s} key {k}, which does not exist (CreateContainerConfigError)"
                ),
            }
        } else {
            bail!("{name}: env {key} has a source this mode does not know: {e}");
        };
        let mut value = value;
        if key == "LISTEN_ADDR"
            && let Some(p) = value.strip_prefix("0.0.0.0:")
        {
            value = format!("127.0.0.1:{p}");
        }
        for (mount, dir) in mounts {
            if let Some(rest) = value.strip_prefix(mount.as_str()) {
                value = format!("{}{rest}", dir.display());
            }
        }
        if value.contains("://") {
            value = resolver
                .url(&value)
                .with_context(|| format!("{name}: env {key}"))?;
        }
        env.push((key, value));
    }
    Ok(env)
}

/// What `name` does instead of calling the Kubernetes API ([`LOCAL_PLATFORM`]; the auto-healer
/// restarts through the launcher).
fn add_local_platform(env: &mut Vec<(String, String)>, name: &str, state: &Path) {
    for (svc, key, value, _) in LOCAL_PLATFORM {
        if *svc == name {
            env.push(((*key).to_owned(), (*value).to_owned()));
        }
    }
    if name == "auto-healer" {
        env.push(("LAUNCHER_URL".into(), format!("http://{CONTROL_ADDR}")));
        // The launcher stands in for the API server; its credential is this run's own.
        env.push((
            "LAUNCHER_TOKEN".into(),
            crate::up::tokens().launcher.clone(),
        ));
        env.push((
            "AUTO_HEALER_STATE_DIR".into(),
            state.join("auto-healer").display().to_string(),
        ));
    }
}

/// The Alertmanager configuration as run here: receivers through the loopback table, bearer
/// files from the Secrets Alertmanager mounts, route timings scaled, no template files.
pub fn alertmanager_config(
    render: &Render,
    resolver: &Resolver,
    dir: &Path,
) -> anyhow::Result<String> {
    let mut am = render.alertmanager_yaml()?;
    let secrets = secrets(render);
    resolver.value(&mut am).context("Alertmanager receivers")?;
    for r in am["receivers"].as_array_mut().into_iter().flatten() {
        for w in r["webhook_configs"].as_array_mut().into_iter().flatten() {
            let auth = &mut w["http_config"]["authorization"];
            if let Some(file) = auth["credentials_file"].as_str() {
                let rest = file
                    .strip_prefix("/etc/alertmanager/secrets/")
                    .ok_or_else(|| anyhow!("credentials_file {file} is not a mounted Secret"))?;
                let (secret, key) = rest
                    .split_once('/')
                    .ok_or_else(|| anyhow!("credentials_file {file}"))?;
                let value = secrets.get(secret).and_then(|s| s.get(key)).ok_or_else(|| {
                    anyhow!("Alertmanager's credentials_file {file}: Secret {secret} has no key {key}")
                })?;
                let local = dir.join(format!("{secret}-{key}"));
                std::fs::write(&local, value)?;
                auth["credentials_file"] = json!(local.display().to_string());
            }
        }
    }
    if let Some(o) = am.as_object_mut() {
        o.remove("templates");
    }
    scale_config(&mut am["route"]);
    Ok(serde_yaml_ng::to_string(&am)?)
}

/// Prometheus: 1 s scrapes of every rendered ServiceMonitor's Service, the scaled rules.
pub fn prometheus_config(render: &Render, rules: &Path) -> anyhow::Result<String> {
    let mut jobs = String::new();
    for sm in render.of_kind("ServiceMonitor") {
        if sm["metadata"]["namespace"] != "organism"
            && sm["metadata"]["labels"]["app.kubernetes.io/instance"] != "organism"
        {
            continue;
        }
        let Some(app) = sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"].as_str()
        else {
            continue;
        };
        let Some(port) = topology::port(app) else {
            continue;
        };
        jobs.push_str(&format!(
            "  - job_name: {app}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ));
    }
    if jobs.is_empty() {
        bail!("the render has no ServiceMonitor of ours");
    }
    Ok(format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  scrape_timeout: 800ms\n\
         rule_files:\n  - {}\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{}']\n\
         scrape_configs:\n{jobs}",
        rules.display(),
        topology::ALERTMANAGER.local_addr()
    ))
}

/// Creates the roles and databases the chart's database URLs name, in the stand-in PostgreSQL.
fn prepare_postgres(render: &Render, pg: &testbed::Postgres) -> anyhow::Result<()> {
    let secrets = secrets(render);
    let creds = secrets
        .get("postgres-credentials")
        .ok_or_else(|| anyhow!("the render has no Secret postgres-credentials"))?;
    let mut sql: Vec<String> = Vec::new();
    let mut roles = Vec::new();
    for (k, v) in creds {
        if !k.ends_with("-database-url") {
            continue;
        }
        let u = reqwest::Url::parse(v).with_context(|| format!("postgres-credentials {k}"))?;
        let user = u.username().to_owned();
        let pass = u.password().unwrap_or_default().replace('\'', "''");
        let db = u.path().trim_start_matches('/').to_owned();
        if !roles.contains(&user) {
            sql.push(format!("CREATE ROLE \"{user}\" LOGIN PASSWORD '{pass}'"));
            roles.push(user.clone());
        }
        sql.push(format!("CREATE DATABASE \"{db}\" OWNER \"{user}\""));
    }
    // One -c per statement: CREATE DATABASE cannot run inside psql's implicit transaction.
    let mut cmd = Command::new("psql");
    cmd.args([&pg.url(), "-v", "ON_ERROR_STOP=1", "-q"]);
    for statement in &sql {
        cmd.args(["-c", statement]);
    }
    let out = cmd.output().context("running psql")?;
    if !out.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Running it

/// The rendered deployment, running.
pub struct Running {
    /// The processes.
    pub launcher: Launcher,
    /// The launcher's control API (aborted by [`Running::stop`]).
    control: tokio::task::JoinHandle<()>,
    /// The translated services.
    pub plans: Vec<ServicePlan>,
    /// The SMTP sink standing in for Mailpit (held: it runs while this lives).
    _smtp: testbed::SmtpSink,
    /// The PostgreSQL standing in for the postgres StatefulSet.
    pub postgres: testbed::Postgres,
}

impl Running {
    /// Stops every process and the control API.
    pub async fn stop(self) {
        // The control API first: the healer must not restart what is being stopped.
        self.control.abort();
        let _ = self.control.await;
        self.launcher.stop_all().await;
    }

    fn env(&self, service: &str, key: &str) -> Option<&str> {
        self.plans
            .iter()
            .find(|p| p.name == service)?
            .env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Renders (with `breakage` injected), translates and starts everything.
pub async fn start(opts: &Options, breakage: Option<Breakage>) -> anyhow::Result<Running> {
    let mut render = render()?;
    if let Some(b) = breakage {
        render.break_it(b)?;
    }
    let state = &opts.state_dir;
    let _ = std::fs::remove_dir_all(state);
    std::fs::create_dir_all(state)?;
    let smtp = testbed::SmtpSink::start().await;
    let postgres = testbed::Postgres::start().await;
    prepare_postgres(&render, &postgres)?;
    let resolver = Resolver {
        smtp: smtp.port(),
        postgres: postgres.port(),
    };
    let plans = plan_services(&render, &resolver, state)?;
    let peers = PeerFiles::write(&render, &resolver, state)?;

    let launcher = Launcher::default();
    let control_task = spawn_control_api(&launcher).await?;
    let started: anyhow::Result<()> = async {
        start_processes(&launcher, opts, &peers, &plans).await?;
        wait_ready(&launcher, &plans).await
    }
    .await;
    if let Err(e) = started {
        // Whatever did start stops again: a failed start leaves nothing behind.
        control_task.abort();
        let _ = control_task.await;
        launcher.stop_all().await;
        return Err(e);
    }
    let reaper = launcher.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            reaper.reap();
        }
    });
    Ok(Running {
        launcher,
        control: control_task,
        plans,
        _smtp: smtp,
        postgres,
    })
}

/// Alertmanager's and Prometheus's files, written from the render.
struct PeerFiles {
    am_dir: PathBuf,
    am_config: PathBuf,
    prom_dir: PathBuf,
    prom_config: PathBuf,
}

impl PeerFiles {
    /// The rendered Alertmanager configuration and the rendered, time-scaled rules with a
    /// scrape job per rendered ServiceMonitor, under `state`.
    fn write(render: &Render, resolver: &Resolver, state: &Path) -> anyhow::Result<Self> {
        let am_dir = state.join("alertmanager");
        std::fs::create_dir_all(&am_dir)?;
        let am_config = am_dir.join("alertmanager.yml");
        std::fs::write(&am_config, alertmanager_config(render, resolver, &am_dir)?)?;
        let prom_dir = state.join("prometheus");
        std::fs::create_dir_all(&prom_dir)?;
        let rules = prom_dir.join("rules.yaml");
        std::fs::write(
            &rules,
            serde_yaml_ng::to_string(&scaled_rule_groups(render)?)?,
        )?;
        let prom_config = prom_dir.join("prometheus.yml");
        std::fs::write(&prom_config, prometheus_config(render, &rules)?)?;
        Ok(Self {
            am_dir,
            am_config,
            prom_dir,
            prom_config,
        })
    }
}

/// The launcher's control API on [`CONTROL_ADDR`] (the auto-healer restarts through it).
async fn spawn_control_api(launcher: &Launcher) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let control: std::net::SocketAddr = CONTROL_ADDR.parse()?;
    let control_launcher = launcher.clone();
    drop(
        tokio::net::TcpListener::bind(control)
            .await
            .with_context(|| format!("{CONTROL_ADDR} is busy"))?,
    );
    Ok(tokio::spawn(async move {
        if let Err(e) = launcher::serve_control(
            control_launcher,
            control,
            secrecy::SecretString::from(crate::up::tokens().launcher.clone()),
        )
        .await
        {
            eprintln!("launcher control API stopped: {e:#}");
        }
    }))
}

/// Alertmanager, Prometheus and every planned service.
async fn start_processes(
    launcher: &Launcher,
    opts: &Options,
    peers: &PeerFiles,
    plans: &[ServicePlan],
) -> anyhow::Result<()> {
    let am_port = topology::ALERTMANAGER.port;
    let prom_port = topology::PROMETHEUS.port;
    launcher
        .add(Spec {
            name: "alertmanager".into(),
            program: "prometheus-alertmanager".into(),
            args: vec![
                format!("--config.file={}", peers.am_config.display()),
                format!("--storage.path={}", peers.am_dir.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{am_port}"),
                "--cluster.listen-address=".into(),
            ],
            env: vec![],
            port: Some(am_port),
            echo: opts.echo,
        })
        .await?;
    launcher
        .add(Spec {
            name: "prometheus".into(),
            program: "prometheus".into(),
            args: vec![
                format!("--config.file={}", peers.prom_config.display()),
                format!(
                    "--storage.tsdb.path={}",
                    peers.prom_dir.join("data").display()
                ),
                format!("--web.listen-address=127.0.0.1:{prom_port}"),
                "--rules.alert.resend-delay=1s".into(),
            ],
            env: vec![],
            port: Some(prom_port),
            echo: opts.echo,
        })
        .await?;
    for p in plans {
        let program = up::binary(opts, &p.name);
        if !program.exists() {
            bail!("{} is missing: build it first", program.display());
        }
        launcher
            .add(Spec {
                name: p.name.clone(),
                program,
                args: p.args.clone(),
                env: p.env.clone(),
                port: Some(p.port),
                echo: opts.echo,
            })
            .await?;
    }
    Ok(())
}

/// Alertmanager, Prometheus and every planned service ready; a service that is not names its
/// launcher state.
async fn wait_ready(launcher: &Launcher, plans: &[ServicePlan]) -> anyhow::Result<()> {
    launcher::wait_http_ok(
        topology::ALERTMANAGER.port,
        "/-/ready",
        Duration::from_secs(30),
    )
    .await
    .context("Alertmanager did not start with the rendered configuration")?;
    launcher::wait_http_ok(
        topology::PROMETHEUS.port,
        "/-/ready",
        Duration::from_secs(30),
    )
    .await
    .context("Prometheus did not start with the rendered rules")?;
    for p in plans {
        if let Err(e) = launcher::wait_http_ok(p.port, "/readyz", Duration::from_secs(30)).await {
            launcher.reap();
            let state = launcher.status()["services"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["name"] == p.name.as_str())
                .and_then(|s| s["state"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "unknown".into());
            return Err(e.context(format!("{} did not become ready ({state})", p.name)));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// The from-chart scenarios.
pub const SCENARIOS: &[&str] = &[
    "heart-crash",
    "gateway-errors",
    "memory-leak",
    "database-outage",
    "digest",
];

async fn until<F, Fut>(timeout: Duration, mut probe: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if probe().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

async fn ready(http: &reqwest::Client, port: u16) -> bool {
    http.get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

async fn healer_actions_about(http: &reqwest::Client, service: &str) -> usize {
    let Ok(r) = http
        .get(format!(
            "{}/api/v1/actions?limit=200",
            topology::AUTO_HEALER.local_url()
        ))
        .send()
        .await
    else {
        return 0;
    };
    let v: Value = r.json().await.unwrap_or_default();
    v["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a.to_string().contains(service))
        .count()
}

/// heart crashes (`/chaos` with the rendered chaos token): health-monitor or Prometheus notice,
/// Alertmanager routes to the auto-healer by the rendered route with the rendered bearer file,
/// the healer restarts heart through the launcher, heart is ready again.
async fn heart_crash(run: &Running, http: &reqwest::Client) -> Result<String, String> {
    // The rendered wiring authenticates the healer's webhook: a caller without the token is
    // refused (it is Alertmanager's bearer file, from the same Secret, that gets through).
    let anonymous = http
        .post(format!(
            "{}/webhook/alertmanager",
            topology::AUTO_HEALER.local_url()
        ))
        .json(&json!({}))
        .send()
        .await
        .map_err(|e| format!("POST auto-healer webhook: {e}"))?
        .status();
    if !matches!(anonymous.as_u16(), 401 | 403) {
        return Err(format!(
            "the auto-healer answered {anonymous} to a webhook without a token: no AUTO_HEALER_TOKEN in effect"
        ));
    }
    let token = run
        .env("heart", "CHAOS_TOKEN")
        .ok_or("heart has no CHAOS_TOKEN")?
        .to_owned();
    let before = run.launcher.pid("heart");
    let t0 = Instant::now();
    let r = http
        .post(format!("{}/chaos", topology::HEART.local_url()))
        .bearer_auth(&token)
        .json(&json!({"crash_after_s": 1}))
        .send()
        .await
        .map_err(|e| format!("POST /chaos: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("POST /chaos answered {}", r.status()));
    }
    let healed = until(Duration::from_secs(60), || async {
        let pid = run.launcher.pid("heart");
        pid.is_some() && pid != before && ready(http, topology::HEART.port).await
    })
    .await
    .ok_or("heart was not restarted and ready within 60 s")?;
    let acted = healer_actions_about(http, "heart").await;
    if acted == 0 {
        return Err("the auto-healer recorded no action about heart".into());
    }
    Ok(format!(
        "heart restarted by the healer and ready {:.1} s after the crash was injected ({:.1} s wall)",
        healed.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    ))
}

async fn firing(http: &reqwest::Client, alertname: &str) -> bool {
    let Ok(r) = http
        .get(format!(
            "{}/api/v2/alerts",
            topology::ALERTMANAGER.local_url()
        ))
        .query(&[("filter", format!("alertname=\"{alertname}\""))])
        .send()
        .await
    else {
        return false;
    };
    let v: Value = r.json().await.unwrap_or_default();
    v.as_array().is_some_and(|a| !a.is_empty())
}

async fn healer_text(http: &reqwest::Client) -> String {
    match http
        .get(format!(
            "{}/api/v1/actions?limit=200",
            topology::AUTO_HEALER.local_url()
        ))
        .send()
        .await
    {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// heart leaks (16 MiB/s): the rendered ServiceMemoryLeak (restart-pod) makes the healer restart
/// it; the leak comes back in the new process (as a leak in the code would): the rendered
/// ServiceMemoryLeakPersists (remediation=raise-memory, finding=oom-imminent) fires and the
/// healer's rendered policy takes its raise-memory-limit step (which has no local equivalent:
/// the decision names it and skips).
async fn memory_leak(run: &Running, http: &reqwest::Client) -> Result<String, String> {
    let token = run
        .env("heart", "CHAOS_TOKEN")
        .ok_or("heart has no CHAOS_TOKEN")?
        .to_owned();
    let leak = |token: String| async move {
        http.post(format!("{}/chaos", topology::HEART.local_url()))
            .bearer_auth(token)
            .json(&json!({"leak_mb_per_s": 16}))
            .send()
            .await
            .map_err(|e| format!("POST /chaos: {e}"))
            .and_then(|r| {
                r.status()
                    .is_success()
                    .then_some(())
                    .ok_or(format!("POST /chaos answered {}", r.status()))
            })
    };
    let before = run.launcher.pid("heart");
    leak(token.clone()).await?;
    let restarted = until(Duration::from_secs(90), || async {
        let pid = run.launcher.pid("heart");
        pid.is_some() && pid != before && ready(http, topology::HEART.port).await
    })
    .await
    .ok_or("ServiceMemoryLeak did not get heart restarted within 90 s")?;
    leak(token.clone()).await?;
    let persists = until(Duration::from_secs(90), || async {
        firing(http, "ServiceMemoryLeakPersists").await
    })
    .await
    .ok_or("ServiceMemoryLeakPersists did not fire within 90 s of the leak returning")?;
    let raised = until(Duration::from_secs(30), || async {
        healer_text(http).await.contains("raise-memory")
    })
    .await;
    // Heal: the leak off, the leaked memory freed.
    let _ = http
        .delete(format!("{}/chaos", topology::HEART.local_url()))
        .bearer_auth(&token)
        .send()
        .await;
    raised.ok_or("the healer took no raise-memory step on ServiceMemoryLeakPersists")?;
    Ok(format!(
        "restarted {:.1} s after the leak, the leak returned, ServiceMemoryLeakPersists after {:.1} s, raise-memory step decided",
        restarted.as_secs_f64(),
        persists.as_secs_f64()
    ))
}

/// The gateway fails half its requests under load: the rendered GatewayErrorRatioHigh
/// (critical) goes by the rendered route to alert-service, which mails it through the rendered
/// SMTP settings, escalates it after the rendered `escalation_after` (scaled) and takes the
/// acknowledgement from the link in its own mail (an Alertmanager silence).
async fn gateway_errors(run: &Running, http: &reqwest::Client) -> Result<String, String> {
    let token = run
        .env("api-gateway", "CHAOS_TOKEN")
        .ok_or("api-gateway has no CHAOS_TOKEN")?
        .to_owned();
    let r = http
        .post(format!("{}/chaos", topology::API_GATEWAY.local_url()))
        .bearer_auth(&token)
        .json(&json!({"error_rate": 0.5}))
        .send()
        .await
        .map_err(|e| format!("POST /chaos: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("POST /chaos answered {}", r.status()));
    }
    let load_http = http.clone();
    let load = tokio::spawn(async move {
        loop {
            let _ = load_http
                .get(format!("{}/beat", topology::API_GATEWAY.local_url()))
                .send()
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let outcome = mailed_escalated_acknowledged(run, http).await;
    load.abort();
    let _ = http
        .delete(format!("{}/chaos", topology::API_GATEWAY.local_url()))
        .bearer_auth(&token)
        .send()
        .await;
    outcome
}

/// The alert is mailed, escalated, and acknowledged through the mailed link (a silence in
/// Alertmanager): what took how long.
async fn mailed_escalated_acknowledged(
    run: &Running,
    http: &reqwest::Client,
) -> Result<String, String> {
    const ALERT: &str = "GatewayErrorRatioHigh";
    let mails = |pred: fn(&str) -> bool| {
        run._smtp
            .messages()
            .into_iter()
            .filter(|m| {
                m.subject
                    .as_deref()
                    .is_some_and(|s| s.contains(ALERT) && pred(s))
            })
            .collect::<Vec<_>>()
    };
    let first = until(Duration::from_secs(90), || async {
        !mails(|s| !s.contains("ESCALATED")).is_empty()
    })
    .await
    .ok_or("no email for GatewayErrorRatioHigh within 90 s")?;
    let escalated = until(Duration::from_secs(150), || async {
        !mails(|s| s.contains("ESCALATED")).is_empty()
    })
    .await
    .ok_or("GatewayErrorRatioHigh was not escalated within 150 s of its email")?;
    let text = mails(|_| true)
        .into_iter()
        .map(|m| m.text)
        .collect::<Vec<_>>()
        .join("\n");
    let link = ack_link(&text)?;
    let r = http
        .post(&link)
        .json(&json!({"by": "from-chart scenario"}))
        .send()
        .await
        .map_err(|e| format!("POST {link}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!(
            "the acknowledge link {link} answered {}",
            r.status()
        ));
    }
    let silenced = until(Duration::from_secs(20), || async {
        let Ok(r) = http
            .get(format!(
                "{}/api/v2/silences",
                topology::ALERTMANAGER.local_url()
            ))
            .send()
            .await
        else {
            return false;
        };
        let v: Value = r.json().await.unwrap_or_default();
        v.as_array()
            .into_iter()
            .flatten()
            .any(|s| s["status"]["state"] == "active" && s.to_string().contains(ALERT))
    })
    .await
    .ok_or("the acknowledgement made no active silence in Alertmanager")?;
    Ok::<_, String>(format!(
        "email after {:.1} s, escalated {:.1} s later, acknowledged through the mailed link (silence in {:.1} s)",
        first.as_secs_f64(),
        escalated.as_secs_f64(),
        silenced.as_secs_f64()
    ))
}

/// The acknowledge link in a mail's text.
fn ack_link(text: &str) -> Result<String, String> {
    let at = text
        .find("/api/v1/alerts/")
        .ok_or("the email carries no acknowledge link")?;
    let start = text[..at].rfind("http").ok_or("no ack URL")?;
    let end = text[start..]
        .find(|c: char| c.is_whitespace() || c == '>' || c == ')' || c == '"')
        .map_or(text.len(), |e| start + e);
    Ok(text[start..end].to_owned())
}

/// The digest arrives on the chart's schedule (`digest.interval`, scaled; sent at each interval
/// boundary) by the rendered channels, and lists the healer's actions (alert-service reads them
/// from the rendered `AUTO_HEALER_URL`). Run after scenarios in which the healer acted.
async fn digest(run: &Running) -> Result<String, String> {
    let config = run
        .env("alert-service", "ALERT_SERVICE_CONFIG")
        .ok_or("alert-service has no ALERT_SERVICE_CONFIG")?;
    let file: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(config).map_err(|e| format!("{config}: {e}"))?,
    )
    .map_err(|e| format!("{config}: {e}"))?;
    let interval = file["digest"]["interval"]
        .as_str()
        .and_then(duration_secs)
        .ok_or("the rendered alert-service configuration schedules no digest")?;
    // The first boundary may fall before the healer acted: allow two intervals.
    let found = until(Duration::from_secs(2 * interval + 30), || async {
        run._smtp.messages().iter().any(|m| {
            m.subject
                .as_deref()
                .is_some_and(|s| s.to_ascii_lowercase().contains("digest"))
                && m.text.contains("Auto-healer:")
                && m.text.contains("restart-service")
        })
    })
    .await
    .ok_or(format!(
        "no digest listing the healer's restart-service actions within {} s (interval {interval} s)",
        2 * interval + 30
    ))?;
    Ok(format!(
        "digest (every {interval} s, the chart's 1h scaled) with the healer's actions after {:.0} s more",
        found.as_secs_f64()
    ))
}

/// PostgreSQL stops: user-service turns not ready, a finding names the database, the healer
/// does not restart user-service; PostgreSQL back: user-service ready again.
async fn database_outage(run: &mut Running, http: &reqwest::Client) -> Result<String, String> {
    let before = run.launcher.pid("user-service");
    run.postgres.stop().await;
    let down = until(Duration::from_secs(30), || async {
        !ready(http, topology::USER_SERVICE.port).await
    })
    .await;
    let named = until(Duration::from_secs(45), || async {
        let Ok(r) = http
            .get(format!(
                "{}/api/v1/findings",
                topology::HEALTH_MONITOR.local_url()
            ))
            .send()
            .await
        else {
            return false;
        };
        let v: Value = r.json().await.unwrap_or_default();
        v["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| f["dependency"] == "database")
    })
    .await;
    // Give the healer every chance to (wrongly) act: two of its scaled cooldowns.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let same = run.launcher.pid("user-service") == before;
    run.postgres.start_again().await;
    let back = until(Duration::from_secs(60), || async {
        ready(http, topology::USER_SERVICE.port).await
    })
    .await;
    match (down, named, same, back) {
        (None, ..) => Err("user-service stayed ready with its database down".into()),
        (_, None, ..) => Err("no finding named the database".into()),
        (_, _, false, _) => Err("user-service was restarted during a database outage".into()),
        (_, _, _, None) => Err("user-service did not recover after the database came back".into()),
        (Some(d), Some(n), true, Some(b)) => Ok(format!(
            "not ready after {:.1} s, database named after {:.1} s, not restarted, ready {:.1} s after the database returned",
            d.as_secs_f64(),
            n.as_secs_f64(),
            b.as_secs_f64()
        )),
    }
}

async fn run_scenarios(
    opts: &Options,
    names: &[&str],
    breakage: Option<Breakage>,
) -> anyhow::Result<Vec<(String, Result<String, String>)>> {
    let mut run = match start(opts, breakage).await {
        Ok(r) => r,
        Err(e) => {
            println!("--- from-chart start FAILED: {e:#}");
            return Ok(names
                .iter()
                .map(|n| ((*n).to_owned(), Err(format!("start: {e:#}"))))
                .collect());
        }
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    // Let Prometheus fill its (scaled) rate windows before the first fault.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut results = Vec::new();
    for name in names {
        println!("--- from-chart scenario {name}");
        let r = match *name {
            "heart-crash" => heart_crash(&run, &http).await,
            "memory-leak" => memory_leak(&run, &http).await,
            "gateway-errors" => gateway_errors(&run, &http).await,
            "digest" => digest(&run).await,
            "database-outage" => database_outage(&mut run, &http).await,
            other => Err(format!("unknown scenario {other}")),
        };
        println!(
            "--- {name}: {}",
            match &r {
                Ok(s) => format!("passed: {s}"),
                Err(e) => format!("FAILED: {e}"),
            }
        );
        results.push(((*name).to_owned(), r));
    }
    run.stop().await;
    Ok(results)
}

fn options(args: &[&str], dir: &str) -> Options {
    Options {
        profile: Profile::from_args(args),
        no_build: args.contains(&"--no-build"),
        echo: std::env::var_os("SCENARIO_LOGS").is_some(),
        state_dir: root().join("target/from-chart").join(dir),
        overrides: Vec::new(),
    }
}

/// `cargo xtask from-chart ...`.
pub fn run(args: &[&str]) -> anyhow::Result<ExitCode> {
    let (sub, rest) = args.split_first().map_or(("up", &[][..]), |(s, r)| (*s, r));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match sub {
        "up" => run_up(&rt, rest),
        "scenario" => run_scenario(&rt, rest),
        "self-test" => run_self_test(&rt, rest),
        other => bail!("unknown from-chart command {other:?} (up, scenario, self-test)"),
    }
}

/// `from-chart up`: the rendered organism until Ctrl-C.
fn run_up(rt: &tokio::runtime::Runtime, rest: &[&str]) -> anyhow::Result<ExitCode> {
    let mut opts = options(rest, "up");
    opts.echo = !rest.contains(&"--quiet");
    up::build(&opts)?;
    rt.block_on(async {
        let run = start(&opts, None).await?;
        println!("\nthe rendered organism is up (Ctrl-C stops):");
        for (svc, key, value, what) in LOCAL_PLATFORM {
            println!("  {svc}: {key}={value}  ({what})");
        }
        for p in &run.plans {
            println!("  {:<15} http://127.0.0.1:{}", p.name, p.port);
        }
        println!(
            "  prometheus      {}  (rules: durations / {TIME_SCALE})",
            topology::PROMETHEUS.local_url()
        );
        println!(
            "  alertmanager    {}  (the rendered routes and receivers)",
            topology::ALERTMANAGER.local_url()
        );
        let _ = tokio::signal::ctrl_c().await;
        run.stop().await;
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

/// `from-chart scenario [NAME..]`: the named scenarios (all by default) on the rendered system.
fn run_scenario(rt: &tokio::runtime::Runtime, rest: &[&str]) -> anyhow::Result<ExitCode> {
    let opts = options(rest, "scenario");
    let picked: Vec<&str> = rest
        .iter()
        .copied()
        .filter(|a| !a.starts_with("--"))
        .collect();
    let names: Vec<&str> = if picked.is_empty() {
        SCENARIOS.to_vec()
    } else {
        picked
    };
    up::build(&opts)?;
    let results = rt.block_on(run_scenarios(&opts, &names, None))?;
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    println!(
        "from-chart scenarios: {} passed, {failed} failed",
        results.len() - failed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `from-chart self-test`: each injected wiring fault must make heart-crash fail as expected.
fn run_self_test(rt: &tokio::runtime::Runtime, rest: &[&str]) -> anyhow::Result<ExitCode> {
    let opts = options(rest, "self-test");
    up::build(&opts)?;
    let mut missed = Vec::new();
    for b in Breakage::ALL {
        let only = std::env::var("FROM_CHART_BREAKAGE").ok();
        if only.as_deref().is_some_and(|o| o != format!("{b:?}")) {
            continue;
        }
        let results = rt.block_on(run_scenarios(&opts, &["heart-crash"], Some(b)))?;
        let caught = results
            .iter()
            .any(|(_, r)| r.as_ref().is_err_and(|e| e.contains(b.expected_failure())));
        println!(
            "self-test {b:?}: {}",
            if caught {
                format!("caught: heart-crash failed with {:?}", b.expected_failure())
            } else {
                format!(
                    "NOT caught (expected heart-crash to fail with {:?})",
                    b.expected_failure()
                )
            }
        );
        if !caught {
            missed.push(b);
        }
    }
    if missed.is_empty() {
        println!(
            "from-chart self-test: all {} breakages caught",
            Breakage::ALL.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("from-chart self-test: not caught: {missed:?}");
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_scale_by_one_factor() {
        assert_eq!(duration_secs("2m"), Some(120));
        assert_eq!(duration_secs("1h30m"), Some(5400));
        assert_eq!(duration_secs("500ms"), Some(0));
        assert_eq!(duration_secs("a-z0-9"), None);
        assert_eq!(scaled(120), "10s");
        assert_eq!(scaled(5), "1s");
        assert_eq!(
            scale_promql("rate(x[2m]) and changes(max(y)[15m:1m]) and z{pod=~\"a-[a-z0-9]+\"}"),
            "rate(x[10s]) and changes(max(y)[75s:5s]) and z{pod=~\"a-[a-z0-9]+\"}"
        );
        let mut cfg = json!({"guards": {"cooldown": "2m"}, "digest": {"interval": "1h"}, "escalation_after": "15m", "name": "x"});
        scale_config(&mut cfg);
        assert_eq!(cfg["guards"]["cooldown"], "10s");
        assert_eq!(cfg["digest"]["interval"], "300s");
        assert_eq!(cfg["escalation_after"], "75s");
    }

    #[test]
    fn the_loopback_table_maps_services_and_refuses_unknown_ones() {
        let r = Resolver {
            smtp: 2525,
            postgres: 15432,
        };
        assert_eq!(
            r.url("http://auto-healer.organism.svc:8085/webhook/alertmanager")
                .unwrap(),
            "http://127.0.0.1:8085/webhook/alertmanager"
        );
        assert_eq!(
            r.url("http://heart.organism.svc.cluster.local:8081")
                .unwrap(),
            "http://127.0.0.1:8081"
        );
        assert_eq!(
            r.url("postgres://u:p@postgres.organism.svc.cluster.local:5432/users")
                .unwrap(),
            "postgres://u:p@127.0.0.1:15432/users"
        );
        assert_eq!(
            r.url("http://localhost:3000").unwrap(),
            "http://localhost:3000"
        );
        let e = r
            .url("http://autohealer.organism.svc:8085/webhook")
            .unwrap_err();
        assert!(e.to_string().contains("not a Service"), "{e}");
        assert!(
            r.url("http://heart.organism.svc:9999").is_err(),
            "wrong port"
        );
        let mut smtp = json!({"smtp": {"host": "mailpit.monitoring.svc", "port": 1025}});
        r.value(&mut smtp).unwrap();
        assert_eq!(smtp["smtp"], json!({"host": "127.0.0.1", "port": 2525}));
    }
}
