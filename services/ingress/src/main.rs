//! The ingress: the HTTP API product teams call (`/v1`, OpenAPI at `/v1/openapi.json`), per-tenant
//! API keys with scopes, `Idempotency-Key` semantics, problem+json errors, a body limit and a rate
//! limit per tenant. Accepted requests become commands on Kafka through the outbox; the read model
//! is built from outcome events.
//!
//!   ingress                                   serve (configuration as every service)
//!   ingress create-api-key --tenant T --scopes onboarding:write,onboarding:read [--label L]
//!   ingress revoke-api-key --key K       (the key, or its id: the part between `sy_` and the next `_`)
//!
//! The two commands above reach the database directly (a first key on a new install, break-glass);
//! operators otherwise use `yardctl keys create|list|revoke`, through `/admin/keys` (admin token).
//!
//! Own configuration: `[ingress] rate_limit_per_second` (default 50), `rate_limit_burst` (100).

mod admin;
mod api;
mod auth;
mod cards;
mod openbanking;
mod payouts;
mod problem;
mod readmodel;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde::Deserialize;
use switchyard_model::events::{
    Event, fraud::FraudCheckCompleted, onboarding::OnboardingCompleted, payouts::PayoutCompleted,
};
use switchyard_runtime::{ServiceConfig, service};

#[derive(Parser)]
struct Cli {
    #[arg(long, global = true)]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Create an API key for a tenant; the key is printed once and stored only hashed.
    CreateApiKey {
        #[arg(long)]
        tenant: String,
        #[arg(long, value_delimiter = ',', default_value = "onboarding:write,onboarding:read")]
        scopes: Vec<String>,
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Revoke an API key at once (every later request with it is 401); give the key or its id.
    RevokeApiKey {
        #[arg(long)]
        key: String,
    },
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CardsConfig {
    require_onboarding: bool,
}

#[derive(Deserialize)]
struct Limits {
    rate_limit_per_second: f64,
    rate_limit_burst: f64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    service::exit_code(match cli.command {
        Some(Command::CreateApiKey { tenant, scopes, label }) => create_key(&tenant, &scopes, &label).await,
        Some(Command::RevokeApiKey { key }) => revoke_key(&key).await,
        None => run().await,
    })
}

async fn create_key(tenant: &str, scopes: &[String], label: &str) -> anyhow::Result<()> {
    let cfg = ServiceConfig::load(api::SERVICE, service::config_path().as_deref())?;
    if tenant.trim().is_empty() {
        anyhow::bail!("--tenant must not be empty");
    }
    for s in scopes {
        if !auth::SCOPES.contains(&s.as_str()) {
            anyhow::bail!("unknown scope {s:?} (known: {})", auth::SCOPES.join(", "));
        }
    }
    let pool = cli_pool(&cfg).await?;
    println!(
        "{}",
        auth::create_key(&pool, tenant, scopes, label, "ingress create-api-key").await?
    );
    Ok(())
}

async fn revoke_key(key: &str) -> anyhow::Result<()> {
    let cfg = ServiceConfig::load(api::SERVICE, service::config_path().as_deref())?;
    let key_id = auth::key_id(key);
    let pool = cli_pool(&cfg).await?;
    if !auth::revoke_key(&pool, key_id, "ingress revoke-api-key").await? {
        anyhow::bail!("no active API key with id {key_id:?} (unknown, or already revoked)");
    }
    println!("revoked API key {key_id}");
    Ok(())
}

/// The database of a command-line call (migrated, so a first call on a new database works).
async fn cli_pool(cfg: &ServiceConfig) -> anyhow::Result<sqlx::PgPool> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(cfg.database.url.expose())
        .await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

async fn run() -> anyhow::Result<()> {
    let rt = service::boot(api::SERVICE).await?;
    if !rt.migrate(sqlx::migrate!("./migrations")).await? {
        return Ok(());
    }
    let limits: Limits = ServiceConfig::section(
        rt.config_file.as_deref(),
        "ingress",
        Limits {
            rate_limit_per_second: 50.0,
            rate_limit_burst: 100.0,
        },
    )?;
    if limits.rate_limit_per_second <= 0.0 || limits.rate_limit_burst < 1.0 {
        anyhow::bail!("configuration field `ingress.rate_limit_per_second`/`rate_limit_burst`: must be positive");
    }
    let cards: CardsConfig = ServiceConfig::section(rt.config_file.as_deref(), "cards", CardsConfig::default())?;
    let api = api::Api {
        pool: rt.pool.clone(),
        outbox: rt.outbox.clone(),
        cards_require_onboarding: cards.require_onboarding,
        gate: api::Gate::new(api::Limiter::new(
            "rate limit of this tenant or API key exceeded",
            limits.rate_limit_per_second,
            limits.rate_limit_burst,
        )),
    };
    let consumer = rt.consumer(
        api::SERVICE,
        &[
            OnboardingCompleted::TOPIC,
            PayoutCompleted::TOPIC,
            FraudCheckCompleted::TOPIC,
            switchyard_model::events::cards::CardStateChanged::TOPIC,
            switchyard_model::events::openbanking::OpenBankingCompleted::TOPIC,
        ],
        readmodel::ReadModel,
    );
    let tasks = vec![
        rt.spawn_relay(),
        rt.spawn_consumer(consumer),
        rt.spawn_retention(api::retention_rules())?,
    ];
    let routes = api::routes(api).merge(rt.admin(admin::routes(rt.pool.clone())));
    rt.serve_until_shutdown(routes, tasks).await
}
