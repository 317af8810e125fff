//! Routes: which channels an alert goes to, by its labels (equality and anchored regex, as
//! Alertmanager matches) and its severity.
//!
//! Routes are tried in order; the first that matches decides, unless it says `continue: true`,
//! in which case later routes may add channels. An alert no route matches goes to
//! `default_channels` (none unless configured).

use std::collections::BTreeMap;
use std::fmt;

use alertmanager::LabelSet;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// Alert severity (`severity` label); anything else ranks below `info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// `info`
    Info,
    /// `warning`
    Warning,
    /// `critical`
    Critical,
}

impl Severity {
    /// The severity of a label value, if it is one of the three.
    pub fn of(value: &str) -> Option<Self> {
        match value {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// The label values at or above `self`.
    pub fn at_or_above(self) -> Vec<&'static str> {
        [Severity::Info, Severity::Warning, Severity::Critical]
            .into_iter()
            .filter(|s| *s >= self)
            .map(Severity::as_str)
            .collect()
    }
}

/// A route as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Label equality (`{}` or absent matches everything). A missing label equals `""`.
    #[serde(default, rename = "match")]
    pub match_eq: BTreeMap<String, String>,
    /// Label regexes, anchored at both ends.
    #[serde(default)]
    pub match_re: BTreeMap<String, String>,
    /// Only alerts at or above this severity.
    #[serde(default)]
    pub min_severity: Option<Severity>,
    /// Channel names.
    pub channels: Vec<String>,
    /// Keep trying later routes after this one matched.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
}

struct Route {
    match_eq: BTreeMap<String, String>,
    match_re: Vec<(String, Regex)>,
    min_severity: Option<Severity>,
    channels: Vec<String>,
    continue_: bool,
}

impl Route {
    fn matches(&self, labels: &LabelSet) -> bool {
        let get = |k: &str| labels.get(k).map(String::as_str).unwrap_or("");
        self.match_eq.iter().all(|(k, v)| get(k) == v)
            && self.match_re.iter().all(|(k, re)| re.is_match(get(k)))
            && self
                .min_severity
                .is_none_or(|min| Severity::of(get("severity")).is_some_and(|s| s >= min))
    }
}

/// Compiled routes.
pub struct Routes {
    routes: Vec<Route>,
    default_channels: Vec<String>,
}

impl fmt::Debug for Routes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Routes")
            .field("routes", &self.routes.len())
            .field("default_channels", &self.default_channels)
            .finish()
    }
}

impl Routes {
    /// Compiles the routes; a bad regex is reported as `routes[i].match_re.<label>: ...`.
    pub fn compile(
        specs: Vec<RouteSpec>,
        default_channels: Vec<String>,
    ) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let mut routes = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let mut match_re = Vec::new();
            for (label, re) in &spec.match_re {
                match Regex::new(&format!("^(?:{re})$")) {
                    Ok(r) => match_re.push((label.clone(), r)),
                    Err(e) => errors.push(format!(
                        "routes[{i}].match_re.{label}: invalid regex {re:?}: {}",
                        e.to_string().lines().last().unwrap_or_default()
                    )),
                }
            }
            routes.push(Route {
                match_eq: spec.match_eq,
                match_re,
                min_severity: spec.min_severity,
                channels: spec.channels,
                continue_: spec.continue_,
            });
        }
        if errors.is_empty() {
            Ok(Self {
                routes,
                default_channels,
            })
        } else {
            Err(errors)
        }
    }

    /// The channels for an alert with these labels, each once, in route order.
    pub fn channels_for(&self, labels: &LabelSet) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut matched = false;
        for route in &self.routes {
            if route.matches(labels) {
                matched = true;
                for c in &route.channels {
                    if !out.contains(c) {
                        out.push(c.clone());
                    }
                }
                if !route.continue_ {
                    break;
                }
            }
        }
        if !matched {
            out = self.default_channels.clone();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alertmanager::label_set as labels;
    use proptest::prelude::*;

    fn routes(yaml: &str) -> Routes {
        let specs: Vec<RouteSpec> = serde_yaml_ng::from_str(yaml).unwrap();
        Routes::compile(specs, vec!["fallback".into()]).unwrap()
    }

    #[test]
    fn first_match_wins_unless_continue() {
        let r = routes(
            r#"
- match: {severity: critical}
  match_re: {service: "heart|brain"}
  channels: [pager, slack]
  continue: true
- match: {severity: critical}
  channels: [slack, email]
- min_severity: warning
  channels: [teams]
"#,
        );
        assert_eq!(
            r.channels_for(&labels(&[("severity", "critical"), ("service", "heart")])),
            ["pager", "slack", "email"]
        );
        assert_eq!(
            r.channels_for(&labels(&[("severity", "critical"), ("service", "heartx")])),
            ["slack", "email"]
        );
        assert_eq!(
            r.channels_for(&labels(&[("severity", "warning")])),
            ["teams"]
        );
        assert_eq!(
            r.channels_for(&labels(&[("severity", "info")])),
            ["fallback"]
        );
        assert_eq!(r.channels_for(&labels(&[])), ["fallback"]);
    }

    #[test]
    fn missing_label_matches_empty_value() {
        let r = routes(
            "- match: {pod: \"\"}\n  channels: [nopod]\n- match_re: {pod: \".*\"}\n  channels: [any]\n",
        );
        assert_eq!(r.channels_for(&labels(&[])), ["nopod"]);
        assert_eq!(r.channels_for(&labels(&[("pod", "x")])), ["any"]);
    }

    #[test]
    fn bad_regex_names_route_and_label() {
        let specs: Vec<RouteSpec> =
            serde_yaml_ng::from_str("- match_re: {pod: \"(\"}\n  channels: [a]\n").unwrap();
        let e = Routes::compile(specs, vec![]).unwrap_err();
        assert!(
            e[0].starts_with("routes[0].match_re.pod: invalid regex \"(\""),
            "{e:?}"
        );
    }

    proptest! {
        #[test]
        fn regex_is_anchored(value in "[a-z]{0,8}") {
            let r = routes("- match_re: {service: \"heart\"}\n  channels: [h]\n");
            let got = r.channels_for(&labels(&[("service", &value)]));
            prop_assert_eq!(got == ["h"], value == "heart");
        }
    }
}
