//! `promtool check metrics` on a `/metrics` body.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::process::{find_program, missing};

/// What `promtool check metrics` says of `text`: empty when the exposition is clean (valid, and
/// no lint findings such as a counter without `_total` or a missing HELP). Panics only when
/// promtool itself is missing or cannot be run.
pub fn promtool_check_metrics(text: &str) -> String {
    let program = find_program("promtool").unwrap_or_else(|| missing("promtool"));
    let mut child = Command::new(program)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    if let Some(mut stdin) = child.stdin.take() {
        // A write error means promtool stopped reading; its output says why.
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().expect("promtool runs to the end");
    let mut report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() && report.trim().is_empty() {
        report = format!("promtool exited with {}", out.status);
    }
    report.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_and_dirty_expositions() {
        let clean = "# HELP organ_beats_total Beats.\n# TYPE organ_beats_total counter\norgan_beats_total 3\n";
        assert_eq!(promtool_check_metrics(clean), "");
        let dirty = "# HELP organ_beats Beats.\n# TYPE organ_beats counter\norgan_beats 3\n";
        assert!(
            promtool_check_metrics(dirty).contains("_total"),
            "a counter without _total is a lint finding"
        );
    }
}
