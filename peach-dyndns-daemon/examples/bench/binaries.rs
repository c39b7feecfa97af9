//! The binaries measured: building them, their sizes, and the server's
//! `keygen` for the run's identities.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _};

/// Builds the release daemon (unless another binary is measured) and the
/// server.
pub(crate) fn build(workspace: &Path, release_server: bool, daemon: bool) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut builds = Vec::new();
    if daemon {
        builds.push(vec![
            "build",
            "--profile",
            "release-daemon",
            "-p",
            "peach-dyndns-daemon",
            "--bin",
            "peach-dyndns-daemon",
        ]);
    }
    let mut server = vec![
        "build",
        "-p",
        "peach-dyndns-server",
        "--bin",
        "peach-dyndns-server",
    ];
    if release_server {
        server.push("--release");
    }
    builds.push(server);
    for build in builds {
        eprintln!("bench: cargo {}", build.join(" "));
        let status = Command::new(&cargo)
            .args(&build)
            .current_dir(workspace)
            .status()
            .context("cannot run cargo")?;
        if !status.success() {
            bail!("cargo {} failed: {status}", build.join(" "));
        }
    }
    Ok(())
}

/// The binary's size as built and stripped (`strip` on a copy; the
/// profile strips already, so the two should agree).
pub(crate) fn binary_size(bin: &Path, dir: &Path) -> anyhow::Result<(u64, u64)> {
    let built = std::fs::metadata(bin)
        .with_context(|| format!("cannot stat {}", bin.display()))?
        .len();
    let copy = dir.join("daemon.stripped");
    let stripped = match Command::new("strip").arg("-o").arg(&copy).arg(bin).status() {
        Ok(s) if s.success() => std::fs::metadata(&copy)?.len(),
        _ => {
            eprintln!("bench: `strip` failed or is missing; reporting the size as built");
            built
        }
    };
    Ok((built, stripped))
}

/// inadyn's installed binary size, for the table.
pub(crate) fn inadyn_size() -> Option<u64> {
    std::fs::metadata("/usr/sbin/inadyn").ok().map(|m| m.len())
}

pub(crate) fn keygen(server: &Path, path: &Path) -> anyhow::Result<String> {
    let out = Command::new(server)
        .arg("keygen")
        .arg(path)
        .output()
        .context("cannot run peach-dyndns-server keygen")?;
    if !out.status.success() {
        bail!(
            "keygen failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}
