//! The onboarding flow's states, what moves them, and what they ask the shell to do. No I/O here.

use switchyard_model::events::{aml::ScreeningStatus, common::Failure, kyc::KycStatus, onboarding::OnboardingDecision};

/// A case opened at a partner for one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub partner: String,
    /// The partner's id for the case, once it has told us.
    pub reference: Option<String>,
}

impl Case {
    pub fn at(partner: &str) -> Self {
        Case {
            partner: partner.to_string(),
            reference: None,
        }
    }
}

/// Where a flow is. Each waiting state carries its one live case: a step never has two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Identity verification at `case.partner`.
    Kyc {
        case: Case,
        /// Partners tried for this step, in order (the current one last).
        tried: Vec<String>,
        /// The partner waits for the applicant's documents (step-up).
        documents: bool,
        /// Status queries made after the step's timer fired.
        checks: u32,
        /// The timer fired and a status query is out: the next non-final answer decides whether to
        /// keep waiting or escalate.
        overdue: bool,
    },
    /// Sanctions/PEP screening at `case.partner` (KYC passed at `kyc`).
    Aml { kyc: Case, case: Case, tried: Vec<String> },
    /// Terminal: never changes again.
    Decided {
        decision: OnboardingDecision,
        kyc: Option<Case>,
        aml: Option<Case>,
    },
}

/// The state's name as stored and shown to operators.
impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Kyc { documents: false, .. } => KYC_PENDING,
            State::Kyc { documents: true, .. } => KYC_DOCUMENTS,
            State::Aml { .. } => AML_PENDING,
            State::Decided { decision, .. } => decision.as_str(),
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, State::Decided { .. })
    }
}

pub const KYC_PENDING: &str = "kyc_pending";
pub const KYC_DOCUMENTS: &str = "kyc_awaiting_documents";
pub const AML_PENDING: &str = "aml_pending";

/// A partner's answer about a KYC case: the adapter's result (of a start or of a status query) or a
/// verified webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct KycAnswer {
    pub partner: String,
    pub reference: Option<String>,
    pub status: KycStatus,
    pub reasons: Vec<String>,
    /// Set when the partner has no case (the adapter guarantees it: ambiguity never comes back as a
    /// failure that allows a failover).
    pub failure: Option<Failure>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AmlAnswer {
    pub partner: String,
    pub reference: Option<String>,
    pub status: ScreeningStatus,
    /// What was found, in words for the decision's reasons.
    pub reasons: Vec<String>,
    pub failure: Option<Failure>,
}

/// What moves a flow.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Kyc(KycAnswer),
    Aml(AmlAnswer),
    /// The step's timer fired (measuring the partner's delay: armed when the partner holds the case).
    Timer,
}

/// Which timer to arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The KYC partner holds a live case.
    Kyc,
    /// The partner waits for the applicant's documents.
    Documents,
}

/// The partners a step may use for this flow (from the routing policy at the time of the step).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Route {
    pub candidates: Vec<String>,
    pub shadow: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Routes {
    pub kyc: Option<Route>,
    pub aml: Option<Route>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    Kyc,
    Aml,
}

impl Domain {
    pub fn name(self) -> &'static str {
        match self {
            Domain::Kyc => "kyc",
            Domain::Aml => "aml",
        }
    }
}

/// What the shell must do, in order, in the same transaction as the state change.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Ask the step's partner to open a case (or, with `shadow`, to run one that is only recorded).
    Request {
        domain: Domain,
        partner: String,
        shadow: bool,
    },
    /// Ask the KYC partner for the status of its live case (a read).
    QueryKyc { partner: String, reference: String },
    /// Tell product teams the flow entered a step.
    Step {
        step: &'static str,
        partner: Option<String>,
    },
    /// Arm (or re-arm) the flow's timer; `None` clears it.
    Timer(Option<Timer>),
    /// Remember which flow a partner's case belongs to (webhooks carry only the case id).
    Reference { partner: String, reference: String },
    /// A step moved to another partner (the first has no live case).
    Failover {
        domain: Domain,
        from: String,
        to: String,
        cause: String,
    },
    /// The flow's decision.
    Complete {
        decision: OnboardingDecision,
        reasons: Vec<String>,
        failure: Option<Failure>,
    },
    /// The live partner's final verdict of a step (kept to compare shadow partners with).
    Verdict { domain: Domain, verdict: &'static str },
    /// A line in the flow's history (what happened and why, for operators and auditors).
    Note { event: &'static str, detail: String },
}

/// A KYC answer's verdict, when it is one (what shadow mode compares).
pub fn kyc_verdict(s: KycStatus) -> Option<&'static str> {
    match s {
        KycStatus::Approved => Some("approved"),
        KycStatus::Rejected => Some("rejected"),
        KycStatus::Review => Some("review"),
        KycStatus::NeedsDocuments | KycStatus::Pending => None,
    }
}

/// A screening's verdict, when it is one.
pub fn aml_verdict(s: ScreeningStatus) -> Option<&'static str> {
    match s {
        ScreeningStatus::Clear => Some("clear"),
        ScreeningStatus::PossibleMatch => Some("possible_match"),
        ScreeningStatus::ConfirmedMatch => Some("confirmed_match"),
        ScreeningStatus::Pending => None,
    }
}
