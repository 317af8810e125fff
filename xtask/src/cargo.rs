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
    /// `dev` (the default of `up`, `scenario`, `probe`, `from-chart`): quick to compile from
    /// cold, and the same artifacts `cargo build` and `cargo xtask test` make.
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
    let out = Command::new("cargo")
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

/// `cargo build --profile <profile>` of `targets` (`-p NAME`, `--bin NAME`, …) in the workspace.
pub fn build(profile: Profile, targets: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("cargo")
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
