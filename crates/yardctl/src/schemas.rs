//! `yardctl schemas`: registration and the BACKWARD-compatibility check.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Duration,
};

use anyhow::Context;
use clap::Subcommand;
use switchyard_model::SchemaCatalog;
use switchyard_runtime::{Codec, compat, registry::RegistryClient};

#[derive(Subcommand)]
pub enum SchemasCommand {
    /// Register every model schema (idempotent; the registry refuses incompatible changes).
    Register,
    /// Check schema changes for BACKWARD compatibility using the registry's own rule.
    ///
    /// Default: every commit that touched `schemas/` against its parent, and uncommitted changes
    /// against HEAD. With --base-ref or --base-dir: the schemas folder against that base only.
    Check {
        /// The schemas folder to check (default: the repository's `schemas/`).
        #[arg(long)]
        schemas_dir: Option<PathBuf>,
        /// Compare against this git revision's `schemas/`.
        #[arg(long, conflicts_with = "base_dir")]
        base_ref: Option<String>,
        /// Compare against this folder.
        #[arg(long)]
        base_dir: Option<PathBuf>,
    },
}

pub async fn run(cmd: SchemasCommand, registry_url: &str) -> anyhow::Result<ExitCode> {
    let registry = RegistryClient::new(registry_url, Duration::from_secs(10))?;
    match cmd {
        SchemasCommand::Register => {
            let catalog = SchemaCatalog::embedded()?;
            let codec = Codec::new(catalog.clone(), registry);
            codec.register_all().await?;
            println!("registered {} subjects at {registry_url}", catalog.topics().len());
            Ok(ExitCode::SUCCESS)
        }
        SchemasCommand::Check {
            schemas_dir,
            base_ref,
            base_dir,
        } => {
            let repo = repo_root()?;
            let new_dir = schemas_dir.unwrap_or_else(|| repo.join("schemas"));
            let new = SchemaCatalog::from_dir(&new_dir).with_context(|| format!("reading {}", new_dir.display()))?;
            let mut pairs: Vec<(String, SchemaCatalog, SchemaCatalog)> = Vec::new();
            if let Some(dir) = base_dir {
                pairs.push((
                    format!("{} vs {}", new_dir.display(), dir.display()),
                    SchemaCatalog::from_dir(&dir)?,
                    new,
                ));
            } else if let Some(rev) = base_ref {
                let Some(old) = catalog_at(&repo, &rev)? else {
                    anyhow::bail!("{rev} has no schemas/ folder");
                };
                pairs.push((format!("working tree vs {rev}"), old, new));
            } else {
                if let Some(head) = catalog_at(&repo, "HEAD")? {
                    pairs.push(("working tree vs HEAD".into(), head, new));
                }
                for commit in git(&repo, &["rev-list", "HEAD", "--", "schemas"])?.lines() {
                    let Some(after) = catalog_at(&repo, commit)? else {
                        continue;
                    };
                    let Some(before) = catalog_at(&repo, &format!("{commit}^"))? else {
                        continue;
                    };
                    pairs.push((format!("commit {}", &commit[..12.min(commit.len())]), before, after));
                }
            }
            let scratch = format!("_compat-check.{}", uuid::Uuid::new_v4().simple());
            let mut failures = 0;
            for (label, old, new) in &pairs {
                let breaking = compat::check(&registry, old, new, &scratch).await?;
                if breaking.is_empty() {
                    println!("ok    {label}");
                }
                for b in breaking {
                    failures += 1;
                    println!("BREAK {label}: {}: {}", b.topic, b.reason);
                }
            }
            if failures > 0 {
                eprintln!(
                    "error: {failures} BACKWARD-incompatible schema change(s); add fields with defaults, or serve a new .v2 topic"
                );
                return Ok(ExitCode::from(1));
            }
            println!("schemas: {} comparison(s), all BACKWARD-compatible", pairs.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn repo_root() -> anyhow::Result<PathBuf> {
    let out = git(Path::new("."), &["rev-parse", "--show-toplevel"])?;
    Ok(PathBuf::from(out.trim()))
}

fn git(repo: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .context("running git")?;
    if !out.status.success() {
        anyhow::bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The catalog as committed at `rev`, or None if `rev` does not exist or has no schemas.
fn catalog_at(repo: &Path, rev: &str) -> anyhow::Result<Option<SchemaCatalog>> {
    let exists = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["cat-file", "-e", &format!("{rev}:schemas/topics")])
        .output()?
        .status
        .success();
    if !exists {
        return Ok(None);
    }
    let dir = std::env::temp_dir().join(format!("yardctl-schemas-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "git -C '{}' archive --format=tar '{rev}' schemas | tar -x -C '{}'",
            repo.display(),
            dir.display()
        ))
        .status()?;
    if !status.success() {
        anyhow::bail!("cannot extract schemas at {rev}");
    }
    let catalog = SchemaCatalog::from_dir(&dir.join("schemas")).with_context(|| format!("schemas at {rev}"));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Some(catalog?))
}
