//! Where authorization decisions are made durable: one transaction per question, with the card's row
//! locked (two purchases on one card are decided one after the other, never both against the same
//! money), the decision recorded under the processor's transaction id (asked again, the same answer,
//! nothing held twice), and the money held. Reversals give a hold back; clearings settle it at the
//! final amount. Each is idempotent.

use sqlx::{PgConnection, PgPool, Row};

use crate::authorize::{Authorization, Card, CardState, Controls, Decision, DeclineReason, Usage, decide};

/// A decision, and whether it is one made earlier for the same transaction (the processor asked again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decided {
    pub decision: Decision,
    pub replayed: bool,
}

/// Registers (or updates) a card the mesh decides for.
pub async fn put_card(pool: &PgPool, tenant: &str, card: &Card) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO card_accounts (card_token, tenant_id, state, currency, controls, available_minor) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (card_token) DO UPDATE SET state = $3, currency = $4, controls = $5, \
         available_minor = $6, updated_at = now()",
    )
    .bind(&card.token)
    .bind(tenant)
    .bind(card.state.as_str())
    .bind(&card.currency)
    .bind(serde_json::to_value(&card.controls).unwrap_or_default())
    .bind(card.available_minor)
    .execute(pool)
    .await?;
    Ok(())
}

/// Decides `auth` and records the decision, in one transaction.
pub async fn authorize(pool: &PgPool, auth: &Authorization) -> Result<Decided, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let decided = authorize_in(&mut tx, auth).await?;
    tx.commit().await?;
    Ok(decided)
}

/// Decides `auth` and records the decision inside the caller's transaction (which may add the
/// decision's event to the outbox before it commits).
pub async fn authorize_in(tx: &mut PgConnection, auth: &Authorization) -> Result<Decided, sqlx::Error> {
    // The card first, locked: its row orders every question about it.
    let row = sqlx::query(
        "SELECT state, currency, controls, available_minor FROM card_accounts WHERE card_token = $1 FOR UPDATE",
    )
    .bind(&auth.card_token)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(earlier) = earlier(&mut *tx, &auth.partner, &auth.transaction_id).await? {
        return Ok(Decided {
            decision: earlier,
            replayed: true,
        });
    }
    let card = row.map(|r| Card {
        token: auth.card_token.clone(),
        state: CardState::parse(r.get::<String, _>("state").as_str()).unwrap_or(CardState::Inactive),
        currency: r.get("currency"),
        controls: serde_json::from_value::<Controls>(r.get("controls")).unwrap_or_default(),
        available_minor: r.get("available_minor"),
    });
    let usage = match &card {
        Some(_) => usage(&mut *tx, &auth.card_token).await?,
        None => Usage::default(),
    };
    let decision = decide(card.as_ref(), usage, auth);
    record(&mut *tx, auth, decision, "DECIDED").await?;
    Ok(Decided {
        decision,
        replayed: false,
    })
}

/// Records a decision and holds the money of an approval. `how`: DECIDED (by the rules), FALLBACK
/// (our deadline passed) or STAND_IN (the processor decided without us).
async fn record(tx: &mut PgConnection, auth: &Authorization, decision: Decision, how: &str) -> Result<(), sqlx::Error> {
    let (label, reason, status) = match decision {
        Decision::Approve => ("APPROVED", None, "held"),
        Decision::Decline(r) => ("DECLINED", Some(r.as_str()), "declined"),
    };
    sqlx::query(
        "INSERT INTO card_authorizations (partner, provider_transaction_id, card_token, amount_minor, currency, \
         mcc, merchant_country, decision, decline_reason, status, decided_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&auth.partner)
    .bind(&auth.transaction_id)
    .bind(&auth.card_token)
    .bind(auth.amount_minor)
    .bind(&auth.currency)
    .bind(&auth.merchant.mcc)
    .bind(&auth.merchant.country)
    .bind(label)
    .bind(reason)
    .bind(status)
    .bind(how)
    .execute(&mut *tx)
    .await?;
    if decision == Decision::Approve {
        spend(tx, &auth.card_token, auth.amount_minor, None).await?;
    }
    Ok(())
}

/// Makes the record say what the processor was told when our deadline passed and the fallback
/// answered: the rules' decision may have committed after all (an approval's hold is then given
/// back if the fallback declined), or not at all (the fallback's decision is recorded). True when
/// the record changed (its event is then the caller's to write, in `tx`).
pub async fn settle_fallback(
    tx: &mut PgConnection,
    auth: &Authorization,
    answered: Decision,
) -> Result<bool, sqlx::Error> {
    conform(tx, auth, answered, "FALLBACK").await
}

/// An authorization as its processor decided it in the end (reported by its webhook): a purchase it
/// decided without us (its stand-in rules while our endpoint did not answer, or its own decline
/// before asking) is recorded as it stands, an approval held whatever the card's money (it may go
/// below zero: the processor has approved it); one we decided but whose answer never reached it (we
/// died before answering) is corrected to the processor's word. False when the record already says
/// so.
pub async fn stand_in(tx: &mut PgConnection, auth: &Authorization, decision: Decision) -> Result<bool, sqlx::Error> {
    conform(tx, auth, decision, "STAND_IN").await
}

/// Makes the record of `auth` say `decision` (`how`: who decided it), moving the money with it.
async fn conform(
    tx: &mut PgConnection,
    auth: &Authorization,
    decision: Decision,
    how: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query("SELECT 1 FROM card_accounts WHERE card_token = $1 FOR UPDATE")
        .bind(&auth.card_token)
        .execute(&mut *tx)
        .await?;
    match earlier(&mut *tx, &auth.partner, &auth.transaction_id).await? {
        None => {
            record(&mut *tx, auth, decision, how).await?;
            Ok(true)
        }
        // The same way (a decline's reason in the processor's words may differ: ours stands).
        Some(d) if (d == Decision::Approve) == (decision == Decision::Approve) => Ok(false),
        Some(Decision::Approve) => {
            // We approved, the processor declined: nothing will clear; the hold goes back.
            release(&mut *tx, &auth.partner, &auth.transaction_id, decision, how).await?;
            Ok(true)
        }
        Some(Decision::Decline(_)) => {
            // We declined, the processor approved: the money is spent; hold it.
            sqlx::query("DELETE FROM card_authorizations WHERE partner = $1 AND provider_transaction_id = $2")
                .bind(&auth.partner)
                .bind(&auth.transaction_id)
                .execute(&mut *tx)
                .await?;
            record(&mut *tx, auth, decision, how).await?;
            Ok(true)
        }
    }
}

/// An approval recorded as declined after all: its hold goes back.
async fn release(
    tx: &mut PgConnection,
    partner: &str,
    transaction_id: &str,
    now: Decision,
    how: &str,
) -> Result<(), sqlx::Error> {
    let reason = match now {
        Decision::Decline(r) => r.as_str(),
        Decision::Approve => return Ok(()),
    };
    let released: Option<(String, i64, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "UPDATE card_authorizations SET decision = 'DECLINED', decline_reason = $3, status = 'declined', \
         decided_by = $4 WHERE partner = $1 AND provider_transaction_id = $2 AND status = 'held' \
         RETURNING card_token, amount_minor, decided_at",
    )
    .bind(partner)
    .bind(transaction_id)
    .bind(reason)
    .bind(how)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((card, amount, at)) = released {
        spend(tx, &card, -amount, Some(at)).await?;
    }
    Ok(())
}

/// Opens the account of a card just issued: its state, controls and funding (only the first time:
/// a redelivered issue never resets the money).
pub async fn open_account(
    tx: &mut PgConnection,
    tenant: &str,
    flow_id: &str,
    card: &Card,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO card_accounts (card_token, tenant_id, state, currency, controls, available_minor, flow_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (card_token) DO NOTHING",
    )
    .bind(&card.token)
    .bind(tenant)
    .bind(card.state.as_str())
    .bind(&card.currency)
    .bind(serde_json::to_value(&card.controls).unwrap_or_default())
    .bind(card.available_minor)
    .bind(flow_id)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The tenant and flow of a card, when the mesh issued it.
pub async fn owner(tx: &mut PgConnection, card_token: &str) -> Result<Option<(String, Option<String>)>, sqlx::Error> {
    sqlx::query_as("SELECT tenant_id, flow_id FROM card_accounts WHERE card_token = $1")
        .bind(card_token)
        .fetch_optional(tx)
        .await
}

/// A card's state as its processor now has it.
pub async fn set_state(tx: &mut PgConnection, card_token: &str, state: CardState) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE card_accounts SET state = $2, updated_at = now() WHERE card_token = $1")
        .bind(card_token)
        .bind(state.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn earlier(
    conn: &mut sqlx::PgConnection,
    partner: &str,
    transaction_id: &str,
) -> Result<Option<Decision>, sqlx::Error> {
    let row: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT decision, decline_reason FROM card_authorizations WHERE partner = $1 AND provider_transaction_id = $2",
    )
    .bind(partner)
    .bind(transaction_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(d, r)| match d.as_str() {
        "APPROVED" => Decision::Approve,
        _ => Decision::Decline(
            r.as_deref()
                .and_then(DeclineReason::parse)
                .unwrap_or(DeclineReason::Unavailable),
        ),
    }))
}

/// What the card has held or cleared since the start of the day and of the month (UTC): its
/// running totals, those of an earlier day or month counting as nothing.
async fn usage(conn: &mut sqlx::PgConnection, card_token: &str) -> Result<Usage, sqlx::Error> {
    let (day, month): (i64, i64) = sqlx::query_as(
        "SELECT CASE WHEN day_start = (now() AT TIME ZONE 'UTC')::date THEN day_minor ELSE 0 END, \
                CASE WHEN month_start = date_trunc('month', now() AT TIME ZONE 'UTC')::date THEN month_minor ELSE 0 END \
         FROM card_accounts WHERE card_token = $1",
    )
    .bind(card_token)
    .fetch_one(conn)
    .await?;
    Ok(Usage {
        day_minor: day,
        month_minor: month,
    })
}

/// Moves a card's money and its spend totals: `available` by `-spent`, and the day's and month's
/// totals by `spent` when the authorization was decided in the current day / month (`decided_at`;
/// now for a new one). The card's row is locked by the caller's statement or by this update.
async fn spend(
    tx: &mut PgConnection,
    card_token: &str,
    spent: i64,
    decided_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE card_accounts SET available_minor = available_minor - $2, \
           day_minor = CASE WHEN day_start = (now() AT TIME ZONE 'UTC')::date THEN day_minor ELSE 0 END \
             + CASE WHEN ($3::timestamptz IS NULL OR ($3 AT TIME ZONE 'UTC')::date = (now() AT TIME ZONE 'UTC')::date) \
               THEN $2 ELSE 0 END, \
           day_start = (now() AT TIME ZONE 'UTC')::date, \
           month_minor = CASE WHEN month_start = date_trunc('month', now() AT TIME ZONE 'UTC')::date THEN month_minor ELSE 0 END \
             + CASE WHEN ($3::timestamptz IS NULL OR date_trunc('month', $3 AT TIME ZONE 'UTC') = date_trunc('month', now() AT TIME ZONE 'UTC')) \
               THEN $2 ELSE 0 END, \
           month_start = date_trunc('month', now() AT TIME ZONE 'UTC')::date, \
           updated_at = now() WHERE card_token = $1",
    )
    .bind(card_token)
    .bind(spent)
    .bind(decided_at)
    .execute(tx)
    .await?;
    Ok(())
}

/// A reversal: an approved authorization's hold goes back to the card. False when there was no
/// hold to give back (unknown, declined, already reversed or cleared).
pub async fn reverse(tx: &mut PgConnection, partner: &str, transaction_id: &str) -> Result<bool, sqlx::Error> {
    let released: Option<(String, i64, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "UPDATE card_authorizations SET status = 'reversed' \
         WHERE partner = $1 AND provider_transaction_id = $2 AND status = 'held' \
         RETURNING card_token, amount_minor, decided_at",
    )
    .bind(partner)
    .bind(transaction_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((card, amount, at)) = &released {
        spend(tx, card, -amount, Some(*at)).await?;
    }
    Ok(released.is_some())
}

/// A clearing: the held authorization settles at `final_minor` (a tip, a partial shipment); the
/// difference goes back to (or comes from) the card. False when there was no hold to settle.
pub async fn clear(
    tx: &mut PgConnection,
    partner: &str,
    transaction_id: &str,
    final_minor: i64,
) -> Result<bool, sqlx::Error> {
    let settled: Option<(String, i64, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "UPDATE card_authorizations SET status = 'cleared', cleared_minor = $3 \
         WHERE partner = $1 AND provider_transaction_id = $2 AND status = 'held' \
         RETURNING card_token, amount_minor, decided_at",
    )
    .bind(partner)
    .bind(transaction_id)
    .bind(final_minor)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((card, held, at)) = &settled {
        spend(tx, card, final_minor - held, Some(*at)).await?;
    }
    Ok(settled.is_some())
}

/// The money available to a card now.
pub async fn available(pool: &PgPool, card_token: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT available_minor FROM card_accounts WHERE card_token = $1")
        .bind(card_token)
        .fetch_optional(pool)
        .await
}
