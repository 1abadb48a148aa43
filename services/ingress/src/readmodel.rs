//! The read model behind `GET /v1/onboardings/{id}`, built from `onboarding.outcomes.v1`. A completed
//! flow is never moved back by a late step event.

use sqlx::PgConnection;
use switchyard_model::events::onboarding::{OnboardingCompleted, OnboardingStepChanged};
use switchyard_runtime::{Handler, HandlerError, Incoming};

pub struct ReadModel;

impl Handler for ReadModel {
    type Prepared = ();

    async fn prepare(&self, _: &Incoming) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn handle(&self, conn: &mut PgConnection, msg: &Incoming, (): ()) -> Result<(), HandlerError> {
        let perm = |e: switchyard_model::SchemaError| HandlerError::Permanent(e.to_string());
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
        }
        Ok(())
    }
}
