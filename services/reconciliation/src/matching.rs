//! One reconciliation run: each payout partner's list against our side, by reference, with every
//! disagreement a finding. Pure matching in [`compare`]; [`run`] pulls, records and publishes.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use sqlx::PgPool;
use switchyard_model::{
    Envelope, EventRecord,
    events::{
        Event,
        common::Money,
        payouts::{PayoutStatus, ResolvePayout, is_flow_id},
        reconciliation::{FindingKind, ReconciliationFinding},
    },
};
use switchyard_runtime::Outbox;
use switchyard_vendors::{
    adapter::Partners,
    payouts::{ListedPayout, PayoutVendor, SettlementKind, SettlementLine},
};

use crate::store::{self, Found, Ours, Resolve};

/// The onboarding partners a run reads: KYC partners' cases, AML partners' screenings.
pub struct Onboarding<'a> {
    pub kyc: &'a BTreeMap<String, std::sync::Arc<dyn switchyard_vendors::kyc::KycVendor>>,
    pub aml: &'a BTreeMap<String, std::sync::Arc<dyn switchyard_vendors::aml::AmlVendor>>,
    /// Open-banking providers whose bank payments are read back.
    pub openbanking: &'a BTreeMap<String, std::sync::Arc<dyn switchyard_vendors::openbanking::OpenBankingVendor>>,
}

pub struct Options {
    /// Where partners drop settlement reports (`<dir>/<partner id>/*.csv`), if anywhere.
    pub reports_dir: Option<std::path::PathBuf>,
    /// Compute and report; store and publish nothing.
    pub dry_run: bool,
    /// How far back the partners' lists are read.
    pub window: Duration,
    /// A record younger than this is not missed yet (the other side may still be on its way).
    pub grace: Duration,
    /// Per partner: how far its amounts may differ from ours (none listed: exact).
    pub tolerance: HashMap<String, Tolerance>,
    /// How far a report line's date may be from our payout's completion for rule matching.
    pub date_window: Duration,
}

fn executed(s: PayoutStatus) -> bool {
    matches!(
        s,
        PayoutStatus::Accepted | PayoutStatus::Settled | PayoutStatus::Pending
    )
}

fn money(minor: Option<i64>, currency: Option<&str>) -> Option<Money> {
    Some(Money {
        amount_minor: minor?,
        currency: currency?.to_string(),
    })
}

/// The findings of one partner's list against our payouts there (and those its records name).
pub fn compare(
    partner: &str,
    theirs: &[ListedPayout],
    ours: &[Ours],
    now_ms: i64,
    grace: Duration,
    tol: Tolerance,
) -> Vec<Found> {
    let grace_ms = grace.as_millis() as i64;
    let by_ref: HashMap<&str, &Ours> = ours
        .iter()
        .filter_map(|o| Some((o.provider_reference.as_deref()?, o)))
        .collect();
    let by_flow: HashMap<&str, &Ours> = ours.iter().map(|o| (o.flow_id.as_str(), o)).collect();
    let evidence = |t: Option<&ListedPayout>, o: Option<&Ours>| serde_json::json!({"partner_record": t.map(|t| &t.raw), "ours": o});
    let mut out = Vec::new();
    // Executions per flow at this partner: more than one is a duplicate execution.
    let mut per_flow: BTreeMap<&str, Vec<&ListedPayout>> = BTreeMap::new();
    for t in theirs {
        if let Some(r) = t.our_reference.as_deref().filter(|r| is_flow_id(r))
            && executed(t.status)
        {
            per_flow.entry(r).or_default().push(t);
        }
    }
    for (flow, ts) in &per_flow {
        if ts.len() > 1 {
            let extra: i64 = ts.iter().skip(1).map(|t| t.amount.amount_minor).sum();
            out.push(Found {
                kind: FindingKind::DuplicateExecution,
                partner: partner.to_string(),
                domain: "payouts",
                internal_reference: Some(flow.to_string()),
                provider_reference: None,
                detail: format!(
                    "{} executions of one payout at {partner}: {}",
                    ts.len(),
                    ts.iter().map(|t| t.provider_reference.as_str()).collect::<Vec<_>>().join(", ")
                ),
                currency: Some(ts[0].amount.currency.clone()),
                amount_at_risk: Some(extra),
                expected_minor: by_flow.get(flow).and_then(|o| o.amount_minor),
                provider_minor: Some(ts[0].amount.amount_minor),
                evidence: serde_json::json!({"partner_records": ts.iter().map(|t| &t.raw).collect::<Vec<_>>(), "ours": by_flow.get(flow)}),
                resolve: None,
            });
        }
    }
    for t in theirs {
        let o = by_ref
            .get(t.provider_reference.as_str())
            .or_else(|| t.our_reference.as_deref().and_then(|r| by_flow.get(r)))
            .copied();
        let Some(o) = o else {
            if executed(t.status) && t.created_ms < now_ms - grace_ms {
                out.push(Found {
                    kind: FindingKind::MissingInternally,
                    partner: partner.to_string(),
                    domain: "payouts",
                    internal_reference: t.our_reference.clone(),
                    provider_reference: Some(t.provider_reference.clone()),
                    detail: format!("{partner} has a payout no flow of ours knows ({:?})", t.status),
                    currency: Some(t.amount.currency.clone()),
                    amount_at_risk: Some(t.amount.amount_minor),
                    expected_minor: None,
                    provider_minor: Some(t.amount.amount_minor),
                    evidence: evidence(Some(t), None),
                    resolve: None,
                });
            }
            continue;
        };
        if o.status == "in_flight" {
            // Held in doubt (or left to an operator) at this partner, and not just now: its record
            // settles it, through the flow's own command.
            if matches!(o.step.as_deref(), Some("in_doubt" | "manual_repair"))
                && o.partner.as_deref() == Some(partner)
                && t.status != PayoutStatus::Unknown
                && o.updated_at.timestamp_millis() < now_ms - grace_ms
            {
                out.push(Found {
                    kind: FindingKind::InDoubtResolved,
                    partner: partner.to_string(),
                    domain: "payouts",
                    internal_reference: Some(o.flow_id.clone()),
                    provider_reference: Some(t.provider_reference.clone()),
                    detail: format!(
                        "we hold it {}; {partner}'s record says {:?}: the flow is told",
                        o.step.as_deref().unwrap_or_default(),
                        t.status
                    ),
                    currency: Some(t.amount.currency.clone()),
                    amount_at_risk: Some(t.amount.amount_minor),
                    expected_minor: None,
                    provider_minor: Some(t.amount.amount_minor),
                    evidence: evidence(Some(t), Some(o)),
                    resolve: Some(Resolve {
                        tenant_id: o.tenant_id.clone(),
                        payout_id: o.payout_id.clone(),
                        status: t.status,
                        amount: t.amount.clone(),
                    }),
                });
            }
            continue;
        }
        if let (Some(amount), Some(currency)) = (o.amount_minor, o.currency.as_deref())
            && (!tol.allows(amount, t.amount.amount_minor) || currency != t.amount.currency)
        {
            out.push(Found {
                kind: FindingKind::AmountMismatch,
                partner: partner.to_string(),
                domain: "payouts",
                internal_reference: Some(o.flow_id.clone()),
                provider_reference: Some(t.provider_reference.clone()),
                detail: format!(
                    "we paid {amount} {currency} minor units; {partner} reports {} {}",
                    t.amount.amount_minor, t.amount.currency
                ),
                currency: Some(currency.to_string()),
                amount_at_risk: Some((t.amount.amount_minor - amount).abs()),
                expected_minor: Some(amount),
                provider_minor: Some(t.amount.amount_minor),
                evidence: evidence(Some(t), Some(o)),
                resolve: None,
            });
        }
        let theirs_says = match t.status {
            PayoutStatus::Failed | PayoutStatus::Returned => "failed",
            PayoutStatus::Settled | PayoutStatus::Accepted | PayoutStatus::Pending => "paid",
            PayoutStatus::Unknown => "unknown",
        };
        // A payout of ours at another partner (failed over) is not this record's.
        let same = o.provider_reference.as_deref() == Some(t.provider_reference.as_str());
        let mismatch = match (o.status.as_str(), theirs_says) {
            _ if !same => None,
            ("failed", "paid") => Some("we say failed; the partner paid"),
            ("settled", "failed") if !o.reversed => {
                Some("we say settled; the partner says it failed, and no return reached us")
            }
            _ => None,
        };
        if let Some(why) = mismatch {
            out.push(Found {
                kind: FindingKind::StatusMismatch,
                partner: partner.to_string(),
                domain: "payouts",
                internal_reference: Some(o.flow_id.clone()),
                provider_reference: Some(t.provider_reference.clone()),
                detail: format!("{why} ({:?} at {partner})", t.status),
                currency: Some(t.amount.currency.clone()),
                amount_at_risk: Some(t.amount.amount_minor),
                expected_minor: o.amount_minor,
                provider_minor: Some(t.amount.amount_minor),
                evidence: evidence(Some(t), Some(o)),
                resolve: None,
            });
        }
    }
    // Ours, paid at this partner, that its list does not have.
    let listed: std::collections::HashSet<&str> = theirs.iter().map(|t| t.provider_reference.as_str()).collect();
    for o in ours {
        if o.partner.as_deref() != Some(partner) || !matches!(o.status.as_str(), "settled" | "returned") {
            continue;
        }
        let Some(r) = o.provider_reference.as_deref() else {
            continue;
        };
        if listed.contains(r) || o.updated_at.timestamp_millis() > now_ms - grace_ms {
            continue;
        }
        out.push(Found {
            kind: FindingKind::MissingAtProvider,
            partner: partner.to_string(),
            domain: "payouts",
            internal_reference: Some(o.flow_id.clone()),
            provider_reference: Some(r.to_string()),
            detail: format!("we say {} at {partner}; its list has no payout {r}", o.status),
            currency: o.currency.clone(),
            amount_at_risk: o.amount_minor,
            expected_minor: o.amount_minor,
            provider_minor: None,
            evidence: evidence(None, Some(o)),
            resolve: None,
        });
    }
    out
}

/// How far a partner's amount may differ from ours and still match (its fees, an FX rounding):
/// `fixed_minor` plus `bps` of our amount. Zero by default: an exact integer match.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tolerance {
    pub fixed_minor: i64,
    pub bps: i64,
}

impl Tolerance {
    pub fn allows(&self, ours: i64, theirs: i64) -> bool {
        (ours - theirs).abs() <= self.fixed_minor + ours.abs() * self.bps / 10_000
    }
}

/// What rule matching of a partner's report lines uses besides the records.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub tolerance: Tolerance,
    /// How far a line's date may be from our payout's completion.
    pub date_window_ms: i64,
}

/// A report line that accounts for a payout of ours, and the rule that said so: `reference`,
/// `split` (one payout paid in several lines), `amount_date` or `counterparty` (a line with no
/// reference of ours, matched by amount within tolerance, currency and date, the payee's account
/// breaking ties), `batch` (one line paying several payouts).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Matched {
    pub line: usize,
    pub flow_id: String,
    pub rule: &'static str,
}

/// What the rules make of a line no reference of ours names.
#[derive(Debug)]
enum RuleMatch<'a> {
    One(&'a Ours, &'static str),
    Batch(Vec<&'a Ours>),
    /// This many of our payouts fit it equally well: an operator chooses.
    Ambiguous(usize),
    None,
}

/// Subsets of at most this many candidates are searched for a batch line.
const BATCH_CANDIDATES: usize = 24;
/// Search steps for a batch line before it counts as ambiguous.
const BATCH_STEPS: usize = 200_000;

fn rule_match<'a>(l: &SettlementLine, candidates: &[&'a Ours], rules: &Rules) -> RuleMatch<'a> {
    let pool: Vec<&Ours> = candidates
        .iter()
        .copied()
        .filter(|o| {
            o.currency.as_deref() == Some(l.amount.currency.as_str())
                && o.amount_minor.is_some()
                && (o.updated_at.timestamp_millis() - l.at_ms).abs() <= rules.date_window_ms
                && match (&l.counterparty, &o.counterparty) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                }
        })
        .collect();
    let amount = |o: &Ours| o.amount_minor.unwrap_or_default();
    let mut one: Vec<&Ours> = pool
        .iter()
        .copied()
        .filter(|o| rules.tolerance.allows(amount(o), l.amount.amount_minor))
        .collect();
    if !one.is_empty() {
        // The payee's account, then the exact amount, then the nearest date.
        let rank = |o: &Ours| {
            (
                !(l.counterparty.is_some() && l.counterparty == o.counterparty),
                (amount(o) - l.amount.amount_minor).abs(),
                (o.updated_at.timestamp_millis() - l.at_ms).abs(),
            )
        };
        one.sort_by_key(|o| rank(o));
        if one.len() > 1 && rank(one[0]) == rank(one[1]) {
            return RuleMatch::Ambiguous(one.iter().filter(|o| rank(o) == rank(one[0])).count());
        }
        let rule = if l.counterparty.is_some() && l.counterparty == one[0].counterparty {
            "counterparty"
        } else {
            "amount_date"
        };
        return RuleMatch::One(one[0], rule);
    }
    // A batch line names no payee: several of ours (each smaller than it) whose sum it pays.
    let ceiling =
        l.amount.amount_minor + rules.tolerance.fixed_minor + l.amount.amount_minor * rules.tolerance.bps / 10_000;
    let pool: Vec<&Ours> = pool.into_iter().filter(|o| amount(o) <= ceiling).collect();
    if l.counterparty.is_some() || pool.len() < 2 || pool.len() > BATCH_CANDIDATES {
        return RuleMatch::None;
    }
    let mut sorted = pool;
    sorted.sort_by_key(|o| std::cmp::Reverse(amount(o)));
    let amounts: Vec<i64> = sorted.iter().map(|o| amount(o)).collect();
    let mut solutions: Vec<Vec<usize>> = Vec::new();
    let mut steps = 0usize;
    subsets(
        &amounts,
        l.amount.amount_minor,
        &rules.tolerance,
        &mut Vec::new(),
        0,
        0,
        &mut solutions,
        &mut steps,
    );
    match solutions.as_slice() {
        [one] if steps < BATCH_STEPS => RuleMatch::Batch(one.iter().map(|&i| sorted[i]).collect()),
        [] if steps < BATCH_STEPS => RuleMatch::None,
        many => RuleMatch::Ambiguous(many.len().max(2)),
    }
}

/// Subsets (of two or more, amounts sorted largest first) whose sum the tolerance lets equal
/// `target`; stops at two, or after [`BATCH_STEPS`].
#[allow(clippy::too_many_arguments)]
fn subsets(
    amounts: &[i64],
    target: i64,
    tol: &Tolerance,
    picked: &mut Vec<usize>,
    from: usize,
    sum: i64,
    out: &mut Vec<Vec<usize>>,
    steps: &mut usize,
) {
    *steps += 1;
    if out.len() >= 2 || *steps >= BATCH_STEPS {
        return;
    }
    if picked.len() >= 2 && tol.allows(sum, target) {
        out.push(picked.clone());
    }
    let rest: i64 = amounts[from..].iter().sum();
    if sum + rest < target - tol.fixed_minor - target.abs() * tol.bps / 10_000 {
        return;
    }
    for i in from..amounts.len() {
        if sum + amounts[i] > target + tol.fixed_minor + target.abs() * tol.bps / 10_000 {
            continue;
        }
        picked.push(i);
        subsets(amounts, target, tol, picked, i + 1, sum + amounts[i], out, steps);
        picked.pop();
    }
}

/// The findings of one settlement report's lines against our payouts (`ours`: those its lines
/// name; `candidates`: ours at this partner no line accounts for yet), and which lines account for
/// which payouts.
pub fn compare_report(
    partner: &str,
    lines: &[SettlementLine],
    ours: &[Ours],
    candidates: &[Ours],
    rules: &Rules,
    file: &str,
) -> (Vec<Found>, Vec<Matched>) {
    let by_ref: HashMap<&str, &Ours> = ours
        .iter()
        .filter_map(|o| Some((o.provider_reference.as_deref()?, o)))
        .collect();
    let by_flow: HashMap<&str, &Ours> = ours.iter().map(|o| (o.flow_id.as_str(), o)).collect();
    let named = |l: &SettlementLine| {
        by_ref
            .get(l.provider_reference.as_str())
            .or_else(|| l.our_reference.as_deref().and_then(|r| by_flow.get(r)))
            .copied()
    };
    let evidence = |l: &SettlementLine, o: Option<&Ours>| serde_json::json!({"report": file, "line": l, "ours": o});
    let mut out = Vec::new();
    let mut matched = Vec::new();
    // Payout lines per flow: several at one partner are a split (they add up to ours, each less)
    // or a duplicate execution.
    let mut per_flow: BTreeMap<&str, Vec<&SettlementLine>> = BTreeMap::new();
    for l in lines.iter().filter(|l| l.kind == SettlementKind::Payout) {
        if let Some(r) = l.our_reference.as_deref().filter(|r| is_flow_id(r)) {
            let v = per_flow.entry(r).or_default();
            if !v.iter().any(|x| x.provider_reference == l.provider_reference) {
                v.push(l);
            }
        }
    }
    let mut splits: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for (flow, ls) in &per_flow {
        if ls.len() < 2 {
            continue;
        }
        let sum: i64 = ls.iter().map(|l| l.amount.amount_minor).sum();
        let ours_amount = by_flow.get(flow).and_then(|o| o.amount_minor);
        if ours_amount.is_some_and(|a| rules.tolerance.allows(a, sum) && ls.iter().all(|l| l.amount.amount_minor < a)) {
            splits.insert(flow);
            continue;
        }
        out.push(Found {
            kind: FindingKind::DuplicateExecution,
            partner: partner.to_string(),
            domain: "payouts",
            internal_reference: Some(flow.to_string()),
            provider_reference: None,
            detail: format!("{} payouts of one flow in {partner}'s report {file}", ls.len()),
            currency: Some(ls[0].amount.currency.clone()),
            amount_at_risk: Some(ls.iter().skip(1).map(|l| l.amount.amount_minor).sum()),
            expected_minor: ours_amount,
            provider_minor: Some(ls[0].amount.amount_minor),
            evidence: serde_json::json!({"report": file, "lines": ls, "ours": by_flow.get(flow)}),
            resolve: None,
        });
    }
    // Candidates for the rules: none a line of this file names.
    let named_here: std::collections::HashSet<&str> = lines
        .iter()
        .filter_map(|l| named(l).map(|o| o.flow_id.as_str()))
        .collect();
    let mut free: Vec<&Ours> = candidates
        .iter()
        .filter(|o| !named_here.contains(o.flow_id.as_str()))
        .collect();
    for l in lines {
        let found = |kind, detail: String, o: Option<&Ours>, at_risk: i64| Found {
            kind,
            partner: partner.to_string(),
            domain: "payouts",
            internal_reference: o.map(|o| o.flow_id.clone()).or_else(|| l.our_reference.clone()),
            provider_reference: Some(l.provider_reference.clone()),
            detail,
            currency: Some(l.amount.currency.clone()),
            amount_at_risk: Some(at_risk),
            expected_minor: o.and_then(|o| o.amount_minor),
            provider_minor: Some(l.amount.amount_minor),
            evidence: evidence(l, o),
            resolve: None,
        };
        let Some(o) = named(l) else {
            if l.kind == SettlementKind::Payout {
                let hit = |o: &Ours, rule| Matched {
                    line: l.line,
                    flow_id: o.flow_id.clone(),
                    rule,
                };
                match rule_match(l, &free, rules) {
                    RuleMatch::One(o, rule) => {
                        matched.push(hit(o, rule));
                        free.retain(|c| c.flow_id != o.flow_id);
                        continue;
                    }
                    RuleMatch::Batch(os) => {
                        matched.extend(os.iter().map(|o| hit(o, "batch")));
                        free.retain(|c| !os.iter().any(|o| o.flow_id == c.flow_id));
                        continue;
                    }
                    RuleMatch::Ambiguous(n) => {
                        out.push(found(
                            FindingKind::MissingInternally,
                            format!(
                                "{partner}'s report {file} line {} names no payout of ours and {n} fit it equally (amount, date, payee): an operator chooses",
                                l.line
                            ),
                            None,
                            l.amount.amount_minor,
                        ));
                        continue;
                    }
                    RuleMatch::None => {}
                }
            }
            if l.kind != SettlementKind::Correction {
                out.push(found(
                    FindingKind::MissingInternally,
                    format!(
                        "{partner}'s report {file} line {} settles a payout no flow of ours knows",
                        l.line
                    ),
                    None,
                    l.amount.amount_minor,
                ));
            }
            continue;
        };
        if o.status == "in_flight" {
            continue;
        }
        if l.kind == SettlementKind::Payout {
            let split = splits.contains(o.flow_id.as_str());
            matched.push(Matched {
                line: l.line,
                flow_id: o.flow_id.clone(),
                rule: if split { "split" } else { "reference" },
            });
            if split {
                continue;
            }
        }
        let ours_amount = o.amount_minor.unwrap_or(l.amount.amount_minor);
        match l.kind {
            SettlementKind::Payout | SettlementKind::Correction
                if !rules.tolerance.allows(ours_amount, l.amount.amount_minor)
                    || o.currency.as_deref() != Some(l.amount.currency.as_str()) =>
            {
                let what = if l.kind == SettlementKind::Correction { "corrected to" } else { "settled" };
                out.push(found(
                    FindingKind::AmountMismatch,
                    format!(
                        "we paid {ours_amount} {} minor units; {partner}'s report {file} line {} {what} {} {}",
                        o.currency.as_deref().unwrap_or("?"),
                        l.line,
                        l.amount.amount_minor,
                        l.amount.currency
                    ),
                    Some(o),
                    (l.amount.amount_minor - ours_amount).abs(),
                ));
            }
            SettlementKind::Payout if o.status == "failed" => out.push(found(
                FindingKind::StatusMismatch,
                format!("we say failed; {partner}'s report {file} line {} settles it", l.line),
                Some(o),
                l.amount.amount_minor,
            )),
            SettlementKind::Return if o.status == "settled" && !o.reversed => out.push(found(
                FindingKind::LateReturn,
                format!(
                    "{partner}'s report {file} line {} returns a payout we still hold as settled (no return reached the flow)",
                    l.line
                ),
                Some(o),
                l.amount.amount_minor,
            )),
            _ => {}
        }
    }
    (out, matched)
}

/// Pulls every payout partner's list, compares, records new findings (published once) unless dry,
/// and returns the run's summary: counts by kind, value at risk per currency, new vs seen again.
pub async fn run(
    pool: &PgPool,
    outbox: &Outbox,
    partners: &Partners<dyn PayoutVendor>,
    onboarding: &Onboarding<'_>,
    opts: &Options,
) -> anyhow::Result<serde_json::Value> {
    let now = chrono::Utc::now();
    let since = now - chrono::Duration::from_std(opts.window)?;
    let run_id = if opts.dry_run {
        0
    } else {
        store::start_run(pool, false).await?
    };
    let mut found: Vec<Found> = Vec::new();
    let mut pulled: BTreeMap<String, usize> = BTreeMap::new();
    let mut ids: Vec<String> = partners.ids().cloned().collect();
    ids.sort();
    // A partner whose records cannot be read is left out of this run (nothing about it is
    // concluded, its absence least of all) and named in the summary; the others go on.
    let mut unavailable: BTreeMap<String, String> = BTreeMap::new();
    'partners: for partner in &ids {
        let vendor = partners.get(partner).map_err(|f| anyhow::anyhow!(f.message))?;
        let mut theirs: Vec<ListedPayout> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = match partners
                .call(partner, "list", || {
                    vendor.list(since.timestamp_millis(), cursor.as_deref())
                })
                .await
            {
                Ok(page) => page,
                Err(f) => {
                    unavailable.insert(partner.clone(), format!("{} ({})", f.message, f.code));
                    continue 'partners;
                }
            };
            theirs.extend(page.items);
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        pulled.insert(partner.clone(), theirs.len());
        let mut ours = store::ours_at(pool, partner, since).await?;
        let refs: Vec<String> = theirs.iter().map(|t| t.provider_reference.clone()).collect();
        let flows: Vec<String> = theirs.iter().filter_map(|t| t.our_reference.clone()).collect();
        for o in store::ours_named(pool, &refs, &flows).await? {
            if !ours.iter().any(|x| x.flow_id == o.flow_id) {
                ours.push(o);
            }
        }
        let tol = opts.tolerance.get(partner).copied().unwrap_or_default();
        found.extend(compare(
            partner,
            &theirs,
            &ours,
            now.timestamp_millis(),
            opts.grace,
            tol,
        ));
    }
    // Onboarding's vendor cases and screenings.
    let mut reads = crate::cases::Reads {
        pulled: &mut pulled,
        unavailable: &mut unavailable,
    };
    found.extend(crate::cases::findings(pool, onboarding.kyc, since, opts.grace, &mut reads).await?);
    found.extend(
        crate::cases::screening_findings(pool, onboarding.aml, since, opts.grace, opts.dry_run, &mut reads).await?,
    );
    found.extend(
        crate::cases::bank_payment_findings(
            pool,
            onboarding.openbanking,
            since,
            opts.grace,
            opts.dry_run,
            &mut reads,
        )
        .await?,
    );
    let mut new = 0usize;
    let mut new_by_kind: BTreeMap<&'static str, usize> = BTreeMap::new();
    // Settlement reports not reconciled yet: each file in one transaction with its findings.
    let mut files: Vec<serde_json::Value> = Vec::new();
    if let Some(dir) = &opts.reports_dir {
        for partner in &ids {
            let vendor = partners.get(partner).map_err(|f| anyhow::anyhow!(f.message))?;
            let Ok(entries) = std::fs::read_dir(dir.join(partner)) else {
                continue;
            };
            let mut paths: Vec<std::path::PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
            paths.sort();
            for path in paths.into_iter().filter(|p| p.extension().is_some_and(|e| e == "csv")) {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                let file_started = std::time::Instant::now();
                let bytes = std::fs::read(&path)?;
                let sha: String = sqlx::query_scalar("SELECT encode(sha256($1), 'hex')")
                    .bind(&bytes)
                    .fetch_one(pool)
                    .await?;
                let seen: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM report_files WHERE partner = $1 AND sha256 = $2")
                        .bind(partner)
                        .bind(&sha)
                        .fetch_optional(pool)
                        .await?;
                if seen.is_some() {
                    continue;
                }
                let lines = vendor
                    .parse_report(&String::from_utf8_lossy(&bytes))
                    .map_err(|e| anyhow::anyhow!("{partner} report {name}: {e}"))?;
                let refs: Vec<String> = lines.iter().map(|l| l.provider_reference.clone()).collect();
                let flows: Vec<String> = lines.iter().filter_map(|l| l.our_reference.clone()).collect();
                let ours = store::ours_named(pool, &refs, &flows).await?;
                let rules = Rules {
                    tolerance: opts.tolerance.get(partner).copied().unwrap_or_default(),
                    date_window_ms: i64::try_from(opts.date_window.as_millis()).unwrap_or(i64::MAX),
                };
                let candidates = rule_candidates(pool, partner, &lines, &ours, &rules).await?;
                let (in_file, matches) = compare_report(partner, &lines, &ours, &candidates, &rules, &name);
                let mut by_rule: BTreeMap<&str, usize> = BTreeMap::new();
                for m in &matches {
                    *by_rule.entry(m.rule).or_default() += 1;
                }
                let mut file = serde_json::json!({"partner": partner, "file": name, "lines": lines.len(),
                    "findings": in_file.len(), "matched_by_rule": by_rule});
                if !opts.dry_run {
                    let mut tx = pool.begin().await?;
                    let taken = sqlx::query(
                        "INSERT INTO report_files (partner, sha256, name, lines, findings) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(partner)
                    .bind(&sha)
                    .bind(&name)
                    .bind(i32::try_from(lines.len()).unwrap_or(i32::MAX))
                    .bind(i32::try_from(in_file.len()).unwrap_or(i32::MAX))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if taken == 1 {
                        store::matched(&mut tx, partner, &sha, &matches).await?;
                        for f in &in_file {
                            if store::record(&mut tx, f, run_id).await? {
                                new += 1;
                                *new_by_kind.entry(f.kind.as_str()).or_default() += 1;
                                publish(outbox, &mut tx, f).await?;
                            }
                        }
                        tx.commit().await?;
                    }
                }
                file["ms"] = serde_json::json!(file_started.elapsed().as_secs_f64() * 1000.0);
                files.push(file);
                found.extend(in_file);
            }
        }
    }
    if !opts.dry_run {
        // A few hundred per transaction: each finding with its event, or neither.
        for chunk in found.chunks(500) {
            let mut tx = pool.begin().await?;
            for f in chunk {
                if store::record(&mut tx, f, run_id).await? {
                    new += 1;
                    *new_by_kind.entry(f.kind.as_str()).or_default() += 1;
                    publish(outbox, &mut tx, f).await?;
                }
            }
            tx.commit().await?;
        }
        outbox.committed();
    }
    // The same disagreement seen by the list and by a report is one finding.
    let mut seen = std::collections::HashSet::new();
    found.retain(|f| seen.insert(f.fingerprint()));
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    let mut at_risk: BTreeMap<String, i64> = BTreeMap::new();
    for f in &found {
        *by_kind.entry(f.kind.as_str()).or_default() += 1;
        if let (Some(c), Some(a)) = (&f.currency, f.amount_at_risk) {
            *at_risk.entry(c.clone()).or_default() += a;
        }
    }
    let summary = serde_json::json!({
        "files": files,
        "run": run_id, "dry_run": opts.dry_run, "window_hours": opts.window.as_secs_f64() / 3600.0,
        "partner_records": pulled, "partners_unavailable": unavailable, "findings": found.len(), "new_findings": new, "new_by_kind": new_by_kind,
        "by_kind": by_kind, "value_at_risk_minor": at_risk,
        "found": found.iter().map(|f| serde_json::json!({"kind": f.kind.as_str(), "domain": f.domain, "partner": f.partner,
            "internal_reference": f.internal_reference, "provider_reference": f.provider_reference, "detail": f.detail}))
            .collect::<Vec<_>>(),
    });
    if !opts.dry_run {
        store::finish_run(pool, run_id, &summary).await?;
    }
    tracing::info!(
        findings = found.len(),
        new,
        dry_run = opts.dry_run,
        "reconciliation run"
    );
    Ok(summary)
}

/// Our payouts the rules may match a report's unnamed payout lines to (none when every line names
/// one of ours or the partner's reference).
async fn rule_candidates(
    pool: &PgPool,
    partner: &str,
    lines: &[SettlementLine],
    ours: &[Ours],
    rules: &Rules,
) -> anyhow::Result<Vec<Ours>> {
    let refs: std::collections::HashSet<&str> = ours.iter().filter_map(|o| o.provider_reference.as_deref()).collect();
    let flows: std::collections::HashSet<&str> = ours.iter().map(|o| o.flow_id.as_str()).collect();
    let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    let (w, tol) = (rules.date_window_ms, rules.tolerance);
    let unnamed: Vec<store::Unnamed> = lines
        .iter()
        .filter(|l| {
            l.kind == SettlementKind::Payout
                && !refs.contains(l.provider_reference.as_str())
                && !l.our_reference.as_deref().is_some_and(|r| flows.contains(r))
        })
        .map(|l| {
            let a = l.amount.amount_minor;
            store::Unnamed {
                currency: l.amount.currency.clone(),
                ceiling: a + tol.fixed_minor + a.abs() * tol.bps / 10_000,
                from: at(l.at_ms.saturating_sub(w)),
                to: at(l.at_ms.saturating_add(w)),
            }
        })
        .collect();
    if unnamed.is_empty() {
        return Ok(vec![]);
    }
    // One more than a batch may hold: a line with more candidates is no batch anyone can tell.
    Ok(store::unmatched(pool, partner, &unnamed, BATCH_CANDIDATES as i64 + 1).await?)
}

/// A new finding on `reconciliation.findings.v1`, in the transaction that recorded it.
async fn publish(outbox: &Outbox, tx: &mut sqlx::PgConnection, f: &Found) -> anyhow::Result<()> {
    let event = ReconciliationFinding {
        envelope: Envelope::new(
            ReconciliationFinding::RECORD,
            "reconciliation",
            f.internal_reference.clone().unwrap_or_else(|| f.fingerprint()),
            crate::SERVICE,
        ),
        domain: f.domain.into(),
        partner: f.partner.clone(),
        kind: f.kind,
        internal_reference: f.internal_reference.clone(),
        provider_reference: f.provider_reference.clone(),
        detail: f.detail.clone(),
        expected_amount: money(f.expected_minor, f.currency.as_deref()),
        provider_amount: money(f.provider_minor, f.currency.as_deref()),
    };
    outbox
        .enqueue(&mut *tx, ReconciliationFinding::TOPIC, &EventRecord::of(&event)?)
        .await?;
    if let Some(r) = &f.resolve {
        let command = ResolvePayout {
            envelope: Envelope::new(
                ResolvePayout::RECORD,
                &r.tenant_id,
                f.internal_reference.as_deref().unwrap_or_default(),
                crate::SERVICE,
            ),
            payout_id: r.payout_id.clone(),
            partner: f.partner.clone(),
            provider_reference: f.provider_reference.clone().unwrap_or_default(),
            status: r.status,
            amount: r.amount.clone(),
            evidence: format!("reconciliation: {}'s list of payouts", f.partner),
        };
        outbox
            .enqueue(tx, ResolvePayout::TOPIC, &EventRecord::of(&command)?)
            .await?;
    }
    tracing::warn!(kind = f.kind.as_str(), partner = %f.partner, reference = ?f.provider_reference, "reconciliation finding");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(r: &str, flow: &str, minor: i64, status: PayoutStatus) -> ListedPayout {
        ListedPayout {
            provider_reference: r.into(),
            our_reference: Some(flow.into()),
            amount: Money {
                amount_minor: minor,
                currency: "EUR".into(),
            },
            status,
            created_ms: 0,
            raw: serde_json::json!({"id": r}),
        }
    }

    fn ours(flow: &str, r: &str, status: &str, minor: i64) -> Ours {
        Ours {
            flow_id: flow.into(),
            tenant_id: "t".into(),
            payout_id: "p".into(),
            partner: Some("pay".into()),
            provider_reference: Some(r.into()),
            status: status.into(),
            amount_minor: Some(minor),
            currency: Some("EUR".into()),
            reversed: false,
            step: None,
            counterparty: None,
            first_seen: chrono::DateTime::UNIX_EPOCH,
            updated_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    fn kinds(f: &[Found]) -> Vec<&'static str> {
        let mut k: Vec<_> = f.iter().map(|f| f.kind.as_str()).collect();
        k.sort();
        k
    }

    #[test]
    fn every_disagreement_is_one_finding_and_agreement_none() {
        let now = 10_000_000;
        let grace = Duration::from_secs(60);
        let clean = compare(
            "pay",
            &[listed("r1", "1.t.a", 100, PayoutStatus::Settled)],
            &[ours("1.t.a", "r1", "settled", 100)],
            now,
            grace,
            Tolerance::default(),
        );
        assert!(clean.is_empty(), "{clean:?}");
        let theirs = [
            listed("r1", "1.t.a", 100, PayoutStatus::Settled),
            listed("r1b", "1.t.a", 100, PayoutStatus::Settled),
            listed("r2", "1.t.b", 250, PayoutStatus::Settled),
            listed("r3", "1.t.c", 300, PayoutStatus::Settled),
            listed("r4", "1.t.ghost", 50, PayoutStatus::Settled),
            listed("r5", "1.t.e", 70, PayoutStatus::Failed),
        ];
        let ours = [
            ours("1.t.a", "r1", "settled", 100),
            ours("1.t.b", "r2", "settled", 200),
            ours("1.t.c", "r3", "failed", 300),
            ours("1.t.d", "r9", "settled", 90),
            ours("1.t.e", "r5", "settled", 70),
        ];
        let f = compare("pay", &theirs, &ours, now, grace, Tolerance::default());
        assert_eq!(
            kinds(&f),
            [
                "amount_mismatch",
                "duplicate_execution",
                "missing_at_provider",
                "missing_internally",
                "status_mismatch",
                "status_mismatch"
            ],
            "{f:#?}"
        );
        let dup = f.iter().find(|x| x.kind == FindingKind::DuplicateExecution).unwrap();
        assert_eq!(dup.amount_at_risk, Some(100));
        let amount = f.iter().find(|x| x.kind == FindingKind::AmountMismatch).unwrap();
        assert_eq!(amount.amount_at_risk, Some(50));
        // Too young to be missed yet.
        let young = compare(
            "pay",
            &[ListedPayout {
                created_ms: now - 1_000,
                ..listed("r4", "1.t.ghost", 50, PayoutStatus::Settled)
            }],
            &[],
            now,
            grace,
            Tolerance::default(),
        );
        assert!(young.is_empty());
    }

    #[test]
    fn a_payout_held_in_doubt_is_settled_from_its_partner_s_record_only() {
        let now = 10_000_000;
        let grace = Duration::from_secs(60);
        let doubt = |step: &str, partner: &str| Ours {
            status: "in_flight".into(),
            step: Some(step.into()),
            partner: Some(partner.into()),
            provider_reference: None,
            amount_minor: None,
            ..ours("1.t.a", "", "", 0)
        };
        let theirs = [listed("r1", "1.t.a", 100, PayoutStatus::Settled)];
        for step in ["in_doubt", "manual_repair"] {
            let f = compare("pay", &theirs, &[doubt(step, "pay")], now, grace, Tolerance::default());
            assert_eq!(kinds(&f), ["in_doubt_resolved"], "{f:#?}");
            let r = f[0].resolve.as_ref().expect("the flow is told");
            assert_eq!(
                (r.status, r.amount.amount_minor, r.payout_id.as_str()),
                (PayoutStatus::Settled, 100, "p")
            );
        }
        // Processing (the flow knows), another partner's doubt, or a doubt of a moment ago: nothing.
        assert!(
            compare(
                "pay",
                &theirs,
                &[doubt("processing", "pay")],
                now,
                grace,
                Tolerance::default()
            )
            .is_empty()
        );
        assert!(
            compare(
                "pay",
                &theirs,
                &[doubt("in_doubt", "other")],
                now,
                grace,
                Tolerance::default()
            )
            .is_empty()
        );
        let fresh = Ours {
            updated_at: chrono::DateTime::from_timestamp_millis(now - 1_000).unwrap(),
            ..doubt("in_doubt", "pay")
        };
        assert!(compare("pay", &theirs, &[fresh], now, grace, Tolerance::default()).is_empty());
    }

    fn line(n: usize, kind: SettlementKind, r: &str, flow: Option<&str>, minor: i64) -> SettlementLine {
        SettlementLine {
            line: n,
            kind,
            provider_reference: r.into(),
            our_reference: flow.map(str::to_string),
            amount: Money {
                amount_minor: minor,
                currency: "EUR".into(),
            },
            at_ms: 0,
            counterparty: None,
        }
    }

    const RULES: Rules = Rules {
        tolerance: Tolerance { fixed_minor: 0, bps: 0 },
        date_window_ms: 3 * 86_400_000,
    };

    /// The findings of a report with no rule candidates.
    fn report(lines: &[SettlementLine], ours: &[Ours]) -> Vec<Found> {
        compare_report("pay", lines, ours, &[], &RULES, "f.csv").0
    }

    #[test]
    fn a_report_s_lines_are_matched_and_every_disagreement_found() {
        use SettlementKind as K;
        let ours = [
            ours("1.t.a", "r1", "settled", 100),
            ours("1.t.b", "r2", "settled", 200),
            ours("1.t.c", "r3", "failed", 300),
        ];
        let clean = report(&[line(1, K::Payout, "r1", Some("1.t.a"), 100)], &ours);
        assert!(clean.is_empty(), "{clean:?}");
        let lines = [
            line(1, K::Payout, "r1", Some("1.t.a"), 100),
            line(2, K::Return, "r2", Some("1.t.b"), 200),
            line(3, K::Payout, "r3", Some("1.t.c"), 300),
            line(4, K::Correction, "r1", None, 90),
            line(5, K::Payout, "r9", Some("1.t.ghost"), 40),
            line(6, K::Payout, "r1x", Some("1.t.a"), 100),
        ];
        let f = report(&lines, &ours);
        assert_eq!(
            kinds(&f),
            [
                "amount_mismatch",
                "duplicate_execution",
                "late_return",
                "missing_internally",
                "status_mismatch"
            ],
            "{f:#?}"
        );
        let late = f.iter().find(|x| x.kind == FindingKind::LateReturn).unwrap();
        assert_eq!(late.internal_reference.as_deref(), Some("1.t.b"));
        // A return of a payout whose return reached the flow is no finding.
        let mut returned = ours[1].clone();
        returned.status = "returned".into();
        returned.reversed = true;
        assert!(report(&[line(1, K::Return, "r2", None, 200)], &[returned]).is_empty());
    }

    /// A settled payout of ours at `pay`, completed `days` after the epoch, paid to `last4`.
    fn settled(flow: &str, minor: i64, days: i64, last4: Option<&str>) -> Ours {
        Ours {
            provider_reference: Some(format!("ref-{flow}")),
            counterparty: last4.map(str::to_string),
            updated_at: chrono::DateTime::from_timestamp_millis(days * 86_400_000).unwrap(),
            ..ours(flow, "", "settled", minor)
        }
    }

    fn unnamed(n: usize, minor: i64, days: i64, last4: Option<&str>) -> SettlementLine {
        SettlementLine {
            at_ms: days * 86_400_000,
            counterparty: last4.map(str::to_string),
            ..line(n, SettlementKind::Payout, &format!("x{n}"), None, minor)
        }
    }

    fn rules_of(m: &[Matched]) -> Vec<(usize, &str, &str)> {
        let mut v: Vec<_> = m.iter().map(|m| (m.line, m.flow_id.as_str(), m.rule)).collect();
        v.sort();
        v
    }

    #[test]
    fn lines_naming_nothing_of_ours_are_matched_by_amount_date_payee_and_batches() {
        let cands = [
            settled("1.t.a", 1_000, 10, Some("1111")),
            settled("1.t.b", 2_500, 10, Some("2222")),
            settled("1.t.c", 2_500, 10, Some("3333")),
            settled("1.t.d", 700, 11, None),
            settled("1.t.e", 300, 11, None),
            settled("1.t.f", 4_200, 30, None),
        ];
        let lines = [
            // One of ours by amount and date.
            unnamed(1, 1_000, 11, None),
            // Two of ours have this amount: the payee's account tells them apart.
            unnamed(2, 2_500, 10, Some("3333")),
            // a's amount again, but line 1 took a; d + e add up to it: a batch.
            unnamed(3, 1_000, 11, None),
        ];
        let (found, matched) = compare_report("pay", &lines, &[], &cands, &RULES, "f.csv");
        assert!(found.is_empty(), "{found:#?}");
        assert_eq!(
            rules_of(&matched),
            [
                (1, "1.t.a", "amount_date"),
                (2, "1.t.c", "counterparty"),
                (3, "1.t.d", "batch"),
                (3, "1.t.e", "batch")
            ]
        );
        // Out of the date window, or another currency: nothing fits, the line is missing with us.
        let far = unnamed(1, 4_200, 20, None);
        let (found, matched) = compare_report("pay", &[far], &[], &cands, &RULES, "f.csv");
        assert!(matched.is_empty());
        assert_eq!(kinds(&found), ["missing_internally"]);
        // Two of ours fit equally (same amount, date, no payee on the line): an operator chooses.
        let (found, matched) = compare_report("pay", &[unnamed(1, 2_500, 10, None)], &[], &cands, &RULES, "f.csv");
        assert!(matched.is_empty());
        assert_eq!(kinds(&found), ["missing_internally"]);
        assert!(found[0].detail.contains("2 fit it equally"), "{}", found[0].detail);
        // A payee that is none of ours rules its amount's twins out.
        let (found, _) = compare_report(
            "pay",
            &[unnamed(1, 2_500, 10, Some("9999"))],
            &[],
            &cands,
            &RULES,
            "f.csv",
        );
        assert_eq!(kinds(&found), ["missing_internally"]);
    }

    #[test]
    fn amounts_match_within_the_partner_s_tolerance_and_splits_are_not_duplicates() {
        use SettlementKind as K;
        let ours = [
            ours("1.t.a", "r1", "settled", 10_000),
            ours("1.t.b", "r2", "settled", 5_000),
        ];
        let fee = Rules {
            tolerance: Tolerance {
                fixed_minor: 25,
                bps: 10,
            },
            ..RULES
        };
        // 10,000 - 35 (25 fixed + 10 bps of 10,000): within; 36 off: not.
        let within = [line(1, K::Payout, "r1", Some("1.t.a"), 9_965)];
        assert!(compare_report("pay", &within, &ours, &[], &fee, "f.csv").0.is_empty());
        let beyond = [line(1, K::Payout, "r1", Some("1.t.a"), 9_964)];
        assert_eq!(
            kinds(&compare_report("pay", &beyond, &ours, &[], &fee, "f.csv").0),
            ["amount_mismatch"]
        );
        assert_eq!(kinds(&report(&within, &ours)), ["amount_mismatch"], "exact by default");

        // b paid in two lines that add up to it: a split. Each at b's full amount: a duplicate.
        let split = [
            line(1, K::Payout, "r2", Some("1.t.b"), 3_000),
            line(2, K::Payout, "r2-part", Some("1.t.b"), 2_000),
        ];
        let (found, matched) = compare_report("pay", &split, &ours, &[], &RULES, "f.csv");
        assert!(found.is_empty(), "{found:#?}");
        assert_eq!(rules_of(&matched), [(1, "1.t.b", "split"), (2, "1.t.b", "split")]);
        let twice = [
            line(1, K::Payout, "r2", Some("1.t.b"), 5_000),
            line(2, K::Payout, "r2-again", Some("1.t.b"), 5_000),
        ];
        assert_eq!(kinds(&report(&twice, &ours)), ["duplicate_execution"]);
    }

    #[test]
    fn batch_search_is_bounded_and_ambiguity_is_never_guessed() {
        // Ten payouts of 100: any two pay a line of 200. Many subsets: ambiguous, not guessed.
        let cands: Vec<Ours> = (0..10).map(|i| settled(&format!("1.t.{i}"), 100, 10, None)).collect();
        let (found, matched) = compare_report("pay", &[unnamed(1, 200, 10, None)], &[], &cands, &RULES, "f.csv");
        assert!(matched.is_empty(), "{matched:?}");
        assert_eq!(kinds(&found), ["missing_internally"]);
        assert!(found[0].detail.contains("fit it equally"), "{}", found[0].detail);
        // Too many candidates to search: no batch guessed either.
        let many: Vec<Ours> = (0..40)
            .map(|i| settled(&format!("1.t.{i}"), 100 + i, 10, None))
            .collect();
        let (found, matched) = compare_report("pay", &[unnamed(1, 201, 10, None)], &[], &many, &RULES, "f.csv");
        assert!(matched.is_empty());
        assert_eq!(kinds(&found), ["missing_internally"]);
    }
}
