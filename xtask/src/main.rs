//! Project automation for organism.
//!
//! ```text
//! cargo xtask up [--release] [--no-build] [--no-install]   all seven services on 127.0.0.1, with Prometheus and Alertmanager
//! cargo xtask test [--skip-k8s]            install test peers, fmt, clippy, every test, chart/stack checks, local runs
//! cargo xtask bench [--out FILE]           CPU per request, throughput, latency vs bare and by-the-book axum (release)
//! cargo xtask explore                      Grafana Explore offline: log lines ↔ spans, labels, links
//! cargo xtask scenario [NAME|all]          the closed loop: fault → alert → repair or refusal → notification
//! cargo xtask probe [--skip-load]          attack and load cases (issue 17) against a local system
//! cargo xtask from-chart up|scenario|self-test   the rendered chart's configuration, run here
//! cargo xtask kind-up | kind-e2e           the cluster path (needs Docker, kind, helm, helmfile)
//! ```
//!
//! `up`, `scenario`, `probe` and `from-chart` build and run the `dev` profile; `--release` picks
//! the optimised one.

#![allow(clippy::print_stderr, clippy::print_stdout)]

mod bench;
mod cargo;
mod explore;
mod from_chart;
mod launcher;
mod probe;
mod scenario;
mod test;
mod up;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn usage() -> ExitCode {
    let text = "usage: cargo xtask <command>\n\n\
        commands:\n  \
        up [--release] [--no-build] [--no-install] [--smoke]\n                                               run all services locally (Ctrl-C stops)\n  \
        test [--skip-k8s]                      the whole test suite, as CI runs it\n  \
        bench [--out FILE] [--secs N] [--rounds N]  CPU per request, req/s, latency vs bare and by-the-book axum\n  \
        explore                                Grafana Explore offline: log lines, spans, labels, links\n  \
        scenario [NAME|all] [--release]        fault scenarios, symptom to repair to notification\n  \
        probe [--release] [--skip-load]        attack and load cases: forged webhooks and acks, cross-site, slowloris, load\n  \
        from-chart [up|scenario|self-test]     run the rendered chart's configuration locally\n  \
        kind-up                                create a kind cluster and deploy everything\n  \
        kind-e2e                               end-to-end checks against that cluster\n";
    eprint!("{text}");
    ExitCode::from(2)
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn main() -> ExitCode {
    // reqwest is built without a crypto provider: every client below needs the process's one.
    crypto_provider::install();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        return usage();
    };
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let result = match command.as_str() {
        "test" => test::run(&rest),
        "up" => up::run(&rest),
        "bench" => bench::run(&rest),
        "explore" => explore::run(&rest),
        "scenario" => scenario::run(&rest),
        "probe" => probe::run(&rest),
        "from-chart" => from_chart::run(&rest),
        "kind-up" => script("scripts/kind-up.sh", &rest),
        "kind-e2e" => script("scripts/kind-e2e.sh", &rest),
        "-h" | "--help" | "help" => return usage(),
        other => {
            eprintln!("unknown command {other:?}");
            return usage();
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask {command}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn script(path: &str, args: &[&str]) -> anyhow::Result<ExitCode> {
    let status = std::process::Command::new("bash")
        .arg(root().join(path))
        .args(args)
        .current_dir(root())
        .status()?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
