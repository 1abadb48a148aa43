//! `reconciliation.findings.v1`.

use serde::{Deserialize, Serialize};

use super::{common::Money, event};
use crate::Envelope;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FindingKind {
    /// The partner has it; no flow of ours does.
    MissingInternally,
    /// We say it happened; the partner has no such record.
    MissingAtProvider,
    StatusMismatch,
    AmountMismatch,
    /// The partner executed one payout more than once.
    DuplicateExecution,
    /// The partner returned a payout we still hold as settled (no return reached the flow).
    LateReturn,
    /// The partner's record settled a payout the flow held in doubt; the flow was told
    /// (`ResolvePayout`), the one thing reconciliation does rather than raise.
    InDoubtResolved,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::MissingInternally => "missing_internally",
            FindingKind::MissingAtProvider => "missing_at_provider",
            FindingKind::StatusMismatch => "status_mismatch",
            FindingKind::AmountMismatch => "amount_mismatch",
            FindingKind::DuplicateExecution => "duplicate_execution",
            FindingKind::LateReturn => "late_return",
            FindingKind::InDoubtResolved => "in_doubt_resolved",
        }
    }
}

/// A difference between a partner's truth and ours, raised once when first found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconciliationFinding {
    pub envelope: Envelope,
    pub domain: String,
    pub partner: String,
    pub kind: FindingKind,
    pub internal_reference: Option<String>,
    pub provider_reference: Option<String>,
    pub detail: String,
    pub expected_amount: Option<Money>,
    pub provider_amount: Option<Money>,
}
event!(
    ReconciliationFinding,
    "com.switchyard.reconciliation.ReconciliationFinding",
    "reconciliation.findings.v1"
);
