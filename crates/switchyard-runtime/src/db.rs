//! Postgres pool and the runtime's migrations.

use std::time::Duration;

use sqlx::{PgPool, migrate::Migrator, postgres::PgPoolOptions};

use crate::shutdown::Shutdown;

/// Connects, retrying until Postgres answers or shutdown is triggered.
pub async fn connect(url: &str, max_connections: u32, shutdown: &Shutdown) -> anyhow::Result<PgPool> {
    let mut backoff = crate::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
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
                if !shutdown.sleep(backoff.next_wait()).await {
                    anyhow::bail!("shutdown while connecting to the database: {e}");
                }
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

/// Whether a database error may go away by trying again (the database was unreachable, busy, or
/// rolled the transaction back to resolve a conflict), as opposed to a change it will refuse every
/// time (a constraint or a data error: SQLSTATE classes 22, 23 and 42, or a row that does not decode).
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // 40001 serialization failure, 40P01 deadlock, 08xxx connection, 53xxx resources,
            // 57xxx operator intervention (shutdown, cancel), 58xxx system, 55P03 lock not available.
            Some(code) => !matches!(&code[..2.min(code.len())], "22" | "23" | "42" | "44"),
            None => true,
        },
        sqlx::Error::RowNotFound
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Encode(_)
        | sqlx::Error::Decode(_) => false,
        _ => true,
    }
}

/// The SQLSTATE of a database error, if it carries one.
pub fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}
