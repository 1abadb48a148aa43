//! Step timers kept as `(flow_id, due_at)` rows beside a flow table: one due timer taken at a time,
//! by whichever orchestrator locks its flow first.

use sqlx::PgConnection;
use switchyard_runtime::HandlerError;

/// A timer table and the flow table whose rows it times: the statements over them, written out
/// at compile time (no SQL is assembled at run time).
pub struct Timers {
    select_due: &'static str,
    lock_flow: &'static str,
    delete_due: &'static str,
    upsert: &'static str,
    delete: &'static str,
}

macro_rules! timers {
    ($timers:literal, $flows:literal) => {
        Timers {
            select_due: concat!(
                "SELECT flow_id FROM ",
                $timers,
                " WHERE due_at <= now() ORDER BY due_at LIMIT 16"
            ),
            lock_flow: concat!("SELECT 1 FROM ", $flows, " WHERE flow_id = $1 FOR UPDATE SKIP LOCKED"),
            delete_due: concat!("DELETE FROM ", $timers, " WHERE flow_id = $1 AND due_at <= now()"),
            upsert: concat!(
                "INSERT INTO ",
                $timers,
                " (flow_id, due_at) VALUES ($1, now() + make_interval(secs => $2)) ",
                "ON CONFLICT (flow_id) DO UPDATE SET due_at = EXCLUDED.due_at"
            ),
            delete: concat!("DELETE FROM ", $timers, " WHERE flow_id = $1"),
        }
    };
}

pub const ONBOARDING: Timers = timers!("flow_timers", "onboarding_flows");
pub const OPEN_BANKING: Timers = timers!("ob_timers", "ob_flows");
pub const CARDS: Timers = timers!("card_timers", "card_flows");

impl Timers {
    /// Takes one due timer whose flow is not being worked on: the flow row is locked (skipped if
    /// another transaction holds it) and the timer removed only if still due (a handler may have
    /// re-armed or cleared it meanwhile).
    pub async fn take_due(&self, conn: &mut PgConnection) -> Result<Option<String>, HandlerError> {
        let due: Vec<String> = sqlx::query_scalar(self.select_due).fetch_all(&mut *conn).await?;
        for flow_id in due {
            let locked: Option<i32> = sqlx::query_scalar(self.lock_flow)
                .bind(&flow_id)
                .fetch_optional(&mut *conn)
                .await?;
            if locked.is_none() {
                continue;
            }
            let taken = sqlx::query(self.delete_due)
                .bind(&flow_id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if taken > 0 {
                return Ok(Some(flow_id));
            }
        }
        Ok(None)
    }

    /// Arms the flow's timer `secs` from now (replacing one already armed), or clears it.
    pub async fn set(&self, conn: &mut PgConnection, flow_id: &str, secs: Option<u64>) -> Result<(), HandlerError> {
        match secs {
            Some(secs) => {
                sqlx::query(self.upsert)
                    .bind(flow_id)
                    .bind(secs as f64)
                    .execute(&mut *conn)
                    .await?;
            }
            None => {
                sqlx::query(self.delete).bind(flow_id).execute(&mut *conn).await?;
            }
        }
        Ok(())
    }
}
