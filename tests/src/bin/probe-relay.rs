//! A standalone outbox relay over one database, for failure tests that kill it (SIGKILL) mid-batch.
//!
//! probe-relay --database-url URL --bootstrap HOST:PORT --service NAME [--pause-ms N] [--batch N]

use std::time::Duration;

use clap::Parser;
use switchyard_runtime::{Metrics, Relay, Shutdown, kafka, outbox::RelayConfig};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    database_url: String,
    #[arg(long)]
    bootstrap: String,
    #[arg(long, default_value = "probe")]
    service: String,
    /// Pause between publishing a batch and marking it, to widen the crash window.
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,
    #[arg(long, default_value_t = 50)]
    batch: i64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&args.database_url)
        .await?;
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    let relay = Relay::new(
        pool,
        kafka::producer(&args.bootstrap, &args.service)?,
        Metrics::new(&args.service),
        RelayConfig {
            service: args.service,
            poll_interval: Duration::from_millis(50),
            batch_size: args.batch,
            retention: Duration::from_secs(3600),
            pause_after_publish: Duration::from_millis(args.pause_ms),
            max_attempts: 5,
        },
    );
    relay.run(shutdown).await;
    Ok(())
}
