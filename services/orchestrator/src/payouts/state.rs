//! The payout flow's states, what moves them, and what they ask the shell to do. No I/O here.
//!
//! ```text
//!  start ─▶ screening ─┬─ deny ────────────────────────────────────────▶ failed (fraud_blocked)
//!                      ├─ review ─▶ held_for_review ─┬─ reject ────────▶ failed (review_rejected)
//!                      │                             └─ release ─┐
//!                      ├─ allow ─────────────────────────────────┤
//!                      └─ no partner could score: fail mode ─────┘ (or failed: fraud_unavailable)
//!  paying ─┬─ accepted ─▶ processing ─┬─ paid ─▶ settled ─ returned ─▶ returned (+ reversal)
//!          │                          └─ failed / returned ────────▶ failed / returned
//!          ├─ refused, no live case ─▶ next partner (failover) or failed
//!          └─ unknown ─▶ in_doubt ─ status query ─▶ (as above), or manual_repair
//!                        └──────┴─ the partner's record, from reconciliation ─▶ (as above)
//! ```
//!
//! A payout whose execution may have happened never goes to another partner: only a failure the
//! adapter reports (it guarantees the partner has no live case) or a status query that finds
//! nothing moves it on.

use serde::{Deserialize, Serialize};
use switchyard_model::events::{common::Failure, fraud::FraudDecision, payouts::PayoutStatus};

/// A payout's execution at one partner: the request (its event id is the execution's key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    pub partner: String,
    pub request: uuid::Uuid,
    /// The partner's id for the payout, once known.
    pub reference: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// Fraud screening at `partner`.
    Screening { partner: String, tried: Vec<String> },
    /// Held after screening until a reviewer releases or rejects it.
    HeldForReview { partner: String, score: i32 },
    /// Asked `live.partner` to pay; no answer yet.
    Paying { live: Execution, tried: Vec<String> },
    /// The partner's answer did not say whether it paid: a status query after a while.
    InDoubt {
        live: Execution,
        tried: Vec<String>,
        checks: u32,
    },
    /// Status queries could not tell: an operator must find out at the partner.
    ManualRepair { live: Execution, tried: Vec<String> },
    /// Accepted by the partner, money on its way.
    Processing { live: Execution, at_ms: i64 },
    /// The product was told it is paid (a return may still come).
    Settled { live: Execution, at_ms: i64 },
    /// Terminal: failed, returned or cancelled.
    Done {
        status: PayoutStatus,
        code: Option<String>,
        live: Option<Execution>,
        at_ms: i64,
    },
}

impl State {
    /// The state's name as stored, shown and queried.
    pub fn name(&self) -> &'static str {
        match self {
            State::Screening { .. } => "screening",
            State::HeldForReview { .. } => "held_for_review",
            State::Paying { .. } => "paying",
            State::InDoubt { .. } => "in_doubt",
            State::ManualRepair { .. } => "manual_repair",
            State::Processing { .. } => "processing",
            State::Settled { .. } => "settled",
            State::Done {
                status: PayoutStatus::Returned,
                ..
            } => "returned",
            State::Done { code: Some(c), .. } if c == "cancelled" => "cancelled",
            State::Done { .. } => "failed",
        }
    }

    /// The execution at a partner, if one was asked for.
    pub fn live(&self) -> Option<&Execution> {
        match self {
            State::Paying { live, .. }
            | State::InDoubt { live, .. }
            | State::ManualRepair { live, .. }
            | State::Processing { live, .. }
            | State::Settled { live, .. } => Some(live),
            State::Done { live, .. } => live.as_ref(),
            State::Screening { .. } | State::HeldForReview { .. } => None,
        }
    }

    /// No partner was asked to pay yet: the payout can still be cancelled by us alone.
    pub fn cancellable(&self) -> bool {
        matches!(self, State::Screening { .. } | State::HeldForReview { .. })
    }
}

/// What the route and policy say for this payout, worked out by the shell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Payout partners that can pay it, in order.
    pub payout: Vec<String>,
    /// Fraud partners, in order.
    pub fraud: Vec<String>,
    /// When no fraud partner can score: go ahead below this amount (minor units).
    pub fail_open_below_minor: Option<i64>,
    /// The payout's amount in minor units.
    pub amount_minor: i64,
    /// Status queries of a payout in doubt before it goes to an operator.
    pub max_status_checks: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FraudAnswer {
    pub partner: String,
    pub decision: FraudDecision,
    pub score: i32,
    pub reasons: Vec<String>,
    pub failure: Option<Failure>,
}

/// The payouts adapter's answer: to a payout request or to a status query.
#[derive(Debug, Clone, PartialEq)]
pub struct PayAnswer {
    pub partner: String,
    /// The event id of the request it answers (the status query carries the original's).
    pub request: uuid::Uuid,
    pub reference: Option<String>,
    pub status: PayoutStatus,
    pub failure: Option<Failure>,
}

/// A partner's record of a payout, read from its list by reconciliation.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    pub partner: String,
    pub reference: String,
    pub status: PayoutStatus,
    /// Where it was read.
    pub evidence: String,
}

/// A partner's status webhook, by its own time.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub partner: String,
    pub reference: String,
    pub status: PayoutStatus,
    pub at_ms: i64,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Fraud(FraudAnswer),
    Review {
        release: bool,
        reviewer: String,
    },
    Cancel,
    Paid(PayAnswer),
    Notice(Notice),
    /// The partner's own record of the payout, found by reconciliation (`ResolvePayout`).
    Resolve(Resolution),
    /// The in-doubt timer.
    StatusCheck,
    /// The processing timer.
    Poll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    StatusCheck,
    /// A payout processing longer than expected: its partner is asked (a webhook may be lost).
    Poll,
    /// Score a payout that went ahead unscreened, later.
    Rescore,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Ask a fraud partner to score the payout.
    Score {
        partner: String,
    },
    /// Ask a payout partner to pay (the request's event id is `live.request`).
    Pay {
        live: Execution,
        attempt: i32,
    },
    /// Ask the partner what became of `live` (never a send).
    Query {
        live: Execution,
    },
    /// Ask the partner to cancel `live` if it still can.
    CancelAt {
        live: Execution,
    },
    /// Remember which payout the partner's reference belongs to (its webhooks name only that).
    Reference {
        partner: String,
        reference: String,
    },
    /// A step outcome on `payouts.outcomes.v1`.
    Step {
        step: &'static str,
        partner: Option<String>,
        reasons: Vec<String>,
    },
    /// The terminal outcome (SETTLED may later be followed by a reversal).
    Complete {
        status: PayoutStatus,
        failure: Option<Failure>,
        reasons: Vec<String>,
    },
    /// Compensation: a payout told SETTLED came back.
    Reverse {
        reason: Option<String>,
    },
    /// Gives back the velocity the payout had taken (nothing was paid).
    ReleaseVelocity,
    Arm(Timer, bool),
    Failover {
        from: String,
        to: String,
        cause: String,
    },
    /// Marks the payout (carried in its outcome's reasons), e.g. `fraud_unscreened`.
    Flag(&'static str),
    Note {
        event: &'static str,
        detail: String,
    },
}
