//! Retention: tables that grow with traffic lose their expired rows in small batches, on a schedule.
//!
//! Each service declares its [`Rule`]s (which rows of which table expire, and after how long by
//! default); operators change the period per rule with `retention.<rule>_hours`. A rule is applied in
//! batches of [`BATCH`] rows, one short statement each, so pruning never holds long locks or builds a
//! big transaction, and rules run in the order given (children before the rows they belong to).
//!
//! The runtime adds two rules of its own to every service: [`inbox_rule`], processed event ids (kept
//! `inbox.retention_hours`), and [`effect_ledger_rule`], settled calls to partners. The ledger may
//! never be kept shorter than the inbox: a request redelivered after its ledger row is gone, but
//! still known to the inbox, is skipped; one unknown to both is called again.

use std::{collections::HashMap, time::Duration};

use prometheus_client::{encoding::EncodeLabelSet, metrics::counter::Counter, metrics::family::Family};
use sqlx::PgPool;

use crate::{config::ConfigError, shutdown::Shutdown, telemetry::Metrics};

/// Rows removed per statement.
pub const BATCH: i64 = 1000;

/// Which rows of a table expire.
#[derive(Debug, Clone)]
pub struct Rule {
    /// What operators configure it by (`retention.<name>_hours`); rules may share a name, so one
    /// setting governs a record and the rows that belong to it.
    pub name: &'static str,
    pub table: &'static str,
    /// A SQL condition on `table`'s rows that is true for expired ones; `$1` is the retention in
    /// seconds (a float), e.g. `completed_at < now() - make_interval(secs => $1)`.
    pub expired: &'static str,
    /// The retention when none is configured.
    pub keep: Duration,
}

impl Rule {
    pub const fn hours(name: &'static str, table: &'static str, expired: &'static str, hours: u64) -> Self {
        Rule {
            name,
            table,
            expired,
            keep: Duration::from_secs(hours * 3600),
        }
    }
}

/// Processed event ids: a message redelivered after its id is gone would be applied again, so `keep`
/// must stay well beyond any redelivery (offsets are committed within seconds; the default is a week).
pub fn inbox_rule(keep: Duration) -> Rule {
    Rule {
        name: "inbox",
        table: "inbox",
        expired: "processed_at < now() - make_interval(secs => $1)",
        keep,
    }
}

/// Settled effect ledger rows (answered or never executed) are kept 90 days by default; rows still
/// in doubt or waiting for repair are never pruned.
pub fn effect_ledger_rule() -> Rule {
    Rule::hours(
        "effect_ledger",
        "effect_ledger",
        "state IN ('answered', 'not_executed') AND updated_at < now() - make_interval(secs => $1)",
        90 * 24,
    )
}

/// Applies `configured` (`<rule>_hours` → hours) to `rules`. An unknown key is an error naming the
/// known ones (a typo must not silently keep data for ever), and the effect ledger may not be kept
/// shorter than the inbox.
pub fn configure(mut rules: Vec<Rule>, configured: &HashMap<String, u64>) -> Result<Vec<Rule>, ConfigError> {
    for (key, hours) in configured {
        let name = key.strip_suffix("_hours").unwrap_or(key);
        let mut found = false;
        for r in rules.iter_mut().filter(|r| r.name == name) {
            r.keep = Duration::from_secs(hours * 3600);
            found = true;
        }
        if !found {
            let mut known: Vec<String> = rules.iter().map(|r| format!("{}_hours", r.name)).collect();
            known.dedup();
            return Err(ConfigError::Invalid {
                field: "retention",
                reason: format!("unknown key `{key}`; this service knows {}", known.join(", ")),
            });
        }
    }
    let keep = |table: &str| rules.iter().find(|r| r.table == table).map(|r| r.keep);
    if let (Some(ledger), Some(inbox_keep)) = (keep("effect_ledger"), keep("inbox"))
        && ledger < inbox_keep
    {
        return Err(ConfigError::Invalid {
            field: "retention",
            reason: format!(
                "effect_ledger_hours ({}) is shorter than inbox.retention_hours ({}): a redelivered request \
                 could reach a partner twice",
                ledger.as_secs() / 3600,
                inbox_keep.as_secs() / 3600
            ),
        });
    }
    Ok(rules)
}

/// Deletes `rule`'s expired rows, [`BATCH`] per statement; returns how many went.
pub async fn prune(pool: &PgPool, rule: &Rule) -> Result<u64, sqlx::Error> {
    let sql = format!(
        "DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t} WHERE {cond} LIMIT $2))",
        t = rule.table,
        cond = rule.expired
    );
    let mut total = 0;
    loop {
        let n = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(rule.keep.as_secs_f64())
            .bind(BATCH)
            .execute(pool)
            .await?
            .rows_affected();
        total += n;
        if n < BATCH as u64 {
            return Ok(total);
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    table: String,
}

/// Applies every rule once; returns rows removed per table. A failing rule is logged and the others
/// still run.
pub async fn run_once(pool: &PgPool, rules: &[Rule]) -> Vec<(&'static str, u64)> {
    let mut removed: Vec<(&'static str, u64)> = Vec::new();
    for rule in rules {
        match prune(pool, rule).await {
            Ok(n) => match removed.iter_mut().find(|(t, _)| *t == rule.table) {
                Some((_, total)) => *total += n,
                None => removed.push((rule.table, n)),
            },
            Err(e) => tracing::warn!(rule = rule.name, table = rule.table, error = %e, "retention failed; will retry"),
        }
    }
    removed
}

/// Runs the rules every `every` until shutdown, counting removed rows in
/// `switchyard_retention_pruned_rows_total{table}`.
pub fn spawn(
    pool: PgPool,
    rules: Vec<Rule>,
    metrics: &Metrics,
    every: Duration,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    let pruned: Family<TableLabels, Counter> = Family::default();
    metrics.register(
        "retention_pruned_rows",
        "Rows removed by retention, by table",
        pruned.clone(),
    );
    tokio::spawn(async move {
        while shutdown.sleep(every).await {
            for (table, n) in run_once(&pool, &rules).await {
                if n > 0 {
                    tracing::info!(table, rows = n, "retention pruned expired rows");
                    pruned
                        .get_or_create(&TableLabels {
                            table: table.to_string(),
                        })
                        .inc_by(n);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Vec<Rule> {
        vec![
            Rule::hours("flows", "history", "true", 10),
            Rule::hours("flows", "flows", "true", 10),
            inbox_rule(Duration::from_secs(7 * 24 * 3600)),
            effect_ledger_rule(),
        ]
    }

    #[test]
    fn a_setting_governs_every_rule_of_its_name() {
        let set = HashMap::from([("flows_hours".to_string(), 2)]);
        let r = configure(rules(), &set).unwrap_or_default();
        assert_eq!(r.len(), 4);
        assert!(r[..2].iter().all(|r| r.keep == Duration::from_secs(7200)));
        assert_eq!(r[3].keep, Duration::from_secs(90 * 24 * 3600));
    }

    #[test]
    fn an_unknown_key_is_refused_with_the_known_ones() {
        let set = HashMap::from([("flow_hours".to_string(), 2)]);
        let e = configure(rules(), &set)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("unknown key `flow_hours`"), "{e}");
        assert!(e.contains("flows_hours, inbox_hours, effect_ledger_hours"), "{e}");
    }

    #[test]
    fn the_effect_ledger_may_not_be_kept_shorter_than_the_inbox() {
        let set = HashMap::from([("effect_ledger_hours".to_string(), 24)]);
        let e = configure(rules(), &set)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("shorter than inbox.retention_hours"), "{e}");
        assert!(configure(rules(), &HashMap::new()).is_ok());
    }
}
