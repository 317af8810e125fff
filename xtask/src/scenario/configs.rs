//! The files the scenarios run the services with: the healer's policy with short guards and
//! alert-service's routes to the SMTP sink and the pager.

use std::path::Path;

use crate::root;

/// The scenario policy's `flap_max_repairs`.
pub(super) const FLAP_MAX_REPAIRS: usize = 2;

pub(super) fn scenario_policy() -> String {
    let default = std::fs::read_to_string(root().join("services/auto-healer/policy/default.yaml"))
        .unwrap_or_default();
    let mut out = String::new();
    for line in default.lines() {
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        let replaced = if t.starts_with("cooldown:") {
            Some("cooldown: 3s".to_owned())
        } else if t.starts_with("rate_limit_max_actions:") {
            Some("rate_limit_max_actions: 5".to_owned())
        } else if t.starts_with("rate_limit_window:") {
            Some("rate_limit_window: 60s".to_owned())
        } else if t.starts_with("flap_max_repairs:") {
            Some(format!("flap_max_repairs: {FLAP_MAX_REPAIRS}"))
        } else if t.starts_with("flap_window:") {
            Some("flap_window: 300s".to_owned())
        } else if t.starts_with("verify_timeout:") {
            Some("verify_timeout: 15s".to_owned())
        } else if t.starts_with("escalation_window:") {
            Some("escalation_window: 1s".to_owned())
        } else {
            None
        };
        match replaced {
            Some(r) => out.push_str(&format!("{indent}{r}\n")),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

pub(super) fn alert_service_config(smtp_port: u16, pager_url: &str, state: &Path) -> String {
    format!(
        "routes:\n  - match: {{}}\n    channels: [email, log]\n\
         smtp:\n  host: 127.0.0.1\n  port: {smtp_port}\n  tls: none\n  from: organism@localhost\n  to: [oncall@localhost]\n\
         channels:\n  log:\n    kind: log\n    path: {}\n  pager:\n    kind: webhook\n    url: {pager_url}\n\
         escalation:\n  min_severity: warning\n  check_interval: 1s\n  tiers:\n    - after: 6s\n      channels: [pager]\n\
         delivery:\n  initial_backoff: 200ms\n  poll_interval: 100ms\n",
        state.join("notifications.log").display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scenario_policy_shortens_the_guards() {
        let p = scenario_policy();
        assert!(p.contains("cooldown: 3s"));
        assert!(p.contains("flap_max_repairs: 2"));
    }
}
