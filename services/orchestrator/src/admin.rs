//! The orchestrator's operators' API (behind the admin token):
//!
//!   GET  /admin/flows/{flow_id}              a flow: state, history, partners' references, timers,
//!                                            shadow calls (never the person or the payee)
//!   GET  /admin/flows?kind=&state=&tenant=&older_than_seconds=&limit=
//!   GET  /admin/routing                      the policy in force, the overrides, the last changes
//!   POST /admin/routing/partners/{id}        {"action": enable|disable|primary|reset, "by", "reason"}
//!
//! A routing change is kept with who made it and why (`routing_changes`, never deleted), and every
//! instance puts it in force within [`FOLLOW_EVERY`].

use std::time::Duration;

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use sqlx::PgPool;
use switchyard_runtime::{
    Shutdown,
    admin::{json_rows, problem, unavailable},
};

use crate::routing::{Overrides, Routing};

/// How often every instance looks for routing changes made through another.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Admin {
    pub pool: PgPool,
    pub routing: Routing,
}

pub fn routes(admin: Admin) -> Router {
    Router::new()
        .route("/admin/flows", get(list_flows))
        .route("/admin/flows/{flow_id}", get(show_flow))
        .route("/admin/routing", get(show_routing))
        .route("/admin/routing/partners/{id}", post(change_partner))
        .with_state(admin)
}

async fn show_flow(State(a): State<Admin>, Path(flow_id): Path<String>) -> Response {
    match flow(&a.pool, &flow_id).await {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => problem(
            StatusCode::NOT_FOUND,
            &format!("no flow {flow_id:?} (an onboarding's, a payout's or a score's flow id)"),
        ),
        Err(e) => unavailable(e),
    }
}

async fn flow(pool: &PgPool, flow_id: &str) -> Result<Option<serde_json::Value>, sqlx::Error> {
    let onboarding: Option<serde_json::Value> = sqlx::query_scalar(
        "SELECT jsonb_build_object('kind', 'onboarding', 'flow_id', flow_id, 'tenant', tenant_id, \
                'applicant_id', applicant_id, 'correlation_id', correlation_id, 'state', state, \
                'region', region, 'risk_tier', risk_tier, 'segment', segment, \
                'kyc', jsonb_build_object('partner', kyc_partner, 'reference', kyc_reference, 'tried', kyc_tried, 'verdict', kyc_verdict), \
                'aml', jsonb_build_object('partner', aml_partner, 'reference', aml_reference, 'tried', aml_tried, 'verdict', aml_verdict), \
                'attempt', attempt, 'failovers', failovers, 'status_checks', status_checks, 'overdue', overdue, \
                'reasons', reasons, 'failure_class', failure_class, \
                'created_at', created_at, 'updated_at', updated_at, 'completed_at', completed_at) \
         FROM onboarding_flows WHERE flow_id = $1",
    )
    .bind(flow_id)
    .fetch_optional(pool)
    .await?;
    let payout: Option<serde_json::Value> = sqlx::query_scalar(
        "SELECT jsonb_build_object('kind', 'payout', 'flow_id', flow_id, 'tenant', tenant_id, \
                'payout_id', payout_id, 'correlation_id', correlation_id, 'state', state_name, \
                'detail', state, 'amount_minor', amount_minor, 'currency', currency, 'attempt', attempt, \
                'flags', flags, 'rescores', rescores, \
                'created_at', created_at, 'updated_at', updated_at, 'completed_at', completed_at) \
         FROM payouts WHERE flow_id = $1",
    )
    .bind(flow_id)
    .fetch_optional(pool)
    .await?;
    let score: Option<serde_json::Value> = sqlx::query_scalar(
        "SELECT jsonb_build_object('kind', 'fraud_score', 'flow_id', flow_id, 'tenant', tenant_id, \
                'transaction_id', transaction_id, 'correlation_id', correlation_id, \
                'state', coalesce(decision, 'scoring'), 'partner', partner, 'tried', tried, \
                'created_at', created_at, 'completed_at', completed_at) \
         FROM fraud_checks WHERE flow_id = $1",
    )
    .bind(flow_id)
    .fetch_optional(pool)
    .await?;
    let Some(mut v) = onboarding.or(payout).or(score) else {
        return Ok(None);
    };
    // The flow's trace (W3C `00-<trace id>-<span id>-<flags>`), to look up in the tracing backend.
    let parent: Option<String> = sqlx::query_scalar(
        "SELECT trace_parent FROM onboarding_flows WHERE flow_id = $1 \
         UNION ALL SELECT trace_parent FROM payouts WHERE flow_id = $1 LIMIT 1",
    )
    .bind(flow_id)
    .fetch_optional(pool)
    .await?
    .flatten();
    v["trace_id"] = parent.as_deref().and_then(|p| p.split('-').nth(1)).into();
    v["history"] = json_rows(
        pool,
        "SELECT jsonb_build_object('at', at, 'event', event, 'detail', detail) FROM flow_history \
         WHERE flow_id = $1 ORDER BY id",
        flow_id,
    )
    .await?
    .into();
    v["references"] = json_rows(
        pool,
        "SELECT jsonb_build_object('partner', partner, 'reference', provider_reference, 'shadow', shadow) \
         FROM provider_refs WHERE flow_id = $1 \
         UNION ALL SELECT jsonb_build_object('partner', partner, 'reference', provider_reference, 'shadow', false) \
         FROM payout_refs WHERE flow_id = $1",
        flow_id,
    )
    .await?
    .into();
    v["timers"] = json_rows(
        pool,
        "SELECT jsonb_build_object('timer', state, 'due_at', due_at) FROM flow_timers WHERE flow_id = $1 \
         UNION ALL SELECT jsonb_build_object('timer', kind, 'due_at', due_at) FROM payout_timers WHERE flow_id = $1",
        flow_id,
    )
    .await?
    .into();
    v["shadow"] = json_rows(
        pool,
        "SELECT jsonb_build_object('domain', domain, 'partner', partner, 'status', status, 'verdict', verdict, \
                'live_verdict', live_verdict, 'agrees', agrees, 'recorded_at', recorded_at) \
         FROM shadow_results WHERE flow_id = $1 ORDER BY id",
        flow_id,
    )
    .await?
    .into();
    Ok(Some(v))
}

#[derive(Deserialize)]
struct ListQuery {
    kind: Option<String>,
    state: Option<String>,
    tenant: Option<String>,
    older_than_seconds: Option<f64>,
    limit: Option<i64>,
}

async fn list_flows(State(a): State<Admin>, Query(q): Query<ListQuery>) -> Response {
    let kind = q.kind.filter(|k| !k.is_empty());
    if let Some(k) = &kind
        && !["onboarding", "payout"].contains(&k.as_str())
    {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("kind must be onboarding or payout, not {k:?}"),
        );
    }
    if q.older_than_seconds.is_some_and(|s| !s.is_finite() || s < 0.0) {
        return problem(StatusCode::UNPROCESSABLE_ENTITY, "older_than_seconds must be 0 or more");
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows: Result<Vec<serde_json::Value>, _> = sqlx::query_scalar(
        "SELECT row FROM ( \
           SELECT jsonb_build_object('kind', 'onboarding', 'flow_id', flow_id, 'tenant', tenant_id, 'state', state, \
                  'created_at', created_at, 'updated_at', updated_at, \
                  'age_seconds', extract(epoch FROM now() - created_at)) AS row, created_at \
           FROM onboarding_flows \
           WHERE ($1::text IS NULL OR $1 = 'onboarding') AND ($2::text IS NULL OR state = $2) \
             AND ($3::text IS NULL OR tenant_id = $3) AND created_at <= now() - make_interval(secs => $4) \
           UNION ALL \
           SELECT jsonb_build_object('kind', 'payout', 'flow_id', flow_id, 'tenant', tenant_id, 'state', state_name, \
                  'created_at', created_at, 'updated_at', updated_at, \
                  'age_seconds', extract(epoch FROM now() - created_at)), created_at \
           FROM payouts \
           WHERE ($1::text IS NULL OR $1 = 'payout') AND ($2::text IS NULL OR state_name = $2) \
             AND ($3::text IS NULL OR tenant_id = $3) AND created_at <= now() - make_interval(secs => $4) \
         ) f ORDER BY created_at LIMIT $5",
    )
    .bind(kind)
    .bind(q.state.filter(|s| !s.is_empty()))
    .bind(q.tenant.filter(|t| !t.is_empty()))
    .bind(q.older_than_seconds.unwrap_or(0.0))
    .bind(limit)
    .fetch_all(&a.pool)
    .await;
    match rows {
        Ok(flows) => Json(serde_json::json!({ "flows": flows, "limit": limit })).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn show_routing(State(a): State<Admin>) -> Response {
    let changes: Result<Vec<serde_json::Value>, _> = sqlx::query_scalar(
        "SELECT jsonb_build_object('id', id, 'at', at, 'by', changed_by, 'partner', partner, 'action', action, 'reason', reason) \
         FROM routing_changes ORDER BY id DESC LIMIT 50",
    )
    .fetch_all(&a.pool)
    .await;
    let changes = match changes {
        Ok(c) => c,
        Err(e) => return unavailable(e),
    };
    let o = a.routing.overrides();
    let mut v = crate::routing_json(&a.routing.get());
    v["overrides"] = serde_json::json!({"enabled": o.enabled, "primary": o.primary});
    v["changes"] = changes.into();
    Json(v).into_response()
}

#[derive(Deserialize)]
struct Change {
    action: String,
    #[serde(default)]
    by: String,
    #[serde(default)]
    reason: String,
}

async fn change_partner(State(a): State<Admin>, Path(id): Path<String>, body: Option<Json<Change>>) -> Response {
    let Some(Json(c)) = body else {
        return problem(
            StatusCode::BAD_REQUEST,
            "the body must be JSON: {\"action\": enable|disable|primary|reset, \"by\", \"reason\"}",
        );
    };
    let mut problems = Vec::new();
    if !["enable", "disable", "primary", "reset"].contains(&c.action.as_str()) {
        problems.push(format!(
            "action must be enable, disable, primary or reset, not {:?}",
            c.action
        ));
    }
    if c.by.trim().is_empty() {
        problems.push("by (who makes the change) must not be empty".to_string());
    }
    if c.reason.trim().is_empty() {
        problems.push("reason must not be empty (it is kept with the change)".to_string());
    }
    if !problems.is_empty() {
        return problem(StatusCode::UNPROCESSABLE_ENTITY, &problems.join("; "));
    }
    let file = a.routing.file();
    let Some(partner) = file.partners.iter().find(|p| p.id == id) else {
        return problem(
            StatusCode::NOT_FOUND,
            &format!("no partner {id:?} in the routing file's catalog"),
        );
    };
    if c.action == "primary" && !file.routes.iter().any(|r| r.secondary.as_ref() == Some(&id)) {
        return problem(
            StatusCode::CONFLICT,
            &format!(
                "no {} route names {id:?} as its secondary: nothing to make primary",
                partner.domain
            ),
        );
    }
    let result = async {
        let mut tx = a.pool.begin().await?;
        match c.action.as_str() {
            "reset" => {
                sqlx::query("DELETE FROM routing_overrides WHERE partner = $1")
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
            }
            "primary" => {
                sqlx::query(
                    "INSERT INTO routing_overrides (partner, is_primary) VALUES ($1, true) \
                     ON CONFLICT (partner) DO UPDATE SET is_primary = true, changed_at = now()",
                )
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            }
            on_off => {
                sqlx::query(
                    "INSERT INTO routing_overrides (partner, enabled) VALUES ($1, $2) \
                     ON CONFLICT (partner) DO UPDATE SET enabled = $2, changed_at = now()",
                )
                .bind(&id)
                .bind(on_off == "enable")
                .execute(&mut *tx)
                .await?;
            }
        }
        let change: i64 = sqlx::query_scalar(
            "INSERT INTO routing_changes (changed_by, partner, action, reason) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(&c.by)
        .bind(&id)
        .bind(&c.action)
        .bind(&c.reason)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok::<i64, sqlx::Error>(change)
    }
    .await;
    let change = match result {
        Ok(c) => c,
        Err(e) => return unavailable(e),
    };
    match load_overrides(&a.pool).await {
        Ok(o) => a.routing.set_overrides(o),
        Err(e) => tracing::warn!(error = %e, "routing change stored; put in force at the next look"),
    }
    tracing::info!(partner = %id, action = %c.action, by = %c.by, reason = %c.reason, change, "routing changed by an operator");
    Json(serde_json::json!({"change": change, "partner": id, "action": c.action})).into_response()
}

/// The overrides in force, as stored.
pub async fn load_overrides(pool: &PgPool) -> Result<Overrides, sqlx::Error> {
    let rows: Vec<(String, Option<bool>, bool)> =
        sqlx::query_as("SELECT partner, enabled, is_primary FROM routing_overrides")
            .fetch_all(pool)
            .await?;
    let mut o = Overrides::default();
    for (partner, enabled, primary) in rows {
        if let Some(on) = enabled {
            o.enabled.insert(partner.clone(), on);
        }
        if primary {
            o.primary.insert(partner);
        }
    }
    Ok(o)
}

/// Loads the overrides before the first flow is routed, then follows changes made through any
/// instance (a new row in `routing_changes`).
pub async fn follow_overrides(
    pool: PgPool,
    routing: Routing,
    shutdown: Shutdown,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    routing.set_overrides(load_overrides(&pool).await?);
    let mut seen = last_change(&pool).await?;
    Ok(tokio::spawn(async move {
        while shutdown.sleep(FOLLOW_EVERY).await {
            match last_change(&pool).await {
                Ok(now) if now != seen => match load_overrides(&pool).await {
                    Ok(o) => {
                        routing.set_overrides(o);
                        seen = now;
                        tracing::info!(change = now, "routing overrides put in force");
                    }
                    Err(e) => tracing::warn!(error = %e, "routing overrides not read; trying again"),
                },
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "routing changes not read; trying again"),
            }
        }
    }))
}

async fn last_change(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM routing_changes")
        .fetch_one(pool)
        .await
}
