//! `reconciliation bench [--lines N] [--inject K]`: a settlement report of N lines in the
//! Stripe-shaped format, K of them disagreeing with our side (an amount one cent off), read and
//! matched in this process against N payouts of ours: lines/s and findings found vs injected.
//! Printed, never asserted; no database, no partner (the run's I/O is measured by the tests).

use std::time::{Duration, Instant};

use switchyard_runtime::Secret;
use switchyard_vendors::payouts::{
    PayoutVendor,
    stripe::{Stripe, StripeConfig},
};

use crate::{matching, store::Ours};

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let arg = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (lines, inject) = (arg("--lines", 100_000), arg("--inject", 25));
    let stripe = Stripe::new(StripeConfig {
        partner: "payouts-stripe".into(),
        base_url: "http://127.0.0.1:1".into(),
        api_key: Secret::new("sk_bench"),
        account: "acct_bench".into(),
        webhook_secret: None,
        timeout: Duration::from_secs(1),
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let now = chrono::Utc::now();
    let mut text = String::with_capacity(lines * 140);
    text.push_str("balance_transaction_id,created_utc,reporting_category,currency,gross,fee,net,automatic_payout_id,payout_metadata[payout_id],description\n");
    let mut ours = Vec::with_capacity(lines);
    let every = (lines / inject.max(1)).max(1);
    let mut injected = 0;
    for i in 0..lines {
        let minor = 1_000 + (i as i64 % 90_000);
        let reported = if i % every == 0 && injected < inject {
            injected += 1;
            minor + 1
        } else {
            minor
        };
        let gross = switchyard_model::money::decimal(reported, "EUR").unwrap_or_default();
        let flow = format!("11.tenant-bench.p{i}");
        text.push_str(&format!(
            "txn_{i},2026-11-20 09:14:02,payout,eur,-{gross},0.00,-{gross},po_bench_{i},{flow},STRIPE PAYOUT\n"
        ));
        ours.push(Ours {
            flow_id: flow,
            tenant_id: "tenant-bench".into(),
            payout_id: format!("p{i}"),
            partner: Some("payouts-stripe".into()),
            provider_reference: Some(format!("po_bench_{i}")),
            status: "settled".into(),
            amount_minor: Some(minor),
            currency: Some("EUR".into()),
            reversed: false,
            step: None,
            counterparty: None,
            first_seen: now,
            updated_at: now,
        });
    }
    println!(
        "bench reconciliation: a Stripe-shaped settlement report of {lines} lines ({} MB), {injected} amounts injected one cent off",
        text.len() / 1_000_000
    );
    let started = Instant::now();
    let parsed = stripe.parse_report(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let parse = started.elapsed();
    let rules = matching::Rules {
        tolerance: matching::Tolerance::default(),
        date_window_ms: 3 * 86_400_000,
    };
    let (found, matched) = matching::compare_report("payouts-stripe", &parsed, &ours, &[], &rules, "bench.csv");
    let total = started.elapsed();
    let mismatches = found.iter().filter(|f| f.kind.as_str() == "amount_mismatch").count();
    println!(
        "read {} lines in {:.3} s, matched {} in {:.3} s: {:.0} lines/s end to end",
        parsed.len(),
        matched.len(),
        parse.as_secs_f64(),
        (total - parse).as_secs_f64(),
        parsed.len() as f64 / total.as_secs_f64()
    );
    println!(
        "findings: {} ({mismatches} amount mismatches) for {injected} injected: {}",
        found.len(),
        if found.len() == injected && mismatches == injected {
            "all found, nothing else"
        } else {
            "DISAGREES"
        }
    );
    Ok(())
}
