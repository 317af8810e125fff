//! Building the workspace's binaries and finding them: the one place that knows cargo's
//! profiles and where the target directory is.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context as _, bail};

use crate::root;

/// The cargo profile a local run builds and starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `dev` (the default of `up`, `scenario`, `probe`, `from-chart`, and what `explore`
    /// uses): quick to compile from cold, and its dependencies are the ones `cargo xtask` itself
    /// was built with (see [`build`]).
    Dev,
    /// `release` (thin LTO): slow to compile, what `cargo xtask bench` measures.
    Release,
}

impl Profile {
    /// `--release` picks [`Profile::Release`]; anything else (including the old `--debug`) is
    /// [`Profile::Dev`].
    pub fn from_args(args: &[&str]) -> Self {
        if args.contains(&"--release") {
            Self::Release
        } else {
            Self::Dev
        }
    }

    /// The profile's name as `cargo build --profile` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dev => "dev",
            Self::Release => "release",
        }
    }

    /// The directory under the target directory that holds the profile's binaries.
    fn dir(self) -> &'static str {
        match self {
            Self::Dev => "debug",
            Self::Release => "release",
        }
    }
}

/// `cargo`, without the variables `cargo run` set for this process (`CARGO`,
/// `CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, …). Inherited, they reach the build scripts' fingerprints
/// (ring's declares `rerun-if-env-changed` on them), so every nested build would recompile from
/// ring upwards, and the next plain `cargo build` again.
pub fn command() -> Command {
    let mut cmd = Command::new("cargo");
    strip_run_env(&mut cmd);
    cmd
}

/// Removes from `cmd`'s environment what `cargo run` set for this process (see [`command`]);
/// for commands that run cargo themselves (scripts, `env`).
pub fn strip_run_env(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if set_by_cargo_run(key) {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Whether `cargo run` sets `key` for the program it runs.
fn set_by_cargo_run(key: &str) -> bool {
    matches!(
        key,
        "CARGO"
            | "CARGO_MANIFEST_DIR"
            | "CARGO_MANIFEST_PATH"
            | "CARGO_CRATE_NAME"
            | "CARGO_BIN_NAME"
            | "CARGO_PRIMARY_PACKAGE"
            | "CARGO_RUSTC_CURRENT_DIR"
    ) || key.starts_with("CARGO_PKG_")
}

/// The target directory cargo builds into, as `cargo metadata` reports it: it honours
/// `CARGO_TARGET_DIR` (relative or absolute) and `build.target-dir` in cargo's configuration.
pub fn target_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        metadata_target_dir().unwrap_or_else(|e| {
            eprintln!("cargo metadata: {e:#}; assuming CARGO_TARGET_DIR or target/");
            std::env::var_os("CARGO_TARGET_DIR")
                .filter(|d| !d.is_empty())
                .map(|d| root().join(d))
                .unwrap_or_else(|| root().join("target"))
        })
    })
    .clone()
}

fn metadata_target_dir() -> anyhow::Result<PathBuf> {
    let out = command()
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("no target_directory in cargo metadata")
}

/// The binary `name` built with `profile`.
pub fn binary(profile: Profile, name: &str) -> PathBuf {
    target_dir().join(profile.dir()).join(name)
}

/// `cargo build --profile <profile>` of the binaries `bins` (of the seven services and xtask).
///
/// Always with the same packages selected (xtask and every service), whatever `bins` asks for:
/// cargo unifies features over the selected packages, so this build and `cargo xtask` itself
/// (which depends on the services for that reason) share every dependency's artifacts, and
/// every caller shares this build's.
pub fn build(profile: Profile, bins: &[&str]) -> anyhow::Result<()> {
    let mut targets = vec!["-p", "xtask"];
    for service in topology::SERVICES {
        targets.extend(["-p", service.name]);
    }
    for bin in bins {
        targets.extend(["--bin", bin]);
    }
    build_targets(profile, &targets)
}

/// `cargo build --profile <profile>` of exactly `targets` (`-p NAME`, `--bin NAME`, …): for the
/// bench, whose release builds keep the package sets its published figures were measured with.
pub fn build_targets(profile: Profile, targets: &[&str]) -> anyhow::Result<()> {
    let status = command()
        .args(["build", "--profile", profile.name()])
        .args(targets)
        .current_dir(root())
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!(
            "cargo build --profile {} {} failed",
            profile.name(),
            targets.join(" ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_cargo_does_not_inherit_what_cargo_run_set() {
        for key in [
            "CARGO",
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
        ] {
            assert!(set_by_cargo_run(key), "{key}");
        }
        for key in [
            "CARGO_TARGET_DIR",
            "CARGO_HOME",
            "CARGO_NET_OFFLINE",
            "CARGO_BUILD_JOBS",
        ] {
            assert!(!set_by_cargo_run(key), "{key}");
        }
    }

    #[test]
    fn release_only_when_asked() {
        assert_eq!(Profile::from_args(&[]), Profile::Dev);
        assert_eq!(Profile::from_args(&["--debug", "--smoke"]), Profile::Dev);
        assert_eq!(Profile::from_args(&["--release"]), Profile::Release);
    }

    #[test]
    fn binaries_live_under_cargos_target_dir() {
        let dir = target_dir();
        assert!(dir.is_absolute(), "{}", dir.display());
        assert_eq!(binary(Profile::Dev, "heart"), dir.join("debug/heart"));
        assert_eq!(binary(Profile::Release, "heart"), dir.join("release/heart"));
    }
}
