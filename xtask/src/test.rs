//! `cargo xtask test`: the whole suite, exactly as CI runs it.
//!
//! Installs the real test peers when missing (quietly when they are there), then runs
//! formatting, clippy with warnings denied, every test of the workspace, the offline chart and
//! stack validation with their self-tests (including the render of every helmfile.yaml release
//! from the upstream charts and the checks on it), and a smoke run of `cargo xtask up`.

use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::Context as _;

use crate::{cargo, root};

struct Step {
    name: &'static str,
    command: Vec<String>,
}

fn step(name: &'static str, command: &[&str]) -> Step {
    Step {
        name,
        command: command.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// A step that runs another `cargo xtask` command (`cargo run --quiet --package xtask -- ARGS`).
fn xtask_step(name: &'static str, args: &[&str]) -> Step {
    let mut command = vec!["cargo", "run", "--quiet", "--package", "xtask", "--"];
    command.extend_from_slice(args);
    step(name, &command)
}

fn have_nextest() -> bool {
    cargo::command()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs the suite; `--skip-k8s` leaves out the chart and stack validation.
pub fn run(args: &[&str]) -> anyhow::Result<ExitCode> {
    let skip_k8s = args.contains(&"--skip-k8s");
    let mut steps = cargo_steps();
    if !skip_k8s {
        steps.extend(k8s_steps());
    }
    steps.extend(local_system_steps(skip_k8s));
    let results = run_steps(&steps)?;
    Ok(summary(&results))
}

/// Installing the test peers, then formatting, clippy, every test, doc tests and rustdoc's lints.
fn cargo_steps() -> Vec<Step> {
    let mut steps = vec![
        step("install test peers", &["bash", "ci/install-test-deps.sh"]),
        step(
            "cargo fmt --check",
            &["cargo", "fmt", "--all", "--", "--check"],
        ),
        step(
            "cargo clippy -D warnings",
            &[
                "cargo",
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
        ),
    ];
    if have_nextest() {
        steps.push(step(
            "cargo nextest run",
            &[
                "cargo",
                "nextest",
                "run",
                "--workspace",
                "--locked",
                "--no-fail-fast",
            ],
        ));
    } else {
        steps.push(step(
            "cargo test",
            &["cargo", "test", "--workspace", "--locked", "--no-fail-fast"],
        ));
    }
    steps.push(step(
        "doc tests",
        &["cargo", "test", "--workspace", "--locked", "--doc"],
    ));
    // Rustdoc's own lints (broken or private intra-doc links) on the public items.
    steps.push(step(
        "cargo doc -D warnings",
        &[
            "env",
            "RUSTDOCFLAGS=-D warnings",
            "cargo",
            "doc",
            "--workspace",
            "--no-deps",
            "--locked",
        ],
    ));
    steps
}

/// The offline chart and stack validation, each with its self-test.
fn k8s_steps() -> Vec<Step> {
    vec![
        // Runs its checks, then its self-test (injected faults must be caught).
        step("chart validation", &["bash", "ci/k8s/validate.sh"]),
        step("stack validation", &["bash", "ci/stack/validate.sh"]),
        step(
            "stack validation self-test",
            &["bash", "ci/stack/validate.sh", "--self-test"],
        ),
        // Every helmfile.yaml release rendered from ../shared/charts (once; the self-test
        // reuses the render) and checked across releases, then the injected breakages.
        step("stack render + verify", &["bash", "ci/stack/verify.sh"]),
        step(
            "stack render + verify self-test",
            &["bash", "ci/stack/verify.sh", "--self-test"],
        ),
    ]
}

/// The steps that run the local system: Explore offline, the scenarios, the probe suite, the
/// rendered chart's configuration (unless `skip_k8s`) and the `up` smoke run.
fn local_system_steps(skip_k8s: bool) -> Vec<Step> {
    let mut steps = vec![
        xtask_step("Grafana Explore (offline)", &["explore"]),
        xtask_step("closed-loop scenarios", &["scenario", "all"]),
        // Attack and load cases: nobody without a credential steers the system, load never
        // triggers a repair.
        xtask_step("probe (attack and load cases)", &["probe"]),
    ];
    if !skip_k8s {
        // The rendered chart's own configuration, run locally (xtask/src/from_chart.rs).
        for (name, sub) in [
            ("from-chart scenarios", "scenario"),
            ("from-chart self-test", "self-test"),
        ] {
            steps.push(xtask_step(name, &["from-chart", sub]));
        }
    }
    steps.push(xtask_step("cargo xtask up smoke", &["up", "--smoke"]));
    steps
}

/// Runs every step in order (stopping early only when installing the peers fails): (name,
/// passed, how long).
fn run_steps(steps: &[Step]) -> anyhow::Result<Vec<(&'static str, bool, std::time::Duration)>> {
    let mut results = Vec::new();
    for s in steps {
        println!("\n==> {}", s.name);
        let start = Instant::now();
        let status = cargo::strip_run_env(&mut Command::new(&s.command[0]))
            .args(&s.command[1..])
            .current_dir(root())
            .status()
            .with_context(|| format!("running {}", s.command.join(" ")))?;
        let ok = status.success();
        println!(
            "==> {} {} in {:.1} s",
            s.name,
            if ok { "passed" } else { "FAILED" },
            start.elapsed().as_secs_f64()
        );
        results.push((s.name, ok, start.elapsed()));
        if !ok && s.name == "install test peers" {
            break;
        }
    }
    Ok(results)
}

/// Prints the summary table; success when every step passed.
fn summary(results: &[(&'static str, bool, std::time::Duration)]) -> ExitCode {
    println!("\nsummary:");
    for (name, ok, took) in results {
        println!(
            "  {:<32} {:<6} {:>6.1} s",
            name,
            if *ok { "ok" } else { "FAILED" },
            took.as_secs_f64()
        );
    }
    let failed = results.iter().filter(|(_, ok, _)| !ok).count();
    let passed = results.len() - failed;
    println!("steps: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
