//! provider-sim: one simulated vendor per process, for local runs and tests only.
//!
//!   provider-sim onfido   --listen 127.0.0.1:9301 --webhook-url http://127.0.0.1:8090/webhooks/kyc-onfido
//!   provider-sim sumsub   --listen 127.0.0.1:9302 --webhook-url http://127.0.0.1:8090/webhooks/kyc-sumsub
//!   provider-sim mesh     --listen 127.0.0.1:9303
//!   provider-sim watchman --listen 127.0.0.1:9304
//!   provider-sim sift     --listen 127.0.0.1:9305
//!   provider-sim seon     --listen 127.0.0.1:9306
//!   provider-sim wise     --listen 127.0.0.1:9307 --webhook-url http://127.0.0.1:8090/webhooks/payouts-wise
//!   provider-sim stripe   --listen 127.0.0.1:9308 --webhook-url http://127.0.0.1:8090/webhooks/payouts-stripe
//!   provider-sim marqeta  --listen 127.0.0.1:9309 --webhook-url http://127.0.0.1:8090/webhooks/cards-marqeta \
//!                         --gateway-url http://127.0.0.1:8105/authorizations/cards-marqeta
//!   provider-sim lithic   --listen 127.0.0.1:9310 --webhook-url http://127.0.0.1:8090/webhooks/cards-lithic \
//!                         --gateway-url http://127.0.0.1:8105/authorizations/cards-lithic
//!   provider-sim truelayer --listen 127.0.0.1:9311 --webhook-url http://127.0.0.1:8090/webhooks/openbanking-truelayer
//!   provider-sim plaid    --listen 127.0.0.1:9312
//!
//! Credentials come from the environment, as the real vendors issue them: ONFIDO_API_TOKEN,
//! ONFIDO_WEBHOOK_SECRET; SUMSUB_APP_TOKEN, SUMSUB_SECRET_KEY, SUMSUB_WEBHOOK_SECRET; MESH_USERNAME,
//! MESH_PASSWORD; SIFT_API_KEY; SEON_API_KEY; WISE_API_TOKEN, WISE_WEBHOOK_PRIVATE_KEY (PKCS#8 DER,
//! base64); STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET; MARQETA_APPLICATION_TOKEN,
//! MARQETA_ADMIN_TOKEN, MARQETA_CALLBACK_USERNAME, MARQETA_CALLBACK_PASSWORD, MARQETA_WEBHOOK_SECRET;
//! LITHIC_API_KEY, LITHIC_ASA_SECRET, LITHIC_WEBHOOK_SECRET (whsec_<base64>); TRUELAYER_CLIENT_ID,
//! TRUELAYER_CLIENT_SECRET, TRUELAYER_SIGNING_PUBLIC (our request-signing key's P-521 point, base64),
//! TRUELAYER_WEBHOOK_PRIVATE_KEY (PKCS#8 DER, P-521, base64); PLAID_CLIENT_ID, PLAID_SECRET,
//! PLAID_WEBHOOK_PRIVATE_KEY (PKCS#8 DER, P-256, base64). Control API on the same port under /_sim (faults, webhook quirks, ledger).

#![allow(clippy::result_large_err)] // handlers short-circuit with the vendor's full HTTP error response

mod lithic;
mod marqeta;
mod mesh;
mod onfido;
mod plaid;
mod seon;
mod sift;
mod sim;
mod stripe;
mod sumsub;
mod truelayer;
mod watchman;
mod wise;

use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, ValueEnum)]
enum Vendor {
    Onfido,
    Sumsub,
    Mesh,
    Watchman,
    Sift,
    Seon,
    Wise,
    Stripe,
    Marqeta,
    Lithic,
    Truelayer,
    Plaid,
}

#[derive(Parser)]
struct Args {
    vendor: Vendor,
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Where to deliver webhooks (vendors that send them).
    #[arg(long, default_value = "")]
    webhook_url: String,
    /// How long a verification takes before its result (and webhook).
    #[arg(long, default_value_t = 400)]
    complete_after_ms: u64,
    /// Where payout vendors drop their settlement reports (`POST /_sim/reports` writes one).
    #[arg(long, default_value = "")]
    reports_dir: String,
    /// Where a payout vendor keeps its book across restarts (vendors do not forget).
    #[arg(long, default_value = "")]
    state_file: String,
    /// Card processors: the program's real-time authorization endpoint (JIT Funding gateway, ASA
    /// responder).
    #[arg(long, default_value = "")]
    gateway_url: String,
    /// Card processors: how long they wait for the program's decision before the stand-in rule.
    #[arg(long, default_value_t = 3000)]
    decision_timeout_ms: u64,
    /// Card processors: what the stand-in rule does when the program did not answer in time.
    #[arg(long, default_value = "decline")]
    stand_in: String,
}

fn env(name: &str) -> anyhow::Result<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => anyhow::bail!("{name} must be set"),
    }
}

fn b64_env(name: &str) -> anyhow::Result<Vec<u8>> {
    switchyard_vendors::signing::unb64(env(name)?.trim()).ok_or_else(|| anyhow::anyhow!("{name} is not base64"))
}

/// The simulator's own base URL (its hosted pages and published keys live there).
fn public_url(listen: &str) -> String {
    format!("http://{listen}")
}

fn stand_in(v: &str) -> anyhow::Result<bool> {
    match v {
        "approve" => Ok(true),
        "decline" => Ok(false),
        other => anyhow::bail!("--stand-in must be approve or decline, not {other:?}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let args = Args::parse();
    let sim = sim::Sim::new();
    let complete_after = Duration::from_millis(args.complete_after_ms);
    let api = match args.vendor {
        Vendor::Onfido => onfido::router(
            sim.clone(),
            onfido::Config {
                api_token: env("ONFIDO_API_TOKEN")?,
                webhook_secret: env("ONFIDO_WEBHOOK_SECRET")?,
                webhook_url: args.webhook_url.clone(),
                complete_after,
            },
        ),
        Vendor::Sumsub => sumsub::router(
            sim.clone(),
            sumsub::Config {
                app_token: env("SUMSUB_APP_TOKEN")?,
                secret_key: env("SUMSUB_SECRET_KEY")?,
                webhook_secret: env("SUMSUB_WEBHOOK_SECRET")?,
                webhook_url: args.webhook_url.clone(),
                complete_after,
            },
        ),
        Vendor::Mesh => mesh::router(
            sim.clone(),
            mesh::Config {
                username: env("MESH_USERNAME")?,
                password: env("MESH_PASSWORD")?,
            },
        ),
        Vendor::Watchman => watchman::router(sim.clone()),
        Vendor::Sift => sift::router(
            sim.clone(),
            sift::Config {
                api_key: env("SIFT_API_KEY")?,
            },
        ),
        Vendor::Wise => wise::router(
            sim.clone(),
            wise::Config {
                api_token: env("WISE_API_TOKEN")?,
                complete_after,
                webhook_url: args.webhook_url.clone(),
                reports_dir: args.reports_dir.clone(),
                state_file: args.state_file.clone(),
                private_key: switchyard_vendors::signing::unb64(&env("WISE_WEBHOOK_PRIVATE_KEY")?)
                    .ok_or_else(|| anyhow::anyhow!("WISE_WEBHOOK_PRIVATE_KEY is not base64"))?,
            },
        ),
        Vendor::Stripe => stripe::router(
            sim.clone(),
            stripe::Config {
                api_key: env("STRIPE_API_KEY")?,
                complete_after,
                webhook_url: args.webhook_url.clone(),
                webhook_secret: env("STRIPE_WEBHOOK_SECRET")?,
                reports_dir: args.reports_dir.clone(),
                state_file: args.state_file.clone(),
            },
        ),
        Vendor::Marqeta => marqeta::router(
            sim.clone(),
            marqeta::Config {
                application_token: env("MARQETA_APPLICATION_TOKEN")?,
                admin_token: env("MARQETA_ADMIN_TOKEN")?,
                callback_username: env("MARQETA_CALLBACK_USERNAME")?,
                callback_password: env("MARQETA_CALLBACK_PASSWORD")?,
                webhook_secret: env("MARQETA_WEBHOOK_SECRET")?,
                webhook_url: args.webhook_url.clone(),
                gateway_url: args.gateway_url.clone(),
                decision_timeout: Duration::from_millis(args.decision_timeout_ms),
                stand_in_approves: stand_in(&args.stand_in)?,
                state_file: args.state_file.clone(),
            },
        ),
        Vendor::Lithic => lithic::router(
            sim.clone(),
            lithic::Config {
                api_key: env("LITHIC_API_KEY")?,
                asa_secret: env("LITHIC_ASA_SECRET")?,
                webhook_secret: env("LITHIC_WEBHOOK_SECRET")?,
                webhook_url: args.webhook_url.clone(),
                gateway_url: args.gateway_url.clone(),
                decision_timeout: Duration::from_millis(args.decision_timeout_ms),
                stand_in_approves: stand_in(&args.stand_in)?,
                state_file: args.state_file.clone(),
            },
        ),
        Vendor::Truelayer => truelayer::router(
            sim.clone(),
            truelayer::Config {
                client_id: env("TRUELAYER_CLIENT_ID")?,
                client_secret: env("TRUELAYER_CLIENT_SECRET")?,
                client_signing_point: b64_env("TRUELAYER_SIGNING_PUBLIC")?,
                webhook_key: b64_env("TRUELAYER_WEBHOOK_PRIVATE_KEY")?,
                webhook_url: args.webhook_url.clone(),
                public_url: public_url(&args.listen),
                complete_after,
                state_file: args.state_file.clone(),
            },
        ),
        Vendor::Plaid => plaid::router(
            sim.clone(),
            plaid::Config {
                client_id: env("PLAID_CLIENT_ID")?,
                secret: env("PLAID_SECRET")?,
                webhook_key: b64_env("PLAID_WEBHOOK_PRIVATE_KEY")?,
                public_url: public_url(&args.listen),
                complete_after,
                state_file: args.state_file.clone(),
            },
        ),
        Vendor::Seon => seon::router(
            sim.clone(),
            seon::Config {
                api_key: env("SEON_API_KEY")?,
            },
        ),
    };
    let app = api.merge(sim::control_routes(sim));
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
