//! The read models behind `GET /v1/onboardings/{id}`, `GET /v1/payouts/{id}`,
//! `GET /v1/fraud/scores/{id}` and `GET /v1/cards/{id}`, built from the outcome topics. A completed flow is never moved back
//! by a late step event; a settled payout that comes back shows as `returned` and `reversed`.

use sqlx::PgConnection;
use switchyard_model::events::{
    fraud::FraudCheckCompleted,
    onboarding::{OnboardingCompleted, OnboardingStepChanged},
    payouts::{PayoutCompleted, PayoutReversed, PayoutStatus, PayoutStepChanged},
};
use switchyard_runtime::{Handler, HandlerError, Incoming};

pub struct ReadModel;

impl Handler for ReadModel {
    type Prepared = ();

    async fn prepare(&self, _: &Incoming) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, conn: &mut PgConnection, msg: &Incoming, (): ()) -> Result<(), HandlerError> {
        let perm = |e: switchyard_model::SchemaError| HandlerError::Permanent(e.to_string());
        if crate::cards::project(conn, msg).await? || crate::openbanking::project(conn, msg).await? {
            return Ok(());
        }
        if let Some(s) = msg.event.as_event::<OnboardingStepChanged>() {
            let s = s.map_err(perm)?;
            let (kyc, aml) = if s.step.starts_with("aml") {
                (None, s.partner.clone())
            } else {
                (s.partner.clone(), None)
            };
            sqlx::query(
                "INSERT INTO onboardings (flow_id, tenant_id, applicant_id, status, step, kyc_partner, aml_partner) \
                 VALUES ($1, $2, $3, 'in_progress', $4, $5, $6) \
                 ON CONFLICT (flow_id) DO UPDATE SET status = 'in_progress', step = EXCLUDED.step, \
                 kyc_partner = COALESCE(EXCLUDED.kyc_partner, onboardings.kyc_partner), \
                 aml_partner = COALESCE(EXCLUDED.aml_partner, onboardings.aml_partner), updated_at = now() \
                 WHERE onboardings.status <> 'completed'",
            )
            .bind(&s.envelope.flow_id)
            .bind(&s.envelope.tenant_id)
            .bind(&s.applicant_id)
            .bind(&s.step)
            .bind(kyc)
            .bind(aml)
            .execute(conn)
            .await?;
            return Ok(());
        }
        if let Some(c) = msg.event.as_event::<OnboardingCompleted>() {
            let c = c.map_err(perm)?;
            sqlx::query(
                "INSERT INTO onboardings (flow_id, tenant_id, applicant_id, status, step, decision, kyc_partner, aml_partner, \
                 reasons, failure_code, completed_at) VALUES ($1, $2, $3, 'completed', $4, $4, $5, $6, $7, $8, now()) \
                 ON CONFLICT (flow_id) DO UPDATE SET status = 'completed', step = EXCLUDED.step, decision = EXCLUDED.decision, \
                 kyc_partner = EXCLUDED.kyc_partner, aml_partner = EXCLUDED.aml_partner, reasons = EXCLUDED.reasons, \
                 failure_code = EXCLUDED.failure_code, completed_at = EXCLUDED.completed_at, updated_at = now()",
            )
            .bind(&c.envelope.flow_id)
            .bind(&c.envelope.tenant_id)
            .bind(&c.applicant_id)
            .bind(c.decision.as_str())
            .bind(&c.kyc_partner)
            .bind(&c.aml_partner)
            .bind(&c.reasons)
            .bind(c.failure.as_ref().map(|f| f.code.clone()))
            .execute(conn)
            .await?;
            return Ok(());
        }
        if let Some(s) = msg.event.as_event::<PayoutStepChanged>() {
            let s = s.map_err(perm)?;
            // Steps that say where the payout is; others (a late fraud score) add to its reasons.
            let moves = matches!(
                s.step.as_str(),
                "screening" | "held_for_review" | "released" | "routed" | "processing" | "in_doubt" | "manual_repair"
            );
            sqlx::query(
                "UPDATE payouts SET status = CASE WHEN $3 AND completed_at IS NULL THEN $4 ELSE status END,                  partner = CASE WHEN $3 AND completed_at IS NULL THEN COALESCE($5, partner) ELSE partner END,                  reasons = CASE WHEN $3 THEN reasons ELSE reasons || $6 END, updated_at = now()                  WHERE tenant_id = $1 AND payout_id = $2",
            )
            .bind(&s.envelope.tenant_id)
            .bind(&s.payout_id)
            .bind(moves)
            .bind(&s.step)
            .bind(s.partner.as_deref().filter(|p| !p.starts_with("fraud")))
            .bind(
                std::iter::once(s.step.clone())
                    .chain(s.reasons.iter().cloned())
                    .collect::<Vec<_>>(),
            )
            .execute(conn)
            .await?;
            return Ok(());
        }
        if let Some(c) = msg.event.as_event::<PayoutCompleted>() {
            let c = c.map_err(perm)?;
            let code = c.failure.as_ref().map(|f| f.code.clone());
            let status = match c.status {
                PayoutStatus::Settled => "settled",
                PayoutStatus::Returned => "returned",
                _ if code.as_deref() == Some("cancelled") => "cancelled",
                _ => "failed",
            };
            sqlx::query(
                "UPDATE payouts SET status = $3, partner = NULLIF($4, ''), provider_reference = $5, reasons = $6,                  failure_code = $7, completed_at = COALESCE(completed_at, now()), updated_at = now()                  WHERE tenant_id = $1 AND payout_id = $2 AND NOT reversed",
            )
            .bind(&c.envelope.tenant_id)
            .bind(&c.payout_id)
            .bind(status)
            .bind(&c.partner)
            .bind(&c.provider_reference)
            .bind(&c.reasons)
            .bind(code)
            .execute(conn)
            .await?;
            return Ok(());
        }
        if let Some(r) = msg.event.as_event::<PayoutReversed>() {
            let r = r.map_err(perm)?;
            sqlx::query(
                "UPDATE payouts SET status = 'returned', reversed = true, reasons = reasons || $3, updated_at = now()                  WHERE tenant_id = $1 AND payout_id = $2",
            )
            .bind(&r.envelope.tenant_id)
            .bind(&r.payout_id)
            .bind(vec![format!(
                "returned after settlement: {}",
                r.reason.as_deref().unwrap_or("other")
            )])
            .execute(conn)
            .await?;
            return Ok(());
        }
        if let Some(f) = msg.event.as_event::<FraudCheckCompleted>() {
            let f = f.map_err(perm)?;
            let lower = |s: String| s.to_lowercase();
            sqlx::query(
                "UPDATE fraud_scores SET status = 'scored', decision = $3, score = $4, band = $5, partner = NULLIF($6, ''),                  reasons = $7, failure_code = $8, completed_at = now() WHERE tenant_id = $1 AND transaction_id = $2",
            )
            .bind(&f.envelope.tenant_id)
            .bind(&f.transaction_id)
            .bind(lower(format!("{:?}", f.decision)))
            .bind(f.score)
            .bind(f.band.map(|b| lower(format!("{b:?}"))))
            .bind(&f.partner)
            .bind(&f.reasons)
            .bind(f.failure.as_ref().map(|x| x.code.clone()))
            .execute(conn)
            .await?;
        }
        Ok(())
    }
}
