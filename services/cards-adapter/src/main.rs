//! The cards-adapter service. For now it migrates its database (card accounts and authorization
//! decisions), relays its outbox and serves `/healthz`, `/readyz` and `/metrics`; the decision
//! engine and its store are in the library (`cards_adapter::authorize`, `cards_adapter::store`).

use std::process::ExitCode;

use axum::Router;
use switchyard_runtime::service;

#[tokio::main]
async fn main() -> ExitCode {
    service::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let rt = service::boot("cards-adapter").await?;
    if !rt.migrate(sqlx::migrate!("./migrations")).await? {
        return Ok(());
    }
    let tasks = vec![rt.spawn_relay(), rt.spawn_retention(Vec::new())?];
    rt.serve_until_shutdown(Router::new(), tasks).await
}
