//! Onboarding's vendor cases (KYC): each partner's own list of cases, where it has one, against
//! the cases the mesh knows from its adapters' results and the partners' webhooks. Pure matching in
//! [`compare`]; [`findings`] pulls and reads.
//!
//! * A case that names a request of ours whose result never reached the flow, or that no request
//!   of ours made (nor any flow knows from a webhook): `missing_internally` (a vendor case with no
//!   flow).
//! * Two cases for one request: `duplicate_execution` (the effect the ledger exists to prevent).
//! * Cleared at the partner and rejected by us, or the other way round: `status_mismatch`.
//! * A case a result of ours names that the partner's list does not have: `missing_at_provider`.
//!
//! A partner with no list (the Sumsub shape) is known from results and webhooks: a webhook for a
//! case no flow of ours knows is the finding it can give.
//!
//! AML screenings: each result of ours read back from the partner that keeps them (the Mesh
//! shape's workflow, [`screening_findings`]): a screening it does not keep is `missing_at_provider`,
//! one with hits there while we hold it clear (or the reverse) `status_mismatch`. The Mesh
//! shape de-duplicates customers by our external id, so a screening cannot run twice there; the
//! Watchman shape is a stateless search, with nothing kept to reconcile.
//!
//! Pay-by-bank payments: each payment of ours read back from its open-banking provider by its
//! reference ([`bank_payment_findings`]): one it does not have is `missing_at_provider`; executed
//! there while we hold it failed (money moved that the product was told did not), failed there
//! while we hold it executed, or ended there while we still hold it in doubt: `status_mismatch`.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use sqlx::PgPool;
use switchyard_model::events::{aml::ScreeningStatus, kyc::KycStatus, reconciliation::FindingKind};
use switchyard_vendors::{
    aml::{AmlVendor, KeptScreening},
    kyc::{KycVendor, ListedCase},
    openbanking::{OpenBankingVendor, PaymentOutcome, PaymentStatus},
};

use crate::store::{self, CaseRequest, CaseSeen, Found};

/// What a case says in the end: cleared, not cleared, or not decided yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Clear,
    Consider,
    Open,
}

fn theirs(s: KycStatus) -> Verdict {
    match s {
        KycStatus::Approved => Verdict::Clear,
        KycStatus::Rejected | KycStatus::Review => Verdict::Consider,
        KycStatus::Pending | KycStatus::NeedsDocuments => Verdict::Open,
    }
}

/// Ours: only a decided case counts (a review or a step-up may still move).
fn ours(status: &str) -> Verdict {
    match status {
        "approved" => Verdict::Clear,
        "rejected" => Verdict::Consider,
        _ => Verdict::Open,
    }
}

/// The canonical screening status as stored (`ScreeningStatus` in snake case).
pub fn screening_status_name(s: ScreeningStatus) -> &'static str {
    match s {
        ScreeningStatus::Clear => "clear",
        ScreeningStatus::PossibleMatch => "possible_match",
        ScreeningStatus::ConfirmedMatch => "confirmed_match",
        ScreeningStatus::Pending => "pending",
    }
}

/// The canonical status as stored (`KycStatus` in snake case).
pub fn status_name(s: KycStatus) -> &'static str {
    match s {
        KycStatus::Approved => "approved",
        KycStatus::Rejected => "rejected",
        KycStatus::NeedsDocuments => "needs_documents",
        KycStatus::Pending => "pending",
        KycStatus::Review => "review",
    }
}

fn found(
    domain: &'static str,
    kind: FindingKind,
    partner: &str,
    flow: Option<&str>,
    reference: Option<&str>,
    detail: String,
    evidence: serde_json::Value,
) -> Found {
    Found {
        kind,
        domain,
        partner: partner.to_string(),
        internal_reference: flow.map(str::to_string),
        provider_reference: reference.map(str::to_string),
        detail,
        currency: None,
        amount_at_risk: None,
        expected_minor: None,
        provider_minor: None,
        evidence,
        resolve: None,
    }
}

/// The findings of one KYC partner: its list (`None`: it has none) against our cases there and the
/// requests its cases name.
pub fn compare(
    partner: &str,
    listed: Option<&[ListedCase]>,
    ours_seen: &[CaseSeen],
    requests: &[CaseRequest],
    now_ms: i64,
    grace: Duration,
) -> Vec<Found> {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let old = |ms: i64| ms < now_ms - grace_ms;
    let by_ref: HashMap<&str, &CaseSeen> = ours_seen.iter().map(|o| (o.provider_reference.as_str(), o)).collect();
    let by_key: HashMap<&str, &CaseRequest> = requests.iter().map(|r| (r.request_key.as_str(), r)).collect();
    let mut out = Vec::new();
    let Some(listed) = listed else {
        // Known from webhooks alone: a case the partner told us about that no flow has.
        for o in ours_seen {
            if o.flow_id.is_none() && old(o.first_seen.timestamp_millis()) {
                out.push(found(
                    "kyc",
                    FindingKind::MissingInternally,
                    partner,
                    None,
                    Some(&o.provider_reference),
                    format!("{partner} sent notices of a case no flow of ours knows ({})", o.status),
                    serde_json::json!({"ours": o}),
                ));
            }
        }
        return out;
    };
    let mut per_request: BTreeMap<&str, Vec<&ListedCase>> = BTreeMap::new();
    for t in listed {
        if let Some(k) = t.our_reference.as_deref() {
            per_request.entry(k).or_default().push(t);
        }
    }
    for (key, ts) in &per_request {
        if ts.len() > 1 {
            let flow = by_key.get(key).map(|r| r.flow_id.as_str());
            out.push(found(
                    "kyc",
                FindingKind::DuplicateExecution,
                partner,
                flow.or(Some(key)),
                None,
                format!(
                    "{} cases at {partner} for one request of ours: {}",
                    ts.len(),
                    ts.iter()
                        .map(|t| t.provider_reference.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                serde_json::json!({"partner_records": ts.iter().map(|t| &t.raw).collect::<Vec<_>>(), "request": by_key.get(key)}),
            ));
        }
    }
    for t in listed {
        let evidence = |o: Option<&CaseSeen>| serde_json::json!({"partner_record": t.raw, "ours": o});
        let duplicated = t
            .our_reference
            .as_deref()
            .is_some_and(|k| per_request.get(k).is_some_and(|ts| ts.len() > 1));
        match by_ref
            .get(t.provider_reference.as_str())
            .filter(|o| o.flow_id.is_some())
        {
            // Its request's duplicate finding says it.
            None if duplicated => {}
            None if old(t.created_ms) => {
                let request = t.our_reference.as_deref().and_then(|k| by_key.get(k));
                let detail = match request {
                    Some(r) => format!(
                        "{partner} has case {} for a request of flow {}; no result of it reached the flow",
                        t.provider_reference, r.flow_id
                    ),
                    None => format!("{partner} has a case no flow of ours knows ({:?})", t.status),
                };
                out.push(found(
                    "kyc",
                    FindingKind::MissingInternally,
                    partner,
                    request.map(|r| r.flow_id.as_str()),
                    Some(&t.provider_reference),
                    detail,
                    evidence(by_ref.get(t.provider_reference.as_str()).copied()),
                ));
            }
            None => {}
            Some(o) => {
                let (we, they) = (ours(&o.status), theirs(t.status));
                if we != Verdict::Open && they != Verdict::Open && we != they {
                    out.push(found(
                        "kyc",
                        FindingKind::StatusMismatch,
                        partner,
                        o.flow_id.as_deref(),
                        Some(&t.provider_reference),
                        format!("we hold the case {}; {partner} says {:?}", o.status, t.status),
                        evidence(Some(o)),
                    ));
                }
            }
        }
    }
    let listed_refs: std::collections::HashSet<&str> = listed.iter().map(|t| t.provider_reference.as_str()).collect();
    for o in ours_seen {
        if o.flow_id.is_some()
            && old(o.first_seen.timestamp_millis())
            && !listed_refs.contains(o.provider_reference.as_str())
        {
            out.push(found(
                "kyc",
                FindingKind::MissingAtProvider,
                partner,
                o.flow_id.as_deref(),
                Some(&o.provider_reference),
                format!(
                    "a result of ours names case {} at {partner}; its list has no such case",
                    o.provider_reference
                ),
                serde_json::json!({"ours": o}),
            ));
        }
    }
    out
}

/// What a run read from each partner: records read, and the partners it could not read (left out).
pub struct Reads<'a> {
    pub pulled: &'a mut BTreeMap<String, usize>,
    pub unavailable: &'a mut BTreeMap<String, String>,
}

/// Every KYC partner's findings, its list read from `since` (cases first seen before then are not
/// missed: the list does not reach back that far). A partner whose list cannot be read is left out.
pub async fn findings(
    pool: &PgPool,
    partners: &BTreeMap<String, Arc<dyn KycVendor>>,
    since: chrono::DateTime<chrono::Utc>,
    grace: Duration,
    reads: &mut Reads<'_>,
) -> anyhow::Result<Vec<Found>> {
    let now = chrono::Utc::now().timestamp_millis();
    let mut out = Vec::new();
    'partners: for (partner, vendor) in partners {
        let mut listed: Option<Vec<ListedCase>> = None;
        let mut cursor: Option<String> = None;
        loop {
            let Some(call) = vendor.list(since.timestamp_millis(), cursor.as_deref()) else {
                break;
            };
            let page = match call.await {
                Ok(page) => page,
                Err(e) => {
                    reads
                        .unavailable
                        .insert(partner.clone(), format!("its list of cases: {e}"));
                    continue 'partners;
                }
            };
            listed.get_or_insert_with(Vec::new).extend(page.items);
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        let refs: Vec<String> = listed.iter().flatten().map(|t| t.provider_reference.clone()).collect();
        let keys: Vec<String> = listed
            .iter()
            .flatten()
            .filter_map(|t| t.our_reference.clone())
            .collect();
        let seen = store::cases_at(pool, partner, since, &refs).await?;
        let requests = store::requests_named(pool, partner, &keys).await?;
        reads
            .pulled
            .insert(partner.clone(), listed.as_ref().map_or(0, Vec::len));
        out.extend(compare(partner, listed.as_deref(), &seen, &requests, now, grace));
    }
    Ok(out)
}

/// The finding about one screening of ours read back from its partner (`kept`: what it keeps under
/// our result's reference; None: nothing), if they disagree. A screening still pending is no
/// finding.
pub fn compare_screening(partner: &str, o: &CaseSeen, kept: Option<&KeptScreening>) -> Option<Found> {
    let ours_hit = match o.status.as_str() {
        "clear" => false,
        "possible_match" | "confirmed_match" => true,
        _ => return None,
    };
    let Some(k) = kept else {
        return Some(found(
            "aml",
            FindingKind::MissingAtProvider,
            partner,
            o.flow_id.as_deref(),
            Some(&o.provider_reference),
            format!(
                "a screening result of ours names {} at {partner}; it keeps no such screening",
                o.provider_reference
            ),
            serde_json::json!({"ours": o}),
        ));
    };
    (k.has_hits != ours_hit).then(|| {
        found(
            "aml",
            FindingKind::StatusMismatch,
            partner,
            o.flow_id.as_deref(),
            Some(&o.provider_reference),
            if ours_hit {
                format!("we hold the screening a {}; {partner} keeps it with no hits", o.status)
            } else {
                format!("we hold the screening clear; {partner} keeps it with hits found")
            },
            serde_json::json!({"partner_record": k.raw, "ours": o}),
        )
    })
}

/// Every AML partner's findings: each screening of ours first seen in the window (older than the
/// grace) read back from its partner, once it agrees never again. A partner that keeps nothing
/// (a stateless search) has nothing to reconcile; one that cannot be read is left out (what it
/// answered before the failure stands).
pub async fn screening_findings(
    pool: &PgPool,
    partners: &BTreeMap<String, Arc<dyn AmlVendor>>,
    since: chrono::DateTime<chrono::Utc>,
    grace: Duration,
    dry_run: bool,
    reads: &mut Reads<'_>,
) -> anyhow::Result<Vec<Found>> {
    let before = chrono::Utc::now() - chrono::Duration::from_std(grace)?;
    let mut out = Vec::new();
    'partners: for (partner, vendor) in partners {
        let ours = store::unverified_cases(pool, partner, since, before, 5_000).await?;
        let mut agreed = Vec::new();
        for o in &ours {
            let Some(call) = vendor.kept(&o.provider_reference) else {
                continue 'partners;
            };
            let kept = match call.await {
                Ok(k) => k,
                Err(e) => {
                    reads
                        .unavailable
                        .insert(partner.clone(), format!("screening {}: {e}", o.provider_reference));
                    break;
                }
            };
            match compare_screening(partner, o, kept.as_ref()) {
                Some(f) => out.push(f),
                None => agreed.push(o.provider_reference.clone()),
            }
        }
        reads.pulled.insert(partner.clone(), ours.len());
        if !dry_run {
            store::verified(pool, partner, &agreed).await?;
        }
    }
    Ok(out)
}

/// A bank payment of ours against its provider's record (`None`: the provider has no such
/// payment). Our `status` is the outcome's status in snake case.
pub fn compare_bank_payment(partner: &str, o: &CaseSeen, theirs: Option<&PaymentOutcome>) -> Option<Found> {
    let mismatch = |detail: String, evidence: serde_json::Value| {
        Some(found(
            "openbanking",
            FindingKind::StatusMismatch,
            partner,
            o.flow_id.as_deref(),
            Some(&o.provider_reference),
            detail,
            evidence,
        ))
    };
    let Some(t) = theirs else {
        return Some(found(
            "openbanking",
            FindingKind::MissingAtProvider,
            partner,
            o.flow_id.as_deref(),
            Some(&o.provider_reference),
            format!(
                "a payment of ours names {} at {partner}; it has no such payment",
                o.provider_reference
            ),
            serde_json::json!({"ours": o}),
        ));
    };
    let moved = matches!(t.status, PaymentStatus::Executed | PaymentStatus::Settled);
    let evidence = serde_json::json!({"partner_record": t, "ours": o});
    match o.status.as_str() {
        "executed" | "completed" if t.status == PaymentStatus::Failed => mismatch(
            format!("we hold the payment {}; {partner} failed it", o.status),
            evidence,
        ),
        "failed" | "rejected" if moved => mismatch(
            format!("we hold the payment failed; {partner} executed it: money moved that the product was told did not"),
            evidence,
        ),
        "unknown" if moved || t.status == PaymentStatus::Failed => mismatch(
            format!("we hold the payment in doubt; {partner} has it {:?}", t.status),
            evidence,
        ),
        _ => None,
    }
}

/// Whether a bank payment of ours has reached its end here (and so is read back once more only if
/// it disagrees).
fn ended(status: &str) -> bool {
    matches!(status, "executed" | "completed" | "failed" | "rejected")
}

/// Every open-banking provider's bank payments read back: each of ours first seen in the window
/// (older than the grace); one that agrees and has ended is not read again.
pub async fn bank_payment_findings(
    pool: &PgPool,
    partners: &BTreeMap<String, Arc<dyn OpenBankingVendor>>,
    since: chrono::DateTime<chrono::Utc>,
    grace: Duration,
    dry_run: bool,
    reads: &mut Reads<'_>,
) -> anyhow::Result<Vec<Found>> {
    let before = chrono::Utc::now() - chrono::Duration::from_std(grace)?;
    let mut out = Vec::new();
    for (partner, vendor) in partners {
        let ours = store::unverified_cases(pool, partner, since, before, 5_000).await?;
        let mut agreed = Vec::new();
        for o in ours.iter().filter(|o| o.domain == "openbanking") {
            let theirs = match vendor.payment(&o.provider_reference).await {
                Ok(t) => Some(t),
                Err(switchyard_vendors::VendorError::Permanent(e))
                    if e.contains("404") || e.contains("INVALID_PAYMENT_ID") =>
                {
                    None
                }
                Err(e) => {
                    reads
                        .unavailable
                        .insert(partner.clone(), format!("payment {}: {e}", o.provider_reference));
                    break;
                }
            };
            match compare_bank_payment(partner, o, theirs.as_ref()) {
                Some(f) => out.push(f),
                None if ended(&o.status) => agreed.push(o.provider_reference.clone()),
                None => {}
            }
        }
        reads.pulled.insert(partner.clone(), ours.len());
        if !dry_run {
            store::verified(pool, partner, &agreed).await?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(r: &str, key: Option<&str>, status: KycStatus) -> ListedCase {
        ListedCase {
            provider_reference: r.into(),
            our_reference: key.map(str::to_string),
            status,
            created_ms: 0,
            raw: serde_json::json!({"id": r}),
        }
    }

    fn seen(r: &str, flow: Option<&str>, status: &str) -> CaseSeen {
        CaseSeen {
            domain: "kyc".into(),
            partner: "kyc-a".into(),
            provider_reference: r.into(),
            flow_id: flow.map(str::to_string),
            tenant_id: flow.map(|_| "t".to_string()),
            request_key: None,
            status: status.into(),
            shadow: false,
            first_seen: chrono::DateTime::UNIX_EPOCH,
            updated_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    fn request(key: &str, flow: &str) -> CaseRequest {
        CaseRequest {
            request_key: key.into(),
            partner: "kyc-a".into(),
            flow_id: flow.into(),
            requested_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    fn kinds(f: &[Found]) -> Vec<(&'static str, Option<&str>)> {
        let mut k: Vec<_> = f
            .iter()
            .map(|f| {
                (
                    f.kind.as_str(),
                    f.provider_reference.as_deref().or(f.internal_reference.as_deref()),
                )
            })
            .collect();
        k.sort();
        k
    }

    const NOW: i64 = 10_000_000;
    const GRACE: Duration = Duration::from_secs(60);

    #[test]
    fn a_partner_s_cases_against_ours_every_disagreement_once() {
        let clean = compare(
            "kyc-a",
            Some(&[case("c1", Some("k1"), KycStatus::Approved)]),
            &[seen("c1", Some("f1"), "approved")],
            &[request("k1", "f1")],
            NOW,
            GRACE,
        );
        assert!(clean.is_empty(), "{clean:?}");
        let listed = [
            case("c1", Some("k1"), KycStatus::Approved),
            // A second case for request k1: executed twice.
            case("c1b", Some("k1"), KycStatus::Pending),
            // Cleared there, rejected here.
            case("c2", Some("k2"), KycStatus::Approved),
            // A case for our request k3 whose result never reached us.
            case("c3", Some("k3"), KycStatus::Approved),
            // A case nobody of ours asked for.
            case("c4", None, KycStatus::Review),
            // Still open at the partner while we decided: no finding yet.
            case("c5", Some("k5"), KycStatus::Pending),
        ];
        let ours = [
            seen("c1", Some("f1"), "approved"),
            seen("c1b", None, "pending"),
            seen("c2", Some("f2"), "rejected"),
            seen("c5", Some("f5"), "approved"),
            // A result of ours names a case the partner does not list.
            seen("c9", Some("f9"), "approved"),
        ];
        let requests = [request("k1", "f1"), request("k2", "f2"), request("k3", "f3")];
        let f = compare("kyc-a", Some(&listed), &ours, &requests, NOW, GRACE);
        assert_eq!(
            kinds(&f),
            [
                ("duplicate_execution", Some("f1")),
                ("missing_at_provider", Some("c9")),
                ("missing_internally", Some("c3")),
                ("missing_internally", Some("c4")),
                ("status_mismatch", Some("c2")),
            ],
            "{f:#?}"
        );
        let lost = f
            .iter()
            .find(|x| x.provider_reference.as_deref() == Some("c3"))
            .unwrap();
        assert_eq!(
            lost.internal_reference.as_deref(),
            Some("f3"),
            "the flow whose result was lost"
        );
        assert!(f.iter().all(|x| x.domain == "kyc"));
        // Too young to be missed: nothing.
        let young = ListedCase {
            created_ms: NOW - 1_000,
            ..case("c4", None, KycStatus::Review)
        };
        assert!(compare("kyc-a", Some(&[young]), &[], &[], NOW, GRACE).is_empty());
    }

    #[test]
    fn a_screening_read_back_disagrees_only_on_hits_found_or_not() {
        let kept = |has_hits| KeptScreening {
            has_hits,
            raw: serde_json::json!({}),
        };
        let o = |status: &str| seen("wf-1", Some("f1"), status);
        assert!(compare_screening("aml-a", &o("clear"), Some(&kept(false))).is_none());
        assert!(compare_screening("aml-a", &o("possible_match"), Some(&kept(true))).is_none());
        assert!(
            compare_screening("aml-a", &o("pending"), None).is_none(),
            "not decided: no finding"
        );
        let f = compare_screening("aml-a", &o("clear"), Some(&kept(true))).unwrap();
        assert_eq!(
            (f.kind, f.domain, f.internal_reference.as_deref()),
            (FindingKind::StatusMismatch, "aml", Some("f1"))
        );
        let f = compare_screening("aml-a", &o("confirmed_match"), Some(&kept(false))).unwrap();
        assert_eq!(f.kind, FindingKind::StatusMismatch);
        let f = compare_screening("aml-a", &o("clear"), None).unwrap();
        assert_eq!(f.kind, FindingKind::MissingAtProvider);
    }

    #[test]
    fn a_partner_without_a_list_is_known_by_its_webhooks() {
        let ours = [seen("a1", Some("f1"), "approved"), seen("a2", None, "approved")];
        let f = compare("kyc-b", None, &ours, &[], NOW, GRACE);
        assert_eq!(kinds(&f), [("missing_internally", Some("a2"))]);
    }

    #[test]
    fn a_bank_payment_against_its_providers_record() {
        let ours = |status: &str| CaseSeen {
            domain: "openbanking".into(),
            status: status.into(),
            ..seen("pay-1", Some("obp.1.t.p-1"), status)
        };
        let theirs = |status: PaymentStatus| PaymentOutcome {
            provider_reference: "pay-1".into(),
            status,
            authorization_url: None,
            failure_reason: None,
        };
        let kind = |f: Option<Found>| f.map(|f| f.kind.as_str());
        assert_eq!(
            kind(compare_bank_payment(
                "ob-a",
                &ours("executed"),
                Some(&theirs(PaymentStatus::Executed))
            )),
            None
        );
        assert_eq!(
            kind(compare_bank_payment(
                "ob-a",
                &ours("completed"),
                Some(&theirs(PaymentStatus::Settled))
            )),
            None
        );
        assert_eq!(
            kind(compare_bank_payment(
                "ob-a",
                &ours("executed"),
                Some(&theirs(PaymentStatus::Failed))
            )),
            Some("status_mismatch")
        );
        assert_eq!(
            kind(compare_bank_payment(
                "ob-a",
                &ours("failed"),
                Some(&theirs(PaymentStatus::Settled))
            )),
            Some("status_mismatch"),
            "money moved that the product was told did not"
        );
        assert_eq!(
            kind(compare_bank_payment(
                "ob-a",
                &ours("unknown"),
                Some(&theirs(PaymentStatus::Executed))
            )),
            Some("status_mismatch")
        );
        assert_eq!(
            kind(compare_bank_payment(
                "ob-a",
                &ours("awaiting_authorization"),
                Some(&theirs(PaymentStatus::Pending))
            )),
            None,
            "still moving: nothing yet"
        );
        assert_eq!(
            kind(compare_bank_payment("ob-a", &ours("executed"), None)),
            Some("missing_at_provider")
        );
    }
}
