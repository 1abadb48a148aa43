//! Postgres pool and the runtime's migrations.

use std::time::Duration;

use sqlx::{PgPool, migrate::Migrator, postgres::PgPoolOptions};

use crate::shutdown::Shutdown;

/// Connects, retrying until Postgres answers or shutdown is triggered.
pub async fn connect(url: &str, max_connections: u32, shutdown: &Shutdown) -> anyhow::Result<PgPool> {
    let mut delay = Duration::from_millis(200);
    loop {
        match PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
        {
            Ok(pool) => return Ok(pool),
            Err(e) => {
                tracing::warn!(error = %e, "database not reachable yet");
                if !shutdown.sleep(delay).await {
                    anyhow::bail!("shutdown while connecting to the database: {e}");
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Applies the runtime's migrations (outbox, inbox). They keep their own history table, so a
/// service's own migrations (run with `sqlx::migrate!` as usual) never collide with them.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    let mut m: Migrator = sqlx::migrate!("./migrations");
    m.dangerous_set_table_name("_switchyard_runtime_migrations");
    m.run(pool).await?;
    Ok(())
}
