//! The main job's payout run: payouts in several currencies through the ingress, a fraud block and
//! a review released by a reviewer, a payout partner outage (failover), a payout left in doubt
//! (resolved by a status query), a return after settlement (reversal). The summary counts payouts
//! by outcome, executions in each partner's own ledger (equal to the payouts executed) and how
//! each payout in doubt was resolved; any disagreement fails the run.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use anyhow::Context;
use rdkafka::{
    ClientConfig, Message,
    consumer::{Consumer, StreamConsumer},
};
use serde_json::{Value, json};
use switchyard_model::{
    SchemaCatalog,
    events::{
        Event,
        payouts::{PayoutReversed, PayoutStepChanged, iban_from},
    },
};
use switchyard_runtime::{Codec, registry::RegistryClient};

use crate::demo::Env;

const STRIPE: &str = "http://127.0.0.1:9308";
const WISE: &str = "http://127.0.0.1:9307";
const ONFIDO: &str = "http://127.0.0.1:9301";
const TENANT: &str = "tenant-alpha";

/// One payout of the run and what must become of it.
struct Case {
    label: &'static str,
    body: Value,
    /// Expected status, failure code and partner.
    status: &'static str,
    code: Option<&'static str>,
    partner: Option<&'static str>,
}

fn account(n: u64) -> Value {
    json!({"scheme": "iban", "value": iban_from("DE", &format!("37040044{:010}", n % 10_000_000_000))})
}

fn payout(id: &str, customer: &str, currency: &str, value: &str, acct: Value, priority: Option<&str>) -> Value {
    let mut b = json!({"payout_id": id, "customer_id": customer, "amount": {"currency": currency, "value": value},
        "beneficiary": {"name": "Demo Beneficiary", "account": acct}});
    if let Some(p) = priority {
        b["priority"] = json!(p);
    }
    b
}

impl Env {
    pub(crate) async fn post(&self, key: &str, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http
            .post(format!("{}{path}", self.var("INGRESS_URL")?))
            .bearer_auth(key)
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(body)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    async fn payout(&self, key: &str, id: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}/v1/payouts/{id}", self.var("INGRESS_URL")?))
            .bearer_auth(key)
            .send()
            .await?
            .json()
            .await?)
    }

    async fn sim(&self, url: &str, path: &str, body: Value) -> anyhow::Result<()> {
        let r = self.http.post(format!("{url}{path}")).json(&body).send().await?;
        anyhow::ensure!(r.status().is_success(), "simulator control {path}: {}", r.status());
        Ok(())
    }

    async fn clear(&self, url: &str) {
        let _ = self.http.delete(format!("{url}/_sim/faults")).send().await;
    }

    /// Waits until the payout's status is one of `statuses`.
    async fn until(&self, key: &str, id: &str, statuses: &[&str], within: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            let p = self.payout(key, id).await?;
            if statuses.iter().any(|s| p["status"] == *s) {
                return Ok(p);
            }
            if Instant::now() > deadline {
                return Ok(p);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// What the run saw on `payouts.outcomes.v1`: steps and reversals per payout.
#[derive(Default)]
struct Seen {
    steps: HashMap<String, Vec<String>>,
    reversals: HashMap<String, usize>,
}

async fn watch(
    env: &Env,
    prefix: String,
) -> anyhow::Result<(tokio::task::JoinHandle<Seen>, tokio::sync::oneshot::Sender<()>)> {
    let codec = Codec::new(
        SchemaCatalog::embedded()?,
        RegistryClient::new(env.var("SCHEMA_REGISTRY_URL")?, Duration::from_secs(10))?,
    );
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", env.var("KAFKA_BOOTSTRAP_SERVERS")?)
        .set("group.id", format!("demo-payouts-{prefix}"))
        .set("auto.offset.reset", "latest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[PayoutStepChanged::TOPIC])?;
    let ready = Instant::now() + Duration::from_secs(30);
    while consumer.assignment().map(|a| a.count()).unwrap_or(0) == 0 && Instant::now() < ready {
        let _ = tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await;
    }
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut seen = Seen::default();
        loop {
            let m = tokio::select! {
                _ = &mut stopped => break,
                m = consumer.recv() => m,
            };
            let Ok(m) = m else { continue };
            let Ok((_, record)) = codec.decode(PayoutStepChanged::TOPIC, m.payload()).await else {
                continue;
            };
            if let Some(Ok(s)) = record.as_event::<PayoutStepChanged>()
                && s.payout_id.starts_with(&prefix)
            {
                seen.steps.entry(s.payout_id).or_default().push(s.step);
            } else if let Some(Ok(r)) = record.as_event::<PayoutReversed>()
                && r.payout_id.starts_with(&prefix)
            {
                *seen.reversals.entry(r.payout_id).or_default() += 1;
            }
        }
        seen
    });
    Ok((task, stop))
}

/// Runs the payout part of the demo; false when anything disagrees.
pub async fn run(env: &Env, run: &str) -> anyhow::Result<bool> {
    let key = env
        .api_key_with(TENANT, "payouts:write,payouts:read,payouts:review")
        .await?;
    let prefix = format!("dpo-{run}-");
    let id = |n: &str| format!("{prefix}{n}");
    // Fresh beneficiaries every run: the velocity limits (5 payouts per beneficiary a day) never
    // refuse a later demo.
    let base = chrono::Utc::now().timestamp_micros().unsigned_abs() % 1_000_000_000 * 10;
    let acct = |i: u64| account(base + i);
    println!("\n== payouts for {TENANT} (run {run}) ==");
    println!(
        "routing: the cheaper partner that can pay the currency, country and amount (payouts-stripe, then payouts-wise), or the faster when asked; fraud screening by fraud-sift, then fraud-seon"
    );
    let (watcher, stop) = watch(env, prefix.clone()).await?;
    let started = Instant::now();
    let mut cases: Vec<(String, Case)> = vec![];
    let submit =
        async |label: &'static str, name: &str, body: Value, status, code, partner| -> anyhow::Result<(String, Case)> {
            let (code_http, resp) = env.post(&key, "/v1/payouts", &body).await?;
            anyhow::ensure!(code_http == 202, "{label}: {code_http} {resp}");
            Ok((
                id(name),
                Case {
                    label,
                    body,
                    status,
                    code,
                    partner,
                },
            ))
        };

    println!("phase 1: payouts in several currencies, a fraud block and a review");
    cases.push(
        submit(
            "EUR, cheapest",
            "eur",
            payout(&id("eur"), "cust-1", "EUR", "250.00", acct(1), None),
            "returned",
            None,
            Some("payouts-stripe"),
        )
        .await?,
    );
    cases.push(
        submit(
            "GBP to a sort code, fastest",
            "gbp",
            payout(
                &id("gbp"),
                "cust-2",
                "GBP",
                "120.50",
                json!({"scheme": "sort_code_account", "value": format!("{:08}", (base + 2) % 100_000_000), "bank_code": "601613"}),
                Some("speed"),
            ),
            "settled",
            None,
            Some("payouts-wise"),
        )
        .await?,
    );
    cases.push(
        submit(
            "JPY (no minor unit)",
            "jpy",
            payout(&id("jpy"), "cust-3", "JPY", "9000", acct(3), None),
            "settled",
            None,
            Some("payouts-wise"),
        )
        .await?,
    );
    cases.push(
        submit(
            "USD to ACH",
            "usd",
            payout(
                &id("usd"),
                "cust-4",
                "USD",
                "75.00",
                json!({"scheme": "ach_routing_account", "value": format!("{:012}", (base + 4) % 1_000_000_000_000), "bank_code": "021000021"}),
                None,
            ),
            "settled",
            None,
            Some("payouts-stripe"),
        )
        .await?,
    );
    cases.push(
        submit(
            "KWD (3 decimals), no partner",
            "kwd",
            payout(&id("kwd"), "cust-5", "KWD", "12.345", acct(5), None),
            "failed",
            Some("no_route"),
            None,
        )
        .await?,
    );
    cases.push(
        submit(
            "fraud: blocked",
            "blocked",
            payout(&id("blocked"), "fraudster", "EUR", "300.00", acct(6), None),
            "failed",
            Some("fraud_blocked"),
            None,
        )
        .await?,
    );
    cases.push(
        submit(
            "fraud: review, released",
            "review",
            payout(&id("review"), "risky", "EUR", "180.00", acct(7), None),
            "settled",
            None,
            Some("payouts-stripe"),
        )
        .await?,
    );
    let held = env
        .until(&key, &id("review"), &["held_for_review"], Duration::from_secs(60))
        .await?;
    anyhow::ensure!(
        held["status"] == "held_for_review",
        "the risky payout was not held: {held}"
    );
    let (c, r) = env
        .post(
            &key,
            &format!("/v1/payouts/{}/review", id("review")),
            &json!({"release": true, "note": "customer confirmed by phone"}),
        )
        .await?;
    anyhow::ensure!(c == 202, "review: {c} {r}");
    println!("  a reviewer released {} (held after fraud screening)", id("review"));
    for (pid, _) in &cases {
        env.until(
            &key,
            pid,
            &["settled", "failed", "returned", "cancelled"],
            Duration::from_secs(60),
        )
        .await?;
    }

    println!("phase 2: payouts-stripe outage (every call answers 503): failover, because nothing was executed there");
    env.sim(
        STRIPE,
        "/_sim/faults",
        json!({"matcher": "", "fault": {"kind": "error", "status": 503}}),
    )
    .await?;
    let outage = async {
        cases.push(
            submit(
                "EUR during the outage",
                "outage",
                payout(&id("outage"), "cust-8", "EUR", "99.00", acct(8), None),
                "settled",
                None,
                Some("payouts-wise"),
            )
            .await?,
        );
        env.until(&key, &id("outage"), &["settled", "failed"], Duration::from_secs(60))
            .await
    }
    .await;
    env.clear(STRIPE).await;
    outage?;
    tokio::time::sleep(Duration::from_secs(4)).await; // the circuit closes again

    println!(
        "phase 3: a payout in doubt (paid, answer lost, the adapter's own question refused), then the key expires"
    );
    let doubt_flow = switchyard_model::events::payouts::flow_id(TENANT, &id("doubt"));
    env.sim(
        STRIPE,
        "/_sim/faults",
        json!({"matcher": doubt_flow, "fault": {"kind": "hang_after_effect", "ms": 5000}, "times": 1}),
    )
    .await?;
    env.sim(
        STRIPE,
        "/_sim/faults",
        json!({"matcher": doubt_flow, "fault": {"kind": "error", "status": 400}, "times": 1}),
    )
    .await?;
    cases.push(
        submit(
            "EUR left in doubt",
            "doubt",
            payout(&id("doubt"), "cust-9", "EUR", "64.00", acct(9), None),
            "settled",
            None,
            Some("payouts-stripe"),
        )
        .await?,
    );
    let p = env
        .until(&key, &id("doubt"), &["in_doubt"], Duration::from_secs(60))
        .await?;
    println!(
        "  {} is {} at payouts-stripe; its Idempotency-Key now expires (a re-send would pay again)",
        id("doubt"),
        p["status"]
    );
    env.sim(STRIPE, "/_sim/clock", json!({"advance_hours": 25})).await?;
    env.until(&key, &id("doubt"), &["settled", "failed"], Duration::from_secs(60))
        .await?;
    env.clear(STRIPE).await;

    println!("phase 4: the bank returns a settled payout (account closed)");
    let eur = env.payout(&key, &id("eur")).await?;
    let reference = eur["provider_reference"]
        .as_str()
        .context("the EUR payout has no partner reference")?
        .to_string();
    env.sim(
        STRIPE,
        &format!("/_sim/payouts/{reference}/fail"),
        json!({"failure_code": "account_closed"}),
    )
    .await?;
    env.until(&key, &id("eur"), &["returned"], Duration::from_secs(60))
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop.send(());
    let seen = watcher.await?;
    let wall = started.elapsed().as_secs_f64();

    // The summary, and every count checked against the partners' own ledgers.
    println!(
        "\n{:<42} {:<12} {:<10} {:<17} {:<15} {:<15} ok",
        "payout", "amount", "expected", "status", "partner", "failure"
    );
    let mut wrong = 0;
    let mut by_outcome: BTreeMap<String, usize> = BTreeMap::new();
    let mut executed_expected = 0u64;
    let mut ledger_of: HashMap<String, (u64, u64)> = HashMap::new();
    for (pid, c) in &cases {
        let p = env.payout(&key, pid).await?;
        let flow = switchyard_model::events::payouts::flow_id(TENANT, pid);
        let count = |v: Value| v["counts"]["payout"].as_u64().unwrap_or(0);
        let w = count(
            env.http
                .get(format!("{WISE}/_sim/ledger"))
                .query(&[("key", &flow)])
                .send()
                .await?
                .json()
                .await?,
        );
        let s = count(
            env.http
                .get(format!("{STRIPE}/_sim/ledger"))
                .query(&[("key", &flow)])
                .send()
                .await?
                .json()
                .await?,
        );
        ledger_of.insert(pid.clone(), (w, s));
        let status = p["status"].as_str().unwrap_or("?");
        let partner = p["partner"].as_str();
        let code = p["failure_code"].as_str();
        let executed = matches!(status, "settled" | "returned");
        if executed {
            executed_expected += 1;
        }
        let mut ok = status == c.status && code == c.code && (c.partner.is_none() || partner == c.partner);
        ok &= w + s == u64::from(executed);
        if c.status == "returned" {
            ok &= seen.reversals.get(pid).copied() == Some(1) && p["reversed"] == true;
        }
        if !ok {
            wrong += 1;
        }
        *by_outcome.entry(status.to_string()).or_default() += 1;
        println!(
            "{:<42} {:<12} {:<10} {:<17} {:<15} {:<15} {}",
            format!("{} ({})", pid.trim_start_matches(&prefix), c.label)
                .chars()
                .take(42)
                .collect::<String>(),
            format!(
                "{} {}",
                c.body["amount"]["value"].as_str().unwrap_or(""),
                c.body["amount"]["currency"].as_str().unwrap_or("")
            ),
            c.status,
            status,
            partner.unwrap_or("-"),
            code.unwrap_or("-"),
            if ok { "yes" } else { "NO" }
        );
    }
    let (wise, stripe) = ledger_of.values().fold((0, 0), |(a, b), (w, s)| (a + w, b + s));
    println!("\npayouts: {} in {wall:.1} s", cases.len());
    println!(
        "by outcome: {}",
        by_outcome
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let ledgers_agree = wise + stripe == executed_expected && ledger_of.values().all(|(w, s)| w + s <= 1);
    println!(
        "executions in the partners' own ledgers: payouts-wise {wise}, payouts-stripe {stripe} = {} for {executed_expected} payouts executed{}",
        wise + stripe,
        if ledgers_agree {
            " (each once)"
        } else {
            "  <- DISAGREES"
        }
    );
    let doubted: Vec<&String> = seen
        .steps
        .iter()
        .filter(|(_, s)| s.iter().any(|x| x == "in_doubt"))
        .map(|(k, _)| k)
        .collect();
    for d in &doubted {
        let steps = &seen.steps[*d];
        let how = if steps.iter().any(|s| s == "manual_repair") {
            "left to an operator (manual_repair)".to_string()
        } else {
            format!(
                "resolved by a status query by our reference: found {} at the partner, never re-sent",
                if steps.iter().any(|s| s == "processing") {
                    "accepted"
                } else {
                    "paid"
                }
            )
        };
        println!("in doubt: {} -> {how}", d.trim_start_matches(&prefix));
    }
    let reversals: usize = seen.reversals.values().sum();
    println!("reversals (compensation after a settled payout came back): {reversals}");
    if doubted.is_empty() {
        wrong += 1;
        println!("in doubt: none seen  <- the in-doubt case did not happen");
    }
    wrong += reconcile(env, &key, &prefix, &cases).await?;
    if !ledgers_agree {
        wrong += 1;
    }
    if wrong > 0 {
        eprintln!("\n{wrong} payout check(s) disagree");
    }
    Ok(wrong == 0)
}

/// The Onfido-shaped partner's API, as another client of the account would call it.
async fn onfido(env: &Env, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let mut r = env
        .http
        .request(method, format!("{ONFIDO}/v3.6{path}"))
        .header("Authorization", format!("Token token={}", env.var("ONFIDO_API_TOKEN")?));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await?;
    anyhow::ensure!(r.status().is_success(), "onfido {path}: {}", r.status());
    Ok(r.json().await?)
}

/// An onboarding approved through the mesh at the Onfido-shaped partner, and at the partner a case
/// started that no flow asked for. Returns the onboarding's flow id, its check and the stray case.
async fn kyc_cases(env: &Env, prefix: &str) -> anyhow::Result<(String, String, String)> {
    let key = env.api_key(TENANT).await?;
    let family = format!("Ledger{}", prefix.trim_end_matches('-').replace('-', ""));
    let flow = env
        .submit(
            &key,
            &json!({"applicant_id": format!("{prefix}kyc"), "person": {"given_name": "Mary", "family_name": family,
                "date_of_birth": "1986-02-11", "nationality": "GB"}, "region": "UK", "risk_tier": "LOW"}),
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let v = env.get(&key, &flow).await?;
        if v["decision"].is_string() {
            break v;
        }
        anyhow::ensure!(Instant::now() < deadline, "onboarding {flow} undecided after 60 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    anyhow::ensure!(
        done["decision"] == "approved" && done["kyc_partner"] == "kyc-onfido",
        "the onboarding to reconcile: {done}"
    );
    let applicants = onfido(env, reqwest::Method::GET, "/applicants?per_page=500", None).await?;
    let applicant = applicants["applicants"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["last_name"] == family.as_str()))
        .and_then(|a| a["id"].as_str())
        .context("the applicant at the partner")?
        .to_string();
    let checks = onfido(
        env,
        reqwest::Method::GET,
        &format!("/checks?applicant_id={applicant}"),
        None,
    )
    .await?;
    let check = checks["checks"][0]["id"].as_str().context("its check")?.to_string();
    let stranger = onfido(
        env,
        reqwest::Method::POST,
        "/applicants",
        Some(json!({"first_name": "Nobody", "last_name": format!("{family}x")})),
    )
    .await?;
    let stray = onfido(
        env,
        reqwest::Method::POST,
        "/checks",
        Some(json!({"applicant_id": stranger["id"], "report_names": ["document"]})),
    )
    .await?;
    let stray = stray["id"].as_str().context("the stray check")?.to_string();
    Ok((flow, check, stray))
}

/// The reconciliation run over everything the payout run did, with discrepancies injected at the
/// partners (the USD payout executed a second time, a payout nobody sent, a return of the GBP
/// payout that never reached its flow, in the next settlement reports; an onboarding's KYC check
/// turned against it, a KYC case nobody asked for). Prints the findings about them by kind with
/// the value at risk, the injected ones marked expected; returns how many checks disagree.
async fn reconcile(env: &Env, key: &str, prefix: &str, cases: &[(String, Case)]) -> anyhow::Result<usize> {
    let recon = env.var("RECONCILIATION_URL")?.to_string();
    let flow = |id: &str| switchyard_model::events::payouts::flow_id(TENANT, id);
    let (kyc_flow, check, stray) = kyc_cases(env, prefix).await?;
    // What a finding is about: our flow, or the partner's reference when no flow of ours has it.
    let subject = |f: &Value| -> String {
        f["internal_reference"]
            .as_str()
            .or(f["provider_reference"].as_str())
            .unwrap_or("?")
            .to_string()
    };
    let about_us = |found: &Value| -> Vec<Value> {
        found
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|f| {
                        let s = subject(f);
                        s.contains(prefix) || [&kyc_flow, &check, &stray].contains(&&s)
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let admin = crate::admin::Admin::with_token(env.admin_token()?)?;
    let run = async |body: Value| admin.post(&format!("{recon}/runs"), &body).await;
    println!("\nphase 5: reconciliation: the partners' lists, settlement reports and KYC cases against our outcomes");
    // Our outcomes reach the service first: until then a run would miss them (the stray case is
    // found from the start).
    let deadline = Instant::now() + Duration::from_secs(30);
    let only_stray = |v: &Value| about_us(&v["found"]).iter().all(|f| subject(f) == stray);
    while !only_stray(&run(json!({"dry_run": true, "grace_seconds": 0})).await?) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the run's payouts did not reach reconciliation in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let reference = |name: &str| -> anyhow::Result<String> {
        let pid = format!("{prefix}{name}");
        cases.iter().find(|(p, _)| *p == pid).context("no such payout")?;
        Ok(pid)
    };
    let usd = env.payout(key, &reference("usd")?).await?;
    let gbp = env.payout(key, &reference("gbp")?).await?;
    let usd_ref = usd["provider_reference"]
        .as_str()
        .context("USD payout without a reference")?;
    let gbp_ref = gbp["provider_reference"]
        .as_str()
        .context("GBP payout without a reference")?;
    env.sim(STRIPE, &format!("/_sim/payouts/{usd_ref}/duplicate"), json!({}))
        .await?;
    let ghost = flow(&format!("{prefix}ghost"));
    env.sim(
        STRIPE,
        "/_sim/payouts/ghost",
        json!({"payout_id": ghost, "amount": 4200, "currency": "EUR"}),
    )
    .await?;
    env.sim(
        WISE,
        "/_sim/reports/lines",
        json!({"kind": "return", "transfer_id": gbp_ref.parse::<i64>()?, "reference": flow(&format!("{prefix}gbp")),
            "amount_minor": 12050, "currency": "GBP"}),
    )
    .await?;
    for sim in [STRIPE, WISE] {
        env.sim(sim, "/_sim/reports", json!({})).await?;
    }
    // The onboarding's check turned against it at the partner, with no notice.
    env.sim(
        ONFIDO,
        &format!("/_sim/checks/{check}/result"),
        json!({"result": "consider"}),
    )
    .await?;
    let summary = run(json!({"grace_seconds": 0})).await?;
    let found = about_us(&summary["found"]);
    let expected = [
        ("duplicate_execution", flow(&format!("{prefix}usd"))),
        ("missing_internally", ghost.clone()),
        ("late_return", flow(&format!("{prefix}gbp"))),
        ("status_mismatch", kyc_flow.clone()),
        ("missing_internally", stray.clone()),
    ];
    let stored = admin.get(&format!("{recon}/findings"), &[]).await?;
    let stored = about_us(&stored["findings"]);
    println!(
        "  run {}: {} partner records, {} new report files; {} findings about this run's payouts and onboarding, {} about others (earlier runs, tests that pay without a flow)",
        summary["run"],
        summary["partner_records"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum::<u64>())
            .unwrap_or(0),
        summary["files"].as_array().map(Vec::len).unwrap_or(0),
        found.len(),
        summary["findings"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(found.len() as u64)
    );
    println!(
        "\n  {:<22} {:<8} {:<38} {:<16} {:<10}",
        "finding", "domain", "about", "value at risk", "expected"
    );
    let mut wrong = 0;
    let mut by_kind: BTreeMap<String, (usize, BTreeMap<String, i64>)> = BTreeMap::new();
    for f in &stored {
        let kind = f["kind"].as_str().unwrap_or("?");
        let r = subject(f);
        let is_expected = expected.iter().any(|(k, e)| *k == kind && *e == r);
        if !is_expected {
            wrong += 1;
        }
        let minor = f["amount_at_risk"].as_i64().unwrap_or(0);
        let e = by_kind.entry(kind.to_string()).or_default();
        e.0 += 1;
        // A KYC case puts no money at risk.
        let risk = match f["currency"].as_str() {
            Some(currency) => {
                *e.1.entry(currency.to_string()).or_default() += minor;
                format!(
                    "{} {currency}",
                    switchyard_model::money::decimal(minor, currency).unwrap_or_default()
                )
            }
            None => "-".to_string(),
        };
        println!(
            "  {:<22} {:<8} {:<38} {:<16} {}",
            kind,
            f["domain"].as_str().unwrap_or("?"),
            r.rsplit('.').next().unwrap_or(&r),
            risk,
            if is_expected { "yes (injected)" } else { "NO" }
        );
    }
    for (k, r) in &expected {
        if !stored.iter().any(|f| f["kind"] == *k && subject(f) == *r) {
            wrong += 1;
            println!(
                "  {k:<22} {:<47} missing  <- an injected discrepancy was not found",
                r.rsplit('.').next().unwrap_or(r)
            );
        }
    }
    println!(
        "  by kind: {}",
        by_kind
            .iter()
            .map(|(k, (n, risk))| if risk.is_empty() {
                format!("{k} {n}")
            } else {
                format!(
                    "{k} {n} ({})",
                    risk.iter()
                        .map(|(c, m)| format!("{} {c}", switchyard_model::money::decimal(*m, c).unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    );
    // The same run again finds nothing new about these payouts.
    let again = run(json!({"grace_seconds": 0})).await?;
    let new_again = about_us(&again["found"]).len();
    let stored_again = admin.get(&format!("{recon}/findings"), &[]).await?;
    if about_us(&stored_again["findings"]).len() != stored.len() {
        wrong += 1;
        println!("  a second run added findings  <- runs must be idempotent");
    } else {
        println!(
            "  a second run found {new_again} of them again in the partners' lists (a report is read once) and added none"
        );
    }
    if found.len() != expected.len() {
        wrong += 1;
        println!(
            "  the run found {} about these payouts and cases, {} expected",
            found.len(),
            expected.len()
        );
    }
    Ok(wrong)
}
