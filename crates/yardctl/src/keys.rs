//! `yardctl keys create|list|revoke`: tenants' API keys, through the ingress's admin API.

use std::process::ExitCode;

use serde_json::json;

use crate::admin::{Admin, operator};

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key for a tenant; the key is printed once (only its hash is kept).
    Create {
        #[arg(long)]
        tenant: String,
        /// Comma-separated: onboarding:write, onboarding:read, payouts:write, payouts:read,
        /// payouts:review, fraud:score, cards:write, cards:read.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        #[arg(long, default_value = "")]
        label: String,
        /// Who creates it (kept with the key); default: the login name.
        #[arg(long)]
        by: Option<String>,
    },
    /// Every key (id, tenant, scopes, who created and revoked it; never a secret).
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key at once: every later request with it is refused (401).
    Revoke {
        /// The key, or its id.
        key: String,
        #[arg(long)]
        by: Option<String>,
    },
}

pub async fn run(command: KeysCommand, ingress: &str) -> anyhow::Result<ExitCode> {
    let admin = Admin::from_env()?;
    let url = format!("{ingress}/admin/keys");
    match command {
        KeysCommand::Create {
            tenant,
            scopes,
            label,
            by,
        } => {
            let body = json!({"tenant": tenant, "scopes": scopes, "label": label, "by": operator(by)?});
            let k = admin.post(&url, &body).await?;
            eprintln!(
                "key {} for {} ({}); shown once, keep it in the tenant's secret store:",
                k["key_id"].as_str().unwrap_or("?"),
                k["tenant"].as_str().unwrap_or("?"),
                scopes.join(",")
            );
            println!("{}", k["key"].as_str().unwrap_or_default());
        }
        KeysCommand::List { tenant } => {
            let q: Vec<(&str, String)> = tenant.into_iter().map(|t| ("tenant", t)).collect();
            let v = admin.get(&url, &q).await?;
            let keys = v["keys"].as_array().cloned().unwrap_or_default();
            println!(
                "{:<13} {:<18} {:<8} {:<20} {:<16} {:<20}  scopes",
                "key id", "tenant", "state", "created", "by", "label"
            );
            for k in &keys {
                let revoked = k["revoked_at"].as_str();
                println!(
                    "{:<13} {:<18} {:<8} {:<20} {:<16} {:<20}  {}",
                    k["key_id"].as_str().unwrap_or(""),
                    k["tenant"].as_str().unwrap_or(""),
                    if revoked.is_some() { "revoked" } else { "active" },
                    k["created_at"].as_str().unwrap_or("").get(..19).unwrap_or(""),
                    k["created_by"].as_str().unwrap_or(""),
                    k["label"].as_str().unwrap_or(""),
                    k["scopes"]
                        .as_array()
                        .map(|s| s.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(","))
                        .unwrap_or_default()
                );
            }
            println!("{} keys", keys.len());
        }
        KeysCommand::Revoke { key, by } => {
            let id = key
                .strip_prefix("sy_")
                .and_then(|rest| rest.split('_').next())
                .unwrap_or(&key);
            let v = admin
                .post(&format!("{url}/{id}/revoke"), &json!({"by": operator(by)?}))
                .await?;
            println!("revoked API key {}", v["key_id"].as_str().unwrap_or(id));
        }
    }
    Ok(ExitCode::SUCCESS)
}
