//! Property tests: the parsers never panic on any input, and the dependency rule holds
//! whatever order a finding is built in.

use health_monitor::classify::parse_health_checks;
use health_monitor::config::FileConfig;
use health_monitor::finding::{Finding, FindingKind, ObjectRef, Remediation, Severity};
use health_monitor::promql::parse_query_response;
use proptest::prelude::*;

const REMEDIATIONS: [Remediation; 6] = [
    Remediation::RestartPod,
    Remediation::RolloutRestart,
    Remediation::Rollback,
    Remediation::ScaleUp,
    Remediation::CordonDrain,
    Remediation::Cleanup,
];

proptest! {
    #[test]
    fn config_parser_never_panics_and_errors_name_a_field(text in ".{0,400}") {
        if let Err(e) = FileConfig::parse(&text, "f.yaml") {
            prop_assert!(!e.field.is_empty());
            prop_assert!(e.to_string().starts_with("f.yaml: "));
        }
    }

    #[test]
    fn config_parser_survives_yaml_shaped_noise(
        key in "(thresholds|checks|local|publish|receivers|namespaces)",
        value in "[ -~]{0,40}",
    ) {
        let _ = FileConfig::parse(&format!("{key}:\n  {value}\n"), "f.yaml");
    }

    #[test]
    fn health_check_parser_never_panics(text in "(\\[[+-]\\][a-z/-]{0,20}( [a-z: ]{0,20})?\n|[ -~]{0,30}\n){0,20}") {
        let checks = parse_health_checks(&text);
        prop_assert!(checks.len() <= text.lines().count());
        for c in checks {
            prop_assert!(!c.name.contains(' '));
        }
    }

    #[test]
    fn prometheus_answer_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_query_response(&bytes);
    }

    #[test]
    fn a_dependency_never_comes_with_a_restart(r in 0usize..6, dependency_first in any::<bool>(), dep in "[a-z]{1,10}") {
        let base = Finding::new(FindingKind::PodNotReady, Severity::Warning, ObjectRef::new("Pod", Some("ns"), "p"), "s", "d");
        let remediation = REMEDIATIONS[r];
        let f = if dependency_first {
            base.with_dependency(Some(dep.clone())).with_remediation(Some(remediation))
        } else {
            base.with_remediation(Some(remediation)).with_dependency(Some(dep.clone()))
        };
        let labels = f.alert_labels();
        prop_assert_eq!(labels.get("dependency"), Some(&dep));
        if remediation.is_restart() {
            prop_assert!(!labels.contains_key("remediation"));
        } else {
            prop_assert_eq!(labels.get("remediation").map(String::as_str), Some(remediation.as_str()));
        }
    }
}
