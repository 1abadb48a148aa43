//! The card flow's rows: the card, its processor tokens, its history (all SQL of the card flow).

use sqlx::{PgConnection, Row};
use switchyard_model::events::{
    cards::{CardFormFactor, SpendControls},
    common::{Money, Person},
};
use switchyard_runtime::HandlerError;

use super::state::Card;

type R<T> = Result<T, HandlerError>;

fn perm(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Permanent(e.to_string())
}

/// What an issue needs to be sent (again, on failover): kept until the card is issued.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IssueOrder {
    pub cardholder: Option<Person>,
    pub product: Option<String>,
    pub form_factor: Option<CardFormFactor>,
    pub controls: Option<SpendControls>,
    pub funding: Option<Money>,
    pub spend_limit: Option<Money>,
}

#[derive(Debug, Clone)]
pub struct Flow {
    pub flow_id: String,
    pub tenant_id: String,
    pub card_id: String,
    pub cardholder_id: String,
    pub correlation_id: String,
    pub order: IssueOrder,
}

pub use switchyard_model::events::cards::flow_id;

/// A new card flow; false when the tenant's card id exists (nothing written).
pub async fn insert(conn: &mut PgConnection, flow: &Flow, card: &Card) -> R<bool> {
    let done = sqlx::query(
        "INSERT INTO card_flows (flow_id, tenant_id, card_id, cardholder_id, correlation_id, state_name, card, issue_order) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (flow_id) DO NOTHING",
    )
    .bind(&flow.flow_id)
    .bind(&flow.tenant_id)
    .bind(&flow.card_id)
    .bind(&flow.cardholder_id)
    .bind(&flow.correlation_id)
    .bind(card.name())
    .bind(serde_json::to_value(card).map_err(perm)?)
    .bind(serde_json::to_value(&flow.order).map_err(perm)?)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The card flow, locked for the transaction.
pub async fn load(conn: &mut PgConnection, flow_id: &str) -> R<Option<(Flow, Card)>> {
    let Some(row) = sqlx::query(
        "SELECT tenant_id, card_id, cardholder_id, correlation_id, card, issue_order FROM card_flows \
         WHERE flow_id = $1 FOR UPDATE",
    )
    .bind(flow_id)
    .fetch_optional(conn)
    .await?
    else {
        return Ok(None);
    };
    let card: Card = serde_json::from_value(row.get("card")).map_err(perm)?;
    let order: IssueOrder = serde_json::from_value(row.get("issue_order")).unwrap_or_default();
    Ok(Some((
        Flow {
            flow_id: flow_id.to_string(),
            tenant_id: row.get("tenant_id"),
            card_id: row.get("card_id"),
            cardholder_id: row.get("cardholder_id"),
            correlation_id: row.get("correlation_id"),
            order,
        },
        card,
    )))
}

/// Writes the card and its history; the issue order is forgotten once the card is issued (the
/// cardholder's details are the processor's from then on).
pub async fn save(
    conn: &mut PgConnection,
    flow: &Flow,
    card: &Card,
    history: &[(&'static str, serde_json::Value)],
) -> R<()> {
    let (events, details): (Vec<&str>, Vec<&serde_json::Value>) = history.iter().map(|(e, d)| (*e, d)).unzip();
    let issued = card.card_token.is_some() || card.failed;
    sqlx::query(
        "WITH history AS (INSERT INTO flow_history (flow_id, event, detail) \
           SELECT $1, e, d FROM unnest($4::text[], $5::jsonb[]) WITH ORDINALITY AS h (e, d, n) ORDER BY n) \
         UPDATE card_flows SET state_name = $2, card = $3, updated_at = now(), \
         issue_order = CASE WHEN $6 THEN '{}'::jsonb ELSE issue_order END WHERE flow_id = $1",
    )
    .bind(&flow.flow_id)
    .bind(card.name())
    .bind(serde_json::to_value(card).map_err(perm)?)
    .bind(events)
    .bind(details)
    .bind(issued)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn remember_token(conn: &mut PgConnection, partner: &str, card_token: &str, flow_id: &str) -> R<()> {
    sqlx::query("INSERT INTO card_tokens (partner, card_token, flow_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(partner)
        .bind(card_token)
        .bind(flow_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The card flow of a processor's token, with the card's id.
pub async fn card_of_token(conn: &mut PgConnection, partner: &str, card_token: &str) -> R<Option<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT t.flow_id, f.card_id FROM card_tokens t JOIN card_flows f USING (flow_id) \
         WHERE t.partner = $1 AND t.card_token = $2",
    )
    .bind(partner)
    .bind(card_token)
    .fetch_optional(conn)
    .await?)
}

/// A tenant's card flow named by its token alone (a command that names no card id).
pub async fn flow_of_tenant_token(conn: &mut PgConnection, tenant: &str, card_token: &str) -> R<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT t.flow_id FROM card_tokens t JOIN card_flows f USING (flow_id) \
         WHERE t.card_token = $1 AND f.tenant_id = $2 LIMIT 1",
    )
    .bind(card_token)
    .bind(tenant)
    .fetch_optional(conn)
    .await?)
}
