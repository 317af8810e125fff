//! `cargo xtask scenario [NAME|all]`: the closed loop, measured.
//!
//! Starts the seven services, a real Prometheus and Alertmanager with the chart's rules (short
//! `for:` and windows), a real PostgreSQL for user-service and a real SMTP server for
//! alert-service, then injects faults through `/chaos` (or by stopping the database) and watches
//! each scenario go from symptom to alert to repair (or deliberate refusal) to notification.
//! Prints a table — scenario, fault, detected by, MTTD, action, MTTR, notifications — and writes
//! the figures to `target/scenario/results.json`. A scenario fails when one of its expectations
//! does not hold.

mod alert_storm;
mod brain_latency;
mod configs;
mod database_outage;
mod gateway_errors;
mod harness;
mod heart_crash;
mod memory_leak;
mod readiness_flap;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;

use crate::root;
use crate::up::{self, Options, System};

use alert_storm::StormLimits;
use configs::{alert_service_config, scenario_policy};
use harness::{Outcome, World, secs};

/// Every scenario, in the order `all` runs them.
pub const SCENARIOS: &[&str] = &[
    "heart-crash",
    "brain-latency",
    "gateway-errors",
    "memory-leak",
    "readiness-flap",
    "database-outage",
    "alert-storm",
];

pub fn run(args: &[&str]) -> anyhow::Result<ExitCode> {
    let selected: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| !a.starts_with("--"))
        .collect();
    let names: Vec<&'static str> = if selected.is_empty() || selected == ["all"] {
        SCENARIOS.to_vec()
    } else {
        let mut names = Vec::new();
        for s in selected {
            match SCENARIOS.iter().find(|n| **n == s) {
                Some(n) => names.push(*n),
                None => bail!("unknown scenario {s:?}; known: {}", SCENARIOS.join(", ")),
            }
        }
        names
    };
    let opts = Options::for_tool(args, "scenario", "SCENARIO_LOGS")?;
    up::build(&opts)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let results = rt.block_on(run_all(opts, names))?;
    let out = root().join("target/scenario/results.json");
    std::fs::write(
        &out,
        serde_json::to_string_pretty(
            &json!({ "scenarios": results.iter().map(Outcome::json).collect::<Vec<_>>() }),
        )?,
    )?;
    print_table(&results);
    println!("\nfigures written to {}", out.display());
    let failed = results.iter().filter(|r| !r.passed()).count();
    println!(
        "scenarios: {} passed, {} failed",
        results.len() - failed,
        failed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Starts the SMTP and pager sinks, PostgreSQL and the system with the scenario configuration.
async fn start_world(mut opts: Options) -> anyhow::Result<World> {
    let smtp = testbed::SmtpSink::start().await;
    let pager = testbed::HttpSink::start().await;
    let postgres = testbed::Postgres::start().await;
    let state = opts.state_dir.clone();
    let alert_config = state.join("alert-service.yaml");
    std::fs::write(
        &alert_config,
        alert_service_config(smtp.port(), &format!("{}/pager", pager.url()), &state),
    )?;
    let policy = state.join("auto-healer-policy.yaml");
    std::fs::write(&policy, scenario_policy())?;
    opts.overrides = vec![
        ("user-service".into(), "DATABASE_URL".into(), postgres.url()),
        (
            "alert-service".into(),
            "ALERT_SERVICE_CONFIG".into(),
            alert_config.display().to_string(),
        ),
        (
            "alert-service".into(),
            "GRAFANA_URL".into(),
            "http://127.0.0.1:3000".into(),
        ),
        (
            "auto-healer".into(),
            "AUTO_HEALER_POLICY".into(),
            policy.display().to_string(),
        ),
    ];
    let system = System::start(&opts)
        .await
        .context("starting the local system")?;
    Ok(World {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()?,
        smtp,
        pager,
        postgres,
        system: Some(system),
        healer_state: state.join("auto-healer"),
    })
}

async fn run_all(opts: Options, names: Vec<&'static str>) -> anyhow::Result<Vec<Outcome>> {
    let mut world = start_world(opts).await?;
    let storm = StormLimits { rate_limit: 5 };
    // Let Prometheus fill a whole rate window (10 s) before the first fault.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let mut results = Vec::new();
    for name in names {
        println!("\n--- scenario {name}");
        let left = world.settle().await;
        if !left.is_empty() {
            println!(
                "    still firing after 60 s of settling: {}",
                left.join(", ")
            );
        }
        results.push(run_one(&mut world, name, &storm, left).await);
    }
    if let Some(system) = world.system.take() {
        system.stop().await;
    }
    Ok(results)
}

/// Runs the scenario `name`, noting what was still firing when it started (`left`).
async fn run_one(
    world: &mut World,
    name: &'static str,
    storm: &StormLimits,
    left: Vec<String>,
) -> Outcome {
    let started = Instant::now();
    let outcome = match name {
        "heart-crash" => heart_crash::run(world).await,
        "brain-latency" => brain_latency::run(world).await,
        "gateway-errors" => gateway_errors::run(world).await,
        "memory-leak" => memory_leak::run(world).await,
        "readiness-flap" => readiness_flap::run(world).await,
        "database-outage" => database_outage::run(world).await,
        _ => alert_storm::run(world, storm).await,
    };
    let mut outcome = outcome;
    if !left.is_empty() {
        outcome
            .figures
            .insert("still_firing_at_start".into(), json!(left));
    }
    println!(
        "--- {name}: {} in {:.0} s{}",
        if outcome.passed() { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f64(),
        if outcome.passed() {
            String::new()
        } else {
            format!(": {}", outcome.failures.join("; "))
        }
    );
    outcome
}

fn print_table(results: &[Outcome]) {
    println!(
        "\n{:<16} {:<40} {:<44} {:>7} {:<48} {:>7} notifications",
        "scenario", "fault", "detected by", "MTTD", "action", "MTTR"
    );
    for r in results {
        println!(
            "{:<16} {:<40} {:<44} {:>7} {:<48} {:>7} {}{}",
            r.name,
            truncate(&r.fault, 40),
            truncate(&r.detected_by, 44),
            secs(r.mttd),
            truncate(&r.action, 48),
            secs(r.mttr),
            r.notifications,
            if r.passed() {
                String::new()
            } else {
                format!("  FAILED: {}", r.failures.join("; "))
            }
        );
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}
