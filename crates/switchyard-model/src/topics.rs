//! Topic names: `<domain>.<kind>.v<major>`, plus a dead-letter topic per consumed topic.

use std::fmt;

/// A business domain of the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    Kyc,
    Aml,
    Fraud,
    Cards,
    Payouts,
    OpenBanking,
    Onboarding,
}

impl Domain {
    /// The six partner-facing domains, each served by one adapter service.
    pub const PARTNER_DOMAINS: [Domain; 6] = [
        Domain::Kyc,
        Domain::Aml,
        Domain::Fraud,
        Domain::Cards,
        Domain::Payouts,
        Domain::OpenBanking,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Domain::Kyc => "kyc",
            Domain::Aml => "aml",
            Domain::Fraud => "fraud",
            Domain::Cards => "cards",
            Domain::Payouts => "payouts",
            Domain::OpenBanking => "openbanking",
            Domain::Onboarding => "onboarding",
        }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// Product services ask for something.
    Commands,
    /// The orchestrator asks an adapter to call a partner.
    Requests,
    /// An adapter's canonical answer.
    Results,
    /// Verified, normalized partner webhooks.
    ProviderEvents,
    /// Final, normalized outcomes product services subscribe to.
    Outcomes,
}

impl TopicKind {
    pub const ALL: [TopicKind; 5] = [
        TopicKind::Commands,
        TopicKind::Requests,
        TopicKind::Results,
        TopicKind::ProviderEvents,
        TopicKind::Outcomes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TopicKind::Commands => "commands",
            TopicKind::Requests => "requests",
            TopicKind::Results => "results",
            TopicKind::ProviderEvents => "provider-events",
            TopicKind::Outcomes => "outcomes",
        }
    }
}

/// `<domain>.<kind>.v1`.
pub fn topic(domain: Domain, kind: TopicKind) -> String {
    format!("{}.{}.v1", domain.as_str(), kind.as_str())
}

pub const RECONCILIATION_FINDINGS: &str = "reconciliation.findings.v1";
pub const AUDIT_EVENTS: &str = "audit.events.v1";
pub const DLQ_SUFFIX: &str = ".dlq";

/// The dead-letter topic of a consumed topic.
pub fn dlq(topic: &str) -> String {
    format!("{topic}{DLQ_SUFFIX}")
}

/// The registry subject of a topic's value schema (TopicNameStrategy).
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// Every topic of the canonical model (not counting dead-letter topics).
pub fn all_topics() -> Vec<String> {
    let mut out = Vec::new();
    for d in Domain::PARTNER_DOMAINS {
        for k in TopicKind::ALL {
            out.push(topic(d, k));
        }
    }
    out.push(topic(Domain::Onboarding, TopicKind::Commands));
    out.push(topic(Domain::Onboarding, TopicKind::Outcomes));
    out.push(RECONCILIATION_FINDINGS.to_string());
    out.push(AUDIT_EVENTS.to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_scheme() {
        assert_eq!(
            topic(Domain::OpenBanking, TopicKind::ProviderEvents),
            "openbanking.provider-events.v1"
        );
        assert_eq!(dlq("kyc.results.v1"), "kyc.results.v1.dlq");
        assert_eq!(value_subject("kyc.results.v1"), "kyc.results.v1-value");
        let all = all_topics();
        assert_eq!(all.len(), 34);
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len());
    }
}
