//! Remediation policy: rules that match alert labels and name an ordered escalation of actions,
//! plus the guard settings. Read from YAML (`AUTO_HEALER_POLICY`, or the shipped
//! [`DEFAULT_POLICY`]); every error names the field path, e.g.
//! `rules[2].actions[0].kind: unknown variant ...`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use service_kit::duration::{deserialize as de_duration, serialize as ser_duration};

/// A humantime duration in the raw file (see [`de_duration`]).
#[derive(Debug, Clone, Copy)]
struct Humantime(std::time::Duration);

impl<'de> Deserialize<'de> for Humantime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de_duration(d).map(Humantime)
    }
}

/// The old whole-seconds keys (`(where, old, new)`; `where` is `guards`, `rule` or `action`),
/// now humantime keys without the `_secs` suffix.
const RENAMED_KEYS: [(&str, &str, &str); 7] = [
    ("guards", "cooldown_secs", "cooldown"),
    ("guards", "rate_limit_window_secs", "rate_limit_window"),
    ("guards", "flap_window_secs", "flap_window"),
    ("guards", "verify_timeout_secs", "verify_timeout"),
    ("rule", "escalation_window_secs", "escalation_window"),
    ("action", "timeout_secs", "timeout"),
    ("action", "ttl_secs", "ttl"),
];

/// The first old `*_secs` key in the policy, refused with the key and form to write instead
/// (`guards.cooldown_secs: 120` → `cooldown: 120s`). Text that is not YAML is left to the parser.
fn renamed_key(text: &str) -> Option<PolicyError> {
    use serde_yaml_ng::Value;
    let top: Value = serde_yaml_ng::from_str(text).ok()?;
    let refuse = |map: &Value, at: &str, place: &str| -> Option<PolicyError> {
        RENAMED_KEYS
            .iter()
            .filter(|(w, _, _)| *w == place)
            .find_map(|(_, old, new)| {
                let value = match map.get(*old)? {
                    Value::Number(n) => format!("{n}s"),
                    Value::String(t) => t.clone(),
                    _ => "<duration, e.g. 120s>".to_owned(),
                };
                Some(PolicyError::at(
                    format!("{at}{old}"),
                    format!("is no longer read: write {new}: {value}"),
                ))
            })
    };
    if let Some(g) = top.get("guards")
        && let Some(e) = refuse(g, "guards.", "guards")
    {
        return Some(e);
    }
    let rules = top.get("rules").and_then(Value::as_sequence)?;
    for (i, r) in rules.iter().enumerate() {
        if let Some(e) = refuse(r, &format!("rules[{i}]."), "rule") {
            return Some(e);
        }
        let actions = r.get("actions").and_then(Value::as_sequence);
        for (j, a) in actions.into_iter().flatten().enumerate() {
            if let Some(e) = refuse(a, &format!("rules[{i}].actions[{j}]."), "action") {
                return Some(e);
            }
        }
    }
    None
}

/// The policy shipped in the crate (`policy/default.yaml`).
pub const DEFAULT_POLICY: &str = include_str!("../policy/default.yaml");

/// A policy that could not be read: the field path and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PolicyError {
    /// Where, e.g. `rules[2].actions[0].kind` (`.` for the document).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl PolicyError {
    fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// The whole policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Guard settings.
    pub guards: GuardConfig,
    /// Rules, tried in order; the first that matches decides.
    pub rules: Vec<Rule>,
}

/// Settings of the guards; every guard is on by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    /// Decide and record, never mutate (`AUTO_HEALER_DRY_RUN` overrides it when set).
    pub dry_run: bool,
    /// Namespaces the healer may act in; empty means all not denied.
    pub namespaces_allow: Vec<String>,
    /// Namespaces the healer never acts in.
    pub namespaces_deny: Vec<String>,
    /// Annotation on a target (pod, workload, node) that, set to `"false"`, opts it out.
    pub opt_out_annotation: String,
    /// After acting on a target, a new alert for it is left alone this long.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub cooldown: std::time::Duration,
    /// At most this many actions in any `rate_limit_window`.
    pub rate_limit_max_actions: u32,
    /// The rate limit's window.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub rate_limit_window: std::time::Duration,
    /// At most this many actions executing (acting or verifying) at once.
    pub max_concurrent_actions: u32,
    /// The largest share of a workload's pods disrupted at once (at least one pod is always
    /// allowed, or a single-replica workload could never be healed).
    pub max_workload_disruption: f64,
    /// No node actions while more than this share of nodes is unhealthy (a storm is more likely
    /// a network or control-plane problem than bad nodes).
    pub max_unhealthy_node_share: f64,
    /// A subject with this many remediation attempts within `flap_window` — whatever their
    /// outcome: healed, failed, timed out or still pending — is left alone and escalated once.
    pub flap_max_repairs: u32,
    /// The flap guard's window.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub flap_window: std::time::Duration,
    /// How long to wait for a target to verify healthy after an action.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub verify_timeout: std::time::Duration,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            dry_run: false,
            namespaces_allow: Vec::new(),
            namespaces_deny: vec!["kube-system".to_owned()],
            opt_out_annotation: "organism.dev/auto-heal".to_owned(),
            cooldown: std::time::Duration::from_secs(120),
            rate_limit_max_actions: 10,
            rate_limit_window: std::time::Duration::from_secs(600),
            max_concurrent_actions: 2,
            max_workload_disruption: 0.34,
            max_unhealthy_node_share: 0.5,
            flap_max_repairs: 3,
            flap_window: std::time::Duration::from_secs(3600),
            verify_timeout: std::time::Duration::from_secs(120),
        }
    }
}

/// One rule: label matchers and an escalation of actions.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The rule's name (in audit records and the RemediationFailed alert).
    pub name: String,
    /// Labels that must equal these values.
    pub match_eq: BTreeMap<String, String>,
    /// Labels that must fully match these regular expressions (a missing label is `""`).
    pub match_re: BTreeMap<String, LabelRegex>,
    /// A repeat alert for the same target within this window takes the next step.
    pub escalation_window: std::time::Duration,
    /// The escalation, first step first.
    pub actions: Vec<Action>,
}

impl Rule {
    /// Whether every matcher holds for `labels`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_eq
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
            && self.match_re.iter().all(|(k, re)| {
                re.0.is_match(labels.get(k).map(String::as_str).unwrap_or(""))
            })
    }
}

/// A regular expression anchored at both ends, as Alertmanager and Prometheus anchor theirs.
#[derive(Clone)]
pub struct LabelRegex(regex::Regex, String);

impl LabelRegex {
    /// Compiles `pattern` anchored (`^(?:pattern)$`).
    pub fn new(pattern: &str) -> Result<Self, regex::Error> {
        Ok(Self(
            regex::Regex::new(&format!("^(?:{pattern})$"))?,
            pattern.to_owned(),
        ))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.1
    }
}

impl fmt::Debug for LabelRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.1)
    }
}

impl PartialEq for LabelRegex {
    fn eq(&self, other: &Self) -> bool {
        self.1 == other.1
    }
}

impl<'de> Deserialize<'de> for LabelRegex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        LabelRegex::new(&s).map_err(|e| serde::de::Error::custom(format!("invalid regex: {e}")))
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// Delete the alert's pod (its controller makes a new one).
    DeletePod,
    /// Rolling restart of the workload (as `kubectl rollout restart`).
    RolloutRestart,
    /// Roll a Deployment back to its previous ReplicaSet revision.
    Rollback,
    /// Raise the workload's replicas by `step` through `/scale`, never above `max_replicas`.
    ScaleUp {
        /// Replicas added.
        step: u32,
        /// The ceiling.
        max_replicas: u32,
    },
    /// Raise the workload's HorizontalPodAutoscaler `minReplicas` by `step`, at most `max_replicas`.
    RaiseHpaMin {
        /// Added to `minReplicas`.
        step: u32,
        /// The ceiling.
        max_replicas: u32,
    },
    /// Multiply a container's memory limit by `factor`, at most `max_bytes`.
    RaiseMemoryLimit {
        /// The multiplier (> 1).
        factor: f64,
        /// The ceiling in bytes.
        max_bytes: u64,
        /// The container; the alert's `container` label, else the first container.
        container: Option<String>,
    },
    /// Mark the node unschedulable.
    Cordon,
    /// Cordon, then evict the node's pods through the Eviction API (DaemonSet and mirror pods
    /// are skipped; PDB refusals are retried until `timeout`).
    Drain {
        /// How long to keep retrying evictions refused by a PodDisruptionBudget.
        #[serde(serialize_with = "ser_duration")]
        timeout: std::time::Duration,
    },
    /// Mark the node schedulable again.
    Uncordon,
    /// Delete failed/evicted pods and finished Jobs older than `ttl` in the namespace.
    Cleanup {
        /// Minimum age.
        #[serde(serialize_with = "ser_duration")]
        ttl: std::time::Duration,
    },
    /// Restart a local service process through the launcher (local mode).
    RestartService,
    /// Stop acting and notify (post a RemediationFailed alert).
    Notify,
}

impl Action {
    /// The bounded metric label / kebab-case name of the action.
    pub fn name(&self) -> &'static str {
        match self {
            Action::DeletePod => "delete-pod",
            Action::RolloutRestart => "rollout-restart",
            Action::Rollback => "rollback",
            Action::ScaleUp { .. } => "scale-up",
            Action::RaiseHpaMin { .. } => "raise-hpa-min",
            Action::RaiseMemoryLimit { .. } => "raise-memory-limit",
            Action::Cordon => "cordon",
            Action::Drain { .. } => "drain",
            Action::Uncordon => "uncordon",
            Action::Cleanup { .. } => "cleanup",
            Action::RestartService => "restart-service",
            Action::Notify => "notify",
        }
    }

    /// Whether the action restarts or replaces pods (blocked while a dependency fails).
    pub fn restarts(&self) -> bool {
        matches!(
            self,
            Action::DeletePod | Action::RolloutRestart | Action::Rollback | Action::RestartService
        )
    }

    /// Whether the action works on a node.
    pub fn is_node_action(&self) -> bool {
        matches!(
            self,
            Action::Cordon | Action::Drain { .. } | Action::Uncordon
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Wire shapes (what the YAML says), then validation into the types above.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    guards: GuardConfig,
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(default, rename = "match")]
    match_eq: BTreeMap<String, String>,
    #[serde(default)]
    match_re: BTreeMap<String, LabelRegex>,
    #[serde(default = "default_window", deserialize_with = "de_duration")]
    escalation_window: std::time::Duration,
    actions: Vec<RawAction>,
}

fn default_window() -> std::time::Duration {
    std::time::Duration::from_secs(1800)
}

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "kebab-case")]
enum ActionKind {
    DeletePod,
    RolloutRestart,
    Rollback,
    ScaleUp,
    RaiseHpaMin,
    RaiseMemoryLimit,
    Cordon,
    Drain,
    Uncordon,
    Cleanup,
    RestartService,
    Notify,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    kind: ActionKind,
    step: Option<u32>,
    max_replicas: Option<u32>,
    factor: Option<f64>,
    max: Option<String>,
    container: Option<String>,
    timeout: Option<Humantime>,
    ttl: Option<Humantime>,
}

impl Policy {
    /// Reads a policy from YAML; the error names the field path.
    pub fn from_yaml(text: &str) -> Result<Self, PolicyError> {
        if let Some(e) = renamed_key(text) {
            return Err(e);
        }
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let raw: RawPolicy = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // serde_yaml_ng may already start its message with the path.
            let inner = inner
                .strip_prefix(&format!("{path}: "))
                .map(str::to_owned)
                .unwrap_or(inner);
            // serde_yaml_ng appends "at line L column C"; keep it, it helps.
            PolicyError::at(path, inner)
        })?;
        raw.validate()
    }

    /// The shipped default policy.
    pub fn default_policy() -> Self {
        Self::from_yaml(DEFAULT_POLICY).expect("the shipped policy is valid (tested)")
    }

    /// The first rule matching `labels`, with its index.
    pub fn rule_for(&self, labels: &BTreeMap<String, String>) -> Option<&Rule> {
        self.rules.iter().find(|r| r.matches(labels))
    }
}

impl RawPolicy {
    fn validate(self) -> Result<Policy, PolicyError> {
        validate_guards(&self.guards)?;
        if self.rules.is_empty() {
            return Err(PolicyError::at("rules", "at least one rule is required"));
        }
        let rules = self
            .rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.validate(&format!("rules[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(Policy {
            guards: self.guards,
            rules,
        })
    }
}

/// The guard settings' own bounds (shares in (0, 1], counts at least 1, a named annotation).
fn validate_guards(g: &GuardConfig) -> Result<(), PolicyError> {
    for (name, share) in [
        ("max_workload_disruption", g.max_workload_disruption),
        ("max_unhealthy_node_share", g.max_unhealthy_node_share),
    ] {
        if !(share > 0.0 && share <= 1.0) {
            return Err(PolicyError::at(
                format!("guards.{name}"),
                format!("must be a share in (0, 1], got {share}"),
            ));
        }
    }
    if g.max_concurrent_actions == 0 {
        return Err(PolicyError::at(
            "guards.max_concurrent_actions",
            "must be at least 1",
        ));
    }
    if g.flap_max_repairs == 0 {
        return Err(PolicyError::at(
            "guards.flap_max_repairs",
            "must be at least 1",
        ));
    }
    if g.opt_out_annotation.is_empty() {
        return Err(PolicyError::at(
            "guards.opt_out_annotation",
            "must not be empty",
        ));
    }
    Ok(())
}

impl RawRule {
    /// The rule at `at` (e.g. `rules[0]`): a name, a matcher, and valid actions.
    fn validate(self, at: &str) -> Result<Rule, PolicyError> {
        if self.name.trim().is_empty() {
            return Err(PolicyError::at(format!("{at}.name"), "must not be empty"));
        }
        if self.match_eq.is_empty() && self.match_re.is_empty() {
            return Err(PolicyError::at(
                format!("{at}.match"),
                "a rule needs at least one matcher in `match` or `match_re`",
            ));
        }
        if self.actions.is_empty() {
            return Err(PolicyError::at(
                format!("{at}.actions"),
                "at least one action is required",
            ));
        }
        let actions = self
            .actions
            .into_iter()
            .enumerate()
            .map(|(j, a)| a.validate(&format!("{at}.actions[{j}]")))
            .collect::<Result<_, _>>()?;
        Ok(Rule {
            name: self.name,
            match_eq: self.match_eq,
            match_re: self.match_re,
            escalation_window: self.escalation_window,
            actions,
        })
    }
}

impl RawAction {
    /// The action at `at` (e.g. `rules[0].actions[1]`), with only its kind's settings.
    fn validate(self, at: &str) -> Result<Action, PolicyError> {
        use ActionKind as K;
        self.refuse_foreign_settings(at)?;
        Ok(match self.kind {
            K::DeletePod => Action::DeletePod,
            K::RolloutRestart => Action::RolloutRestart,
            K::Rollback => Action::Rollback,
            K::ScaleUp | K::RaiseHpaMin => self.scaling(at)?,
            K::RaiseMemoryLimit => self.memory_raise(at)?,
            K::Cordon => Action::Cordon,
            K::Drain => Action::Drain {
                timeout: self
                    .timeout
                    .map_or(std::time::Duration::from_secs(120), |t| t.0),
            },
            K::Uncordon => Action::Uncordon,
            K::Cleanup => Action::Cleanup {
                ttl: self
                    .ttl
                    .map_or(std::time::Duration::from_secs(3600), |t| t.0),
            },
            K::RestartService => Action::RestartService,
            K::Notify => Action::Notify,
        })
    }

    /// Refuses a setting given that is not one of this action kind's.
    fn refuse_foreign_settings(&self, at: &str) -> Result<(), PolicyError> {
        use ActionKind as K;
        let allowed: &[&str] = match self.kind {
            K::ScaleUp | K::RaiseHpaMin => &["step", "max_replicas"],
            K::RaiseMemoryLimit => &["factor", "max", "container"],
            K::Drain => &["timeout"],
            K::Cleanup => &["ttl"],
            _ => &[],
        };
        let given = [
            ("step", self.step.is_some()),
            ("max_replicas", self.max_replicas.is_some()),
            ("factor", self.factor.is_some()),
            ("max", self.max.is_some()),
            ("container", self.container.is_some()),
            ("timeout", self.timeout.is_some()),
            ("ttl", self.ttl.is_some()),
        ];
        match given
            .into_iter()
            .find(|(field, present)| *present && !allowed.contains(field))
        {
            Some((field, _)) => Err(PolicyError::at(
                format!("{at}.{field}"),
                "not a setting of this action kind",
            )),
            None => Ok(()),
        }
    }

    /// `scale-up` or `raise-hpa-min`: a step of at least 1 (default 1) up to `max_replicas`.
    fn scaling(self, at: &str) -> Result<Action, PolicyError> {
        let step = self.step.unwrap_or(1);
        if step == 0 {
            return Err(PolicyError::at(format!("{at}.step"), "must be at least 1"));
        }
        let max_replicas = self.max_replicas.ok_or_else(|| {
            PolicyError::at(
                format!("{at}.max_replicas"),
                "required for this action kind",
            )
        })?;
        Ok(if self.kind == ActionKind::ScaleUp {
            Action::ScaleUp { step, max_replicas }
        } else {
            Action::RaiseHpaMin { step, max_replicas }
        })
    }

    /// `raise-memory-limit`: a factor in (1, 10] (default 1.5) up to the `max` quantity.
    fn memory_raise(self, at: &str) -> Result<Action, PolicyError> {
        let factor = self.factor.unwrap_or(1.5);
        if !(factor > 1.0 && factor <= 10.0) {
            return Err(PolicyError::at(
                format!("{at}.factor"),
                format!("must be in (1, 10], got {factor}"),
            ));
        }
        let max = self
            .max
            .ok_or_else(|| PolicyError::at(format!("{at}.max"), "required for this action kind"))?;
        let max_bytes = parse_memory(&max).map_err(|m| PolicyError::at(format!("{at}.max"), m))?;
        Ok(Action::RaiseMemoryLimit {
            factor,
            max_bytes,
            container: self.container,
        })
    }
}

/// Parses a Kubernetes memory quantity (`512Mi`, `1Gi`, `1G`, `1e9`, `2048`) into bytes.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || format!("not a memory quantity: {text:?}");
    let split = t
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let mult: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "m" => 1e-3,
        _ => return Err(bad()),
    };
    let value: f64 = num.parse().map_err(|_| bad())?;
    if !value.is_finite() || value <= 0.0 {
        return Err(bad());
    }
    Ok((value * mult).ceil() as u64)
}

/// Formats bytes as a Kubernetes quantity, in `Mi` when whole, else plain bytes.
pub fn format_memory(bytes: u64) -> String {
    const MI: u64 = 1024 * 1024;
    if bytes.is_multiple_of(MI) {
        format!("{}Mi", bytes / MI)
    } else {
        bytes.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_secs_keys_are_refused_with_the_new_key_and_form() {
        let rule = "- name: a\n  match: {alertname: X}\n";
        let cases = [
            (
                format!(
                    "guards: {{cooldown_secs: 120}}\nrules:\n{rule}  actions: [{{kind: delete-pod}}]\n"
                ),
                "guards.cooldown_secs: is no longer read: write cooldown: 120s",
            ),
            (
                format!(
                    "guards: {{verify_timeout_secs: 15}}\nrules:\n{rule}  actions: [{{kind: delete-pod}}]\n"
                ),
                "guards.verify_timeout_secs: is no longer read: write verify_timeout: 15s",
            ),
            (
                format!(
                    "rules:\n{rule}  escalation_window_secs: 1800\n  actions: [{{kind: delete-pod}}]\n"
                ),
                "rules[0].escalation_window_secs: is no longer read: write escalation_window: 1800s",
            ),
            (
                format!("rules:\n{rule}  actions: [{{kind: drain, timeout_secs: 300}}]\n"),
                "rules[0].actions[0].timeout_secs: is no longer read: write timeout: 300s",
            ),
            (
                format!("rules:\n{rule}  actions: [{{kind: cleanup, ttl_secs: 3600}}]\n"),
                "rules[0].actions[0].ttl_secs: is no longer read: write ttl: 3600s",
            ),
        ];
        for (yaml, message) in cases {
            let e = Policy::from_yaml(&yaml).unwrap_err().to_string();
            assert!(e.contains(message), "{yaml}\n→ {e}");
        }
    }

    #[test]
    fn durations_are_humantime() {
        let p = Policy::from_yaml(
            "guards: {cooldown: 90s, flap_window: 1h 30m}\nrules:\n- name: a\n  match: {alertname: X}\n  \
             escalation_window: 10m\n  actions: [{kind: drain, timeout: 5m}, {kind: cleanup, ttl: 2h}]\n",
        )
        .unwrap();
        assert_eq!(p.guards.cooldown, std::time::Duration::from_secs(90));
        assert_eq!(p.guards.flap_window, std::time::Duration::from_secs(5400));
        assert_eq!(
            p.rules[0].escalation_window,
            std::time::Duration::from_secs(600)
        );
        assert_eq!(
            p.rules[0].actions,
            vec![
                Action::Drain {
                    timeout: std::time::Duration::from_secs(300)
                },
                Action::Cleanup {
                    ttl: std::time::Duration::from_secs(7200)
                }
            ]
        );
    }

    #[test]
    fn a_bare_number_duration_is_refused_with_the_form_to_write() {
        let e = Policy::from_yaml(
            "guards: {cooldown: 120}\nrules:\n- name: a\n  match: {alertname: X}\n  actions: [{kind: delete-pod}]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("guards.cooldown") && e.contains("write 120s"),
            "{e}"
        );
    }

    #[test]
    fn the_shipped_policy_is_valid_and_escalates() {
        let p = Policy::from_yaml(DEFAULT_POLICY).unwrap();
        let labels: BTreeMap<String, String> = [("remediation", "restart-pod"), ("alertname", "X")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let rule = p.rule_for(&labels).unwrap();
        assert_eq!(rule.name, "crashing-pod");
        let kinds: Vec<_> = rule.actions.iter().map(Action::name).collect();
        assert_eq!(
            kinds,
            ["delete-pod", "rollout-restart", "rollback", "notify"]
        );
        assert_eq!(p.guards.namespaces_deny, ["kube-system"]);
        assert!((p.guards.max_workload_disruption - 0.34).abs() < 1e-9);
    }

    #[test]
    fn errors_name_the_field_path() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "rules:\n- name: a\n  match: {alertname: X}\n  actions: [{kind: delete-pod}]\n- name: b\n  match: {alertname: Y}\n  actions: [{kind: delete-pod}]\n- name: c\n  match: {alertname: Z}\n  actions: [{kind: reboot-universe}]\n",
                "rules[2].actions[0].kind",
                "unknown variant `reboot-universe`",
            ),
            (
                "rules:\n- name: a\n  match_re: {severity: '(crit'}\n  actions: [{kind: delete-pod}]\n",
                "rules[0].match_re.severity",
                "invalid regex",
            ),
            (
                "rules:\n- name: a\n  match: {alertname: X}\n  actions: [{kind: scale-up}]\n",
                "rules[0].actions[0].max_replicas",
                "required",
            ),
            (
                "rules:\n- name: a\n  match: {alertname: X}\n  actions: [{kind: delete-pod, ttl: 3s}]\n",
                "rules[0].actions[0].ttl",
                "not a setting",
            ),
            (
                "rules:\n- name: a\n  match: {alertname: X}\n  actions: [{kind: raise-memory-limit, max: lots}]\n",
                "rules[0].actions[0].max",
                "not a memory quantity",
            ),
            (
                "guards: {max_workload_disruption: 1.5}\nrules:\n- name: a\n  match: {alertname: X}\n  actions: [{kind: notify}]\n",
                "guards.max_workload_disruption",
                "share",
            ),
            (
                "guards: {cooldown_for: 3s}\nrules: []\n",
                "guards.cooldown_for",
                "unknown field `cooldown_for`",
            ),
            (
                "rules:\n- name: a\n  actions: [{kind: notify}]\n",
                "rules[0].match",
                "at least one matcher",
            ),
            ("rules: [", "rules", "did not find expected node content"),
        ];
        for (yaml, path, message) in cases {
            let e = Policy::from_yaml(yaml).unwrap_err();
            assert_eq!(e.path, *path, "{e}");
            assert!(e.message.contains(message), "{e}");
        }
    }

    #[test]
    fn regex_matchers_are_anchored() {
        let p = Policy::from_yaml(
            "rules:\n- name: a\n  match_re: {severity: 'crit.*|warning'}\n  actions: [{kind: notify}]\n",
        )
        .unwrap();
        let l = |s: &str| -> BTreeMap<String, String> {
            [("severity".to_owned(), s.to_owned())]
                .into_iter()
                .collect()
        };
        assert!(p.rules[0].matches(&l("critical")));
        assert!(p.rules[0].matches(&l("warning")));
        assert!(!p.rules[0].matches(&l("not-warning")));
        assert!(!p.rules[0].matches(&BTreeMap::new()));
    }

    #[test]
    fn memory_quantities_are_read_in_kubernetes_units() {
        assert_eq!(parse_memory("1Gi").unwrap(), 1 << 30);
        assert_eq!(parse_memory("512Mi").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_memory("128974848").unwrap(), 128_974_848);
        assert_eq!(parse_memory("1e3").unwrap(), 1000);
    }

    #[test]
    fn a_negative_or_unknown_memory_quantity_is_refused() {
        assert!(parse_memory("-1Mi").is_err());
        assert!(parse_memory("12Qi").is_err());
    }

    #[test]
    fn whole_mebibytes_are_written_in_mi() {
        assert_eq!(format_memory(768 << 20), "768Mi");
    }
}
