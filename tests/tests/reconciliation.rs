//! Reconciliation through the running mesh (`make services`): payouts made through the API, the
//! payout partners' own lists pulled by the reconciliation service, discrepancies injected at the
//! Stripe-shaped simulator (a payout executed twice, an amount reported differently, a payout we never
//! sent), each found exactly once, published once, never found again by a second run; a dry run
//! stores nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_model::events::reconciliation::ReconciliationFinding;
use switchyard_tests::*;

const STRIPE: &str = "http://127.0.0.1:9308";

/// Runs are global (one finds what another test injected), and the kill test takes the service
/// away: the tests of this file run one at a time.
static SERVICE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());
const WAIT: Duration = Duration::from_secs(60);

fn flow(tenant: &str, id: &str) -> String {
    format!("{}.{tenant}.{id}", tenant.len())
}

async fn run(m: &Mesh, body: Value) -> Value {
    let url = format!("{}/runs", m.var("RECONCILIATION_URL"));
    let r = m.admin_post(&url).json(&body).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json().await.unwrap()
}

/// The findings of a run's summary (or the stored ones) about this tenant's flows.
fn ours<'a>(found: &'a [Value], tenant: &str) -> Vec<&'a Value> {
    let marker = format!(".{tenant}.");
    found
        .iter()
        .filter(|f| f["internal_reference"].as_str().is_some_and(|r| r.contains(&marker)))
        .collect()
}

async fn stored(m: &Mesh, tenant: &str) -> Vec<Value> {
    let v = m.admin_json(&format!("{}/findings", m.var("RECONCILIATION_URL"))).await;
    let all = v["findings"].as_array().cloned().unwrap_or_default();
    ours(&all, tenant).into_iter().cloned().collect()
}

#[tokio::test]
async fn each_injected_discrepancy_is_found_once_and_a_clean_run_finds_nothing() {
    let _alone = SERVICE.write().await;
    let (stack, m) = (Stack::get(), Mesh::get());
    let t = format!("tenant-rc-{}", short_id());
    let key = m.api_key(&t, "payouts:write,payouts:read");
    let mut ids = vec![];
    for i in 0..4 {
        let id = format!("rc-{i}");
        let body = json!({"payout_id": id, "customer_id": "cust-rc", "amount": {"currency": "EUR", "value": format!("{}.00", 20 + i)},
            "priority": if i == 3 { "speed" } else { "cost" },
            "beneficiary": {"name": "Grace Hopper", "account": {"scheme": "iban", "value": iban_de(fresh_account())}}});
        let (code, resp) = m.post(&key, "/v1/payouts", &body).await;
        assert_eq!(code, 202, "{resp}");
        ids.push(id);
    }
    let mut refs = vec![];
    for id in &ids {
        let p = m.payout_in(&key, id, &["settled"], WAIT).await;
        refs.push(p["provider_reference"].as_str().unwrap().to_string());
    }
    // Clean: once our outcomes have reached the service, a run finds nothing about these payouts.
    let clean = eventually(Duration::from_secs(30), || async {
        let s = run(&m, json!({"dry_run": true, "grace_seconds": 0})).await;
        ours(s["found"].as_array().unwrap(), &t).is_empty()
    })
    .await;
    assert!(clean, "a clean run finds nothing");

    // Injected at the Stripe-shaped partner: payout 0 executed twice, payout 1 reported 1 cent more,
    // a payout we never sent naming a flow of this tenant.
    m.sim_post(STRIPE, &format!("/_sim/payouts/{}/duplicate", refs[0]), json!({}))
        .await;
    m.sim_post(
        STRIPE,
        &format!("/_sim/payouts/{}/amount", refs[1]),
        json!({"amount": 2101}),
    )
    .await;
    let ghost = flow(&t, "ghost");
    m.sim_post(
        STRIPE,
        "/_sim/payouts/ghost",
        json!({"payout_id": ghost, "amount": 999, "currency": "EUR"}),
    )
    .await;

    // A dry run reports them and stores nothing.
    let dry = run(&m, json!({"dry_run": true, "grace_seconds": 0})).await;
    assert_eq!(ours(dry["found"].as_array().unwrap(), &t).len(), 3, "{dry}");
    assert!(stored(&m, &t).await.is_empty(), "a dry run stores nothing");

    let first = run(&m, json!({"grace_seconds": 0})).await;
    let found = stored(&m, &t).await;
    let mut kinds: Vec<(&str, &str)> = found
        .iter()
        .map(|f| (f["kind"].as_str().unwrap(), f["internal_reference"].as_str().unwrap()))
        .collect();
    kinds.sort();
    let mut want = [
        ("amount_mismatch", flow(&t, &ids[1])),
        ("duplicate_execution", flow(&t, &ids[0])),
        ("missing_internally", ghost.clone()),
    ];
    want.sort();
    assert_eq!(
        kinds,
        want.iter().map(|(k, r)| (*k, r.as_str())).collect::<Vec<_>>(),
        "{found:#?}"
    );
    for f in &found {
        assert_eq!(f["state"], "open");
        // Found by our first run, or by a run another test (or the schedule) made just before it.
        assert!(
            f["first_run"].as_i64().unwrap() <= first["run"].as_i64().unwrap(),
            "found by the first run at the latest: {f}"
        );
        // The partner's side: its listed record(s), or its report line(s) when a report saw it first.
        let e = &f["evidence"];
        assert!(
            e["partner_record"].is_object()
                || e["partner_records"].is_array()
                || e["line"].is_object()
                || e["lines"].is_array(),
            "{f}"
        );
    }
    let amount = found.iter().find(|f| f["kind"] == "amount_mismatch").unwrap();
    assert_eq!(
        (amount["currency"].as_str(), amount["amount_at_risk"].as_i64()),
        (Some("EUR"), Some(1))
    );
    let dup = found.iter().find(|f| f["kind"] == "duplicate_execution").unwrap();
    assert_eq!(
        dup["amount_at_risk"].as_i64(),
        Some(2000),
        "the second execution is at risk"
    );

    // Metrics: open findings by kind, and the value at risk.
    let metrics = m.metrics("RECONCILIATION_URL").await;
    for kind in ["amount_mismatch", "duplicate_execution", "missing_internally"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("switchyard_reconciliation_findings_open")
                    && l.contains(&format!("kind=\"{kind}\""))),
            "{kind} missing from the metrics"
        );
    }
    assert!(
        metrics.contains("switchyard_reconciliation_value_at_risk_minor"),
        "value at risk"
    );

    // A second run finds the same three again: no new finding.
    let second = run(&m, json!({"grace_seconds": 0})).await;
    assert_eq!(ours(second["found"].as_array().unwrap(), &t).len(), 3);
    let again = stored(&m, &t).await;
    assert_eq!(again.len(), 3);
    for f in &again {
        let before = found.iter().find(|x| x["id"] == f["id"]).unwrap();
        assert_eq!(f["first_run"], before["first_run"], "not found again: {f}");
    }

    // Published once each on reconciliation.findings.v1.
    let codec = model_codec(&stack);
    let marker = format!(".{t}.");
    let events: Vec<ReconciliationFinding> = read_events(
        &stack,
        &codec,
        WAIT,
        Duration::from_secs(2),
        |f: &ReconciliationFinding| f.internal_reference.as_deref().is_some_and(|r| r.contains(&marker)),
        |fs| fs.len() >= 3,
    )
    .await;
    assert_eq!(events.len(), 3, "{events:?}");

    // The command line shows them, and refuses a resolution it does not know.
    let cli = |args: &[&str]| {
        std::process::Command::new(workspace_bin("yardctl"))
            .arg("recon")
            .args(args)
            .env("RECONCILIATION_URL", m.var("RECONCILIATION_URL"))
            .env("SWITCHYARD_ADMIN__TOKEN", m.admin_token())
            .output()
            .expect("yardctl (build the workspace binaries first)")
    };
    let listed = cli(&["findings", "--kind", "duplicate_execution"]);
    assert!(listed.status.success());
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&flow(&t, &ids[0])));
    let refused = cli(&[
        "resolve",
        &dup["id"].to_string(),
        "--by",
        "ops-anna",
        "--resolution",
        "forgotten",
    ]);
    assert!(!refused.status.success(), "a resolution it does not know");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("matched_late"));

    // An operator takes one and resolves it; a bad resolution is refused.
    let id = dup["id"].as_i64().unwrap();
    let base = m.var("RECONCILIATION_URL");
    let post = |path: String, body: Value| {
        let m = &m;
        async move { m.admin_post(&path).json(&body).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        post(format!("{base}/findings/{id}/acknowledge"), json!({"by": "ops-anna"})).await,
        200
    );
    assert_eq!(
        post(
            format!("{base}/findings/{id}/resolve"),
            json!({"by": "ops-anna", "resolution": "forgotten"})
        )
        .await,
        422
    );
    assert_eq!(
        post(
            format!("{base}/findings/{id}/resolve"),
            json!({"by": "ops-anna", "resolution": "written_off"})
        )
        .await,
        200
    );
    assert_eq!(
        post(
            format!("{base}/findings/{id}/resolve"),
            json!({"by": "ops-anna", "resolution": "corrected"})
        )
        .await,
        409,
        "resolved once"
    );
    let after = stored(&m, &t).await;
    let d = after.iter().find(|f| f["id"] == id).unwrap();
    assert_eq!(
        (d["state"].as_str(), d["resolution"].as_str(), d["owner"].as_str()),
        (Some("resolved"), Some("written_off"), Some("ops-anna"))
    );
}

async fn report(m: &Mesh, sim: &str) -> String {
    let r = m.http.post(format!("{sim}/_sim/reports")).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let v: Value = r.json().await.unwrap();
    v["file"].as_str().unwrap().to_string()
}

/// Each payout partner drops a settlement report in its own format (Stripe-shaped itemized CSV,
/// Wise-shaped statement): clean ones add no finding; a line we never sent and a return that never
/// reached the flow are found once each; the same file again, under another name, is not read twice.
#[tokio::test]
async fn settlement_reports_are_reconciled_once_each_by_content() {
    let _alone = SERVICE.write().await;
    const WISE: &str = "http://127.0.0.1:9307";
    let m = Mesh::get();
    let t = format!("tenant-rr-{}", short_id());
    let key = m.api_key(&t, "payouts:write,payouts:read");
    let mut refs = vec![];
    for (id, priority) in [("rr-s", "cost"), ("rr-w", "speed")] {
        let body = json!({"payout_id": id, "customer_id": "cust-rr", "amount": {"currency": "EUR", "value": "31.50"},
            "priority": priority,
            "beneficiary": {"name": "Grace Hopper", "account": {"scheme": "iban", "value": iban_de(fresh_account())}}});
        assert_eq!(m.post(&key, "/v1/payouts", &body).await.0, 202);
        let p = m.payout_in(&key, id, &["settled"], WAIT).await;
        refs.push(p["provider_reference"].as_str().unwrap().to_string());
    }
    let clean = eventually(Duration::from_secs(30), || async {
        let s = run(&m, json!({"dry_run": true, "grace_seconds": 0})).await;
        ours(s["found"].as_array().unwrap(), &t).is_empty()
    })
    .await;
    assert!(clean, "our outcomes reached the service");
    report(&m, STRIPE).await;
    report(&m, WISE).await;
    let s = run(&m, json!({"grace_seconds": 0})).await;
    assert!(s["files"].as_array().unwrap().len() >= 2, "{s}");
    assert!(
        ours(s["found"].as_array().unwrap(), &t).is_empty(),
        "clean reports: {s}"
    );

    // The next reports carry a settlement line we never sent, and a return of the Wise payout that
    // never reached its flow.
    let ghost = flow(&t, "ghost-line");
    m.sim_post(
        STRIPE,
        "/_sim/reports/lines",
        json!({"category": "payout", "payout": format!("po_ghost_{}", short_id()), "payout_id": ghost, "amount_minor": 555, "currency": "EUR"}),
    )
    .await;
    m.sim_post(
        WISE,
        "/_sim/reports/lines",
        json!({"kind": "return", "transfer_id": refs[1].parse::<i64>().unwrap(), "reference": flow(&t, "rr-w"), "amount_minor": 3150, "currency": "EUR"}),
    )
    .await;
    let stripe_file = report(&m, STRIPE).await;
    report(&m, WISE).await;
    run(&m, json!({"grace_seconds": 0})).await;
    let found = stored(&m, &t).await;
    let mut kinds: Vec<(&str, &str)> = found
        .iter()
        .map(|f| (f["kind"].as_str().unwrap(), f["internal_reference"].as_str().unwrap()))
        .collect();
    kinds.sort();
    let rr_w = flow(&t, "rr-w");
    assert_eq!(
        kinds,
        [("late_return", rr_w.as_str()), ("missing_internally", ghost.as_str())],
        "{found:#?}"
    );
    let late = found.iter().find(|f| f["kind"] == "late_return").unwrap();
    assert_eq!(late["amount_at_risk"].as_i64(), Some(3150));
    assert!(
        !late["evidence"].to_string().contains("DE"),
        "no account in the evidence: {late}"
    );

    // The same file under another name: not read again; nothing new.
    let copy = stripe_file.replace(".csv", "-copy.csv");
    std::fs::copy(&stripe_file, &copy).unwrap();
    let again = run(&m, json!({"grace_seconds": 0})).await;
    let files: Vec<&str> = again["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["file"].as_str())
        .collect();
    assert!(!files.iter().any(|f| copy.ends_with(f)), "{files:?}");
    assert_eq!(stored(&m, &t).await.len(), 2);
}

/// The reconciliation service SIGKILLed in the middle of reading a large settlement report: the
/// file's findings are all or nothing (one transaction), so after a restart the next run reads it
/// again and records every finding once, published once: none lost, none twice.
#[tokio::test]
async fn a_sigkill_mid_run_loses_no_finding_and_duplicates_none() {
    let _alone = SERVICE.write().await;
    let (stack, m) = (Stack::get(), Mesh::get());
    let n = short_id();
    let t = format!("tenant-rk-{n}");
    const LINES: usize = 3000;
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../local-stack/data/reports/payouts-stripe");
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = String::from(
        "balance_transaction_id,created_utc,reporting_category,currency,gross,fee,net,automatic_payout_id,payout_metadata[payout_id],description\n",
    );
    for i in 0..LINES {
        text.push_str(&format!(
            "txn_{n}{i},2026-11-26 08:00:00,payout,eur,-1.{:02},0.00,-1.{:02},po_rk_{n}_{i},{},line nobody sent\n",
            i % 100,
            i % 100,
            flow(&t, &format!("k{i}"))
        ));
    }
    std::fs::write(dir.join(format!("zz-kill-{n}.csv")), &text).unwrap();
    let pid_file =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../local-stack/data/run/svc-reconciliation.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_string();
    let url = format!("{}/runs", m.var("RECONCILIATION_URL"));
    let first = tokio::spawn(m.admin_post(&url).json(&json!({"grace_seconds": 0})).send());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let answered = first.await.unwrap();
    assert!(answered.is_err(), "the run was killed before it answered: {answered:?}");
    // Started again (as the supervisor would), with nothing of the file recorded.
    let started = std::process::Command::new(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../local-stack/services.sh"),
    )
    .arg("start")
    .output()
    .unwrap();
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    assert!(
        stored(&m, &t).await.is_empty(),
        "the killed run recorded nothing of the file"
    );
    let again = run(&m, json!({"grace_seconds": 0})).await;
    assert!(
        again["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["file"].as_str().is_some_and(|x| x.contains(&n))),
        "{again}"
    );
    let found = stored(&m, &t).await;
    assert_eq!(found.len(), LINES, "every line's finding, once");
    assert!(found.iter().all(|f| f["kind"] == "missing_internally"));
    let codec = model_codec(&stack);
    let marker = format!(".{t}.");
    let events: Vec<ReconciliationFinding> = read_events(
        &stack,
        &codec,
        Duration::from_secs(90),
        Duration::from_secs(3),
        |f: &ReconciliationFinding| f.internal_reference.as_deref().is_some_and(|r| r.contains(&marker)),
        |fs| fs.len() >= LINES,
    )
    .await;
    let distinct: std::collections::HashSet<_> = events.iter().map(|e| e.provider_reference.clone()).collect();
    assert_eq!((events.len(), distinct.len()), (LINES, LINES), "published once each");
}

/// The one automatic action. A payout's answer is lost (the partner paid) and every question the
/// flow asks the partner about it fails: the flow holds it in doubt and would leave it to an
/// operator. A run reads the partner's list, finds the payout there under our reference, and tells
/// the flow (`ResolvePayout`): the payout settles, paid once; the finding explains it and closes
/// when the flow ends. A second run sends nothing more.
#[tokio::test]
async fn a_payout_held_in_doubt_is_settled_from_the_partner_s_list_through_its_own_flow() {
    let _alone = SERVICE.write().await;
    let m = Mesh::get();
    let t = format!("tenant-rd-{}", short_id());
    let key = m.api_key(&t, "payouts:write,payouts:read");
    let id = "rd-0";
    let f = flow(&t, id);
    // The creation (its form names the payout) happens and its answer is lost; every search for
    // it (the adapter's and the flow's) is refused for good. The list by date does not name it.
    m.sim_post(
        STRIPE,
        "/_sim/faults",
        json!({"matcher": format!("payout_id%5D={f}"), "fault": {"kind": "hang_after_effect", "ms": 5000}, "times": 1}),
    )
    .await;
    m.sim_post(
        STRIPE,
        "/_sim/faults",
        json!({"matcher": format!("%27{f}%27"), "fault": {"kind": "error", "status": 400}}),
    )
    .await;
    let body = json!({"payout_id": id, "customer_id": "cust-rd", "amount": {"currency": "EUR", "value": "43.10"},
        "beneficiary": {"name": "Grace Hopper", "account": {"scheme": "iban", "value": iban_de(fresh_account())}}});
    let (code, resp) = m.post(&key, "/v1/payouts", &body).await;
    assert_eq!(code, 202, "{resp}");
    m.payout_in(&key, id, &["in_doubt", "manual_repair"], WAIT).await;

    // The service has our side (the step) once the outcome reaches it; then a run resolves it.
    let last = std::sync::Mutex::new(Value::Null);
    let told = eventually(Duration::from_secs(30), || async {
        let s = run(&m, json!({"grace_seconds": 0})).await;
        let hit = ours(s["found"].as_array().unwrap(), &t)
            .iter()
            .any(|x| x["kind"] == "in_doubt_resolved");
        *last.lock().unwrap() = s;
        hit
    })
    .await;
    assert!(
        told,
        "a run finds the payout in the partner's list: {}",
        last.lock().unwrap()
    );
    let p = m.payout_in(&key, id, &["settled"], WAIT).await;
    assert_eq!(p["partner"], "payouts-stripe", "{p}");
    assert_eq!(
        m.ledger(STRIPE, &f).await.get("payout").copied().unwrap_or(0),
        1,
        "paid once: the resolution never pays"
    );
    m.sim_clear(STRIPE).await;

    // The finding explains it, and is closed once the flow's outcome reaches the service.
    let closed = eventually(Duration::from_secs(30), || async {
        let found = stored(&m, &t).await;
        found.len() == 1
            && found[0]["kind"] == "in_doubt_resolved"
            && found[0]["state"] == "resolved"
            && found[0]["resolution"] == "corrected"
    })
    .await;
    let found = stored(&m, &t).await;
    assert!(closed, "{found:#?}");
    assert!(found[0]["evidence"]["partner_record"].is_object(), "{found:#?}");
    // A later run finds nothing new about it (the payout is settled, as the partner says).
    let again = run(&m, json!({"grace_seconds": 0})).await;
    assert!(ours(again["found"].as_array().unwrap(), &t).is_empty(), "{again}");
    assert_eq!(stored(&m, &t).await.len(), 1);
}

/// Rule matching through the running service, on a Wise-shaped statement the partner drops: a
/// line with no reference of ours matched by amount, date and the payee's account; one batch line
/// paying two payouts; one payout paid in two lines (a split); a fee within the partner's
/// tolerance (25 minor units in the local configuration) and one beyond it. Only the last is a
/// finding; which line matched which payout, and by which rule, is in the run's summary.
#[tokio::test]
async fn report_lines_without_our_reference_are_matched_by_rules() {
    let _alone = SERVICE.write().await;
    let m = Mesh::get();
    let t = format!("tenant-rr-{}", short_id());
    let key = m.api_key(&t, "payouts:write,payouts:read");
    // JPY: only the Wise-shaped partner pays it. Amounts no other test uses.
    let amounts = [
        ("a", 1_037),
        ("b", 2_003),
        ("c", 211),
        ("d", 317),
        ("e", 3_001),
        ("f", 800),
    ];
    let mut account = std::collections::HashMap::new();
    for (id, yen) in amounts {
        let iban = iban_de(fresh_account());
        let body = json!({"payout_id": id, "customer_id": "cust-rr", "amount": {"currency": "JPY", "value": yen.to_string()},
            "beneficiary": {"name": "Grace Hopper", "account": {"scheme": "iban", "value": iban}}});
        let (code, resp) = m.post(&key, "/v1/payouts", &body).await;
        assert_eq!(code, 202, "{resp}");
        account.insert(id, iban);
    }
    let mut transfer = std::collections::HashMap::new();
    for (id, _) in amounts {
        let p = m.payout_in(&key, id, &["settled"], WAIT).await;
        assert_eq!(p["partner"], "payouts-wise", "{p}");
        transfer.insert(id, p["provider_reference"].as_str().unwrap().to_string());
    }
    let today = chrono::Utc::now().format("%d-%m-%Y");
    let n = short_id();
    let rows = [
        // a: the partner's line lost our reference and has its own id; amount, date and payee say a.
        format!(
            "\"TRANSFER-9{n}1\",\"{today}\",\"-1037\",\"JPY\",\"Sent money\",\"\",\"\",\"\",\"{}\",\"0\"",
            account["a"]
        ),
        // c + d in one line.
        format!("\"BATCH-{n}\",\"{today}\",\"-528\",\"JPY\",\"Batch payment\",\"\",\"\",\"\",\"\",\"0\""),
        // f in two lines under its reference.
        format!(
            "\"TRANSFER-{}\",\"{today}\",\"-500\",\"JPY\",\"Sent money\",\"{}\",\"\",\"\",\"\",\"0\"",
            transfer["f"],
            flow(&t, "f")
        ),
        format!(
            "\"TRANSFER-9{n}2\",\"{today}\",\"-300\",\"JPY\",\"Sent money\",\"{}\",\"\",\"\",\"\",\"0\"",
            flow(&t, "f")
        ),
        // e less a 20 yen fee (within tolerance); b less 30 (beyond).
        format!(
            "\"TRANSFER-{}\",\"{today}\",\"-2981\",\"JPY\",\"Sent money\",\"{}\",\"\",\"\",\"\",\"0\"",
            transfer["e"],
            flow(&t, "e")
        ),
        format!(
            "\"TRANSFER-{}\",\"{today}\",\"-1973\",\"JPY\",\"Sent money\",\"{}\",\"\",\"\",\"\",\"0\"",
            transfer["b"],
            flow(&t, "b")
        ),
    ];
    let header = "\"TransferWise ID\",\"Date\",\"Amount\",\"Currency\",\"Description\",\"Payment Reference\",\"Running Balance\",\"Payee Name\",\"Payee Account Number\",\"Total fees\"";
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../local-stack/data/reports/payouts-wise");
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!("rules-{t}.csv");
    // Our side must have reached the service (the payees' accounts, the settlements) first.
    let ready = eventually(Duration::from_secs(30), || async {
        let s = run(&m, json!({"dry_run": true, "grace_seconds": 0})).await;
        ours(s["found"].as_array().unwrap(), &t).is_empty()
    })
    .await;
    assert!(ready);
    tokio::time::sleep(Duration::from_secs(1)).await;
    std::fs::write(dir.join(&name), format!("{header}\n{}\n", rows.join("\n"))).unwrap();

    let s = run(&m, json!({"grace_seconds": 0})).await;
    let file = s["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["file"] == name.as_str())
        .unwrap_or_else(|| panic!("the file was read: {s}"))
        .clone();
    assert_eq!(file["lines"], 6, "{file}");
    assert_eq!(
        file["matched_by_rule"],
        json!({"counterparty": 1, "batch": 2, "split": 2, "reference": 2}),
        "{file}"
    );
    assert_eq!(file["findings"], 1, "only b's amount is a finding: {s}");
    let found = stored(&m, &t).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        (
            found[0]["kind"].as_str(),
            found[0]["internal_reference"].as_str(),
            found[0]["amount_at_risk"].as_i64()
        ),
        (Some("amount_mismatch"), Some(flow(&t, "b").as_str()), Some(30))
    );
    std::fs::remove_file(dir.join(&name)).ok();
}

/// An onboarding of a clean applicant (a family name of its own) through the mesh, approved with
/// its KYC at the Onfido-shaped partner and its screening at the Mesh-shaped one: its flow id and
/// the family name.
async fn approved(m: &Mesh, key: &str, id: &str) -> (String, String) {
    let family = format!("Recon{}", short_id());
    let (status, _, body) = m.submit(key, &applicant(id, "Ada", &family, "UK", "LOW"), None).await;
    assert_eq!(status, 202, "{body}");
    let flow = body["id"].as_str().unwrap().to_string();
    let done = m.decided(key, &flow, WAIT).await;
    assert_eq!(
        (
            done["decision"].as_str(),
            done["kyc_partner"].as_str(),
            done["aml_partner"].as_str()
        ),
        (Some("approved"), Some("kyc-onfido"), Some("aml-mesh")),
        "{done}"
    );
    (flow, family)
}

/// The Onfido-shaped partner's own API, as another client of the account would call it.
async fn onfido(m: &Mesh, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut r = m
        .http
        .request(method, format!("{ONFIDO}/v3.6{path}"))
        .header("Authorization", format!("Token token={}", m.var("ONFIDO_API_TOKEN")));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

/// Onboarding's cases against the KYC partner's own list: an onboarding approved through the mesh
/// (its check at the Onfido-shaped partner), then, at the partner, the check's result turned to
/// `consider` with no webhook, a second check run under the same request's key, and a case no flow
/// of ours started. Each is found once (status mismatch, duplicate execution, a case with no
/// flow), with the partner's record as evidence; a second run finds nothing new.
#[tokio::test]
async fn kyc_cases_at_the_partner_are_reconciled_with_the_flows() {
    let _alone = SERVICE.write().await;
    let m = Mesh::get();
    let key = m.api_key(&format!("tenant-rk-{}", short_id()), "onboarding:write,onboarding:read");
    let (flow, family) = approved(&m, &key, "rk-1").await;
    // The partner's records of it: the applicant (by its family name) and its check.
    let applicants = onfido(&m, reqwest::Method::GET, "/applicants?per_page=500", None).await;
    let applicant = applicants["applicants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["last_name"] == family.as_str())
        .expect("the applicant at the partner")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let checks = onfido(
        &m,
        reqwest::Method::GET,
        &format!("/checks?applicant_id={applicant}"),
        None,
    )
    .await;
    let check = checks["checks"][0].clone();
    let (check_id, tags) = (check["id"].as_str().unwrap().to_string(), check["tags"].clone());

    // Clean: once our side has reached the service, nothing about this flow or its check.
    let clean = eventually(Duration::from_secs(30), || async {
        let s = run(&m, json!({"dry_run": true, "grace_seconds": 0})).await;
        !s["found"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["internal_reference"] == flow.as_str() || f["provider_reference"] == check_id.as_str())
    })
    .await;
    assert!(clean, "a clean onboarding is no finding");

    m.sim_post(
        ONFIDO,
        &format!("/_sim/checks/{check_id}/result"),
        json!({"result": "consider"}),
    )
    .await;
    let twice = onfido(
        &m,
        reqwest::Method::POST,
        "/checks",
        Some(json!({"applicant_id": applicant, "report_names": ["document"], "tags": tags})),
    )
    .await;
    let stranger = onfido(
        &m,
        reqwest::Method::POST,
        "/applicants",
        Some(json!({"first_name": "Grace", "last_name": format!("{family}x")})),
    )
    .await;
    let orphan = onfido(
        &m,
        reqwest::Method::POST,
        "/checks",
        Some(json!({"applicant_id": stranger["id"], "report_names": ["document"]})),
    )
    .await;
    let (twice, orphan) = (twice["id"].as_str().unwrap(), orphan["id"].as_str().unwrap());

    let first = run(&m, json!({"grace_seconds": 0})).await;
    let mine = |found: &[Value]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = found
            .iter()
            .filter(|f| {
                f["internal_reference"] == flow.as_str()
                    || [check_id.as_str(), twice, orphan].contains(&f["provider_reference"].as_str().unwrap_or(""))
            })
            .map(|f| {
                let r = f["provider_reference"].as_str().or(f["internal_reference"].as_str());
                (f["kind"].as_str().unwrap().to_string(), r.unwrap().to_string())
            })
            .collect();
        v.sort();
        v
    };
    let mut want = vec![
        ("duplicate_execution".to_string(), flow.clone()),
        ("missing_internally".to_string(), orphan.to_string()),
        ("status_mismatch".to_string(), check_id.clone()),
    ];
    want.sort();
    assert_eq!(mine(first["found"].as_array().unwrap()), want, "{first:#}");
    let stored_all = m.admin_json(&format!("{}/findings", m.var("RECONCILIATION_URL"))).await;
    let stored: Vec<Value> = stored_all["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !mine(std::slice::from_ref(f)).is_empty())
        .cloned()
        .collect();
    assert_eq!(stored.len(), 3, "{stored:#?}");
    for f in &stored {
        assert_eq!(
            (f["domain"].as_str(), f["partner"].as_str()),
            (Some("kyc"), Some("kyc-onfido")),
            "{f}"
        );
        assert_eq!(f["state"], "open");
        let e = &f["evidence"];
        assert!(
            e["partner_record"].is_object() || e["partner_records"].is_array(),
            "{f}"
        );
    }
    let mismatch = stored.iter().find(|f| f["kind"] == "status_mismatch").unwrap();
    assert_eq!(mismatch["internal_reference"], flow.as_str(), "{mismatch}");
    // The same disagreements again: seen, not found again.
    let again = run(&m, json!({"grace_seconds": 0})).await;
    assert_eq!(mine(again["found"].as_array().unwrap()), want);
    let after = m.admin_json(&format!("{}/findings", m.var("RECONCILIATION_URL"))).await;
    let ids = |v: &[Value]| {
        let mut ids: Vec<i64> = v.iter().map(|f| f["id"].as_i64().unwrap()).collect();
        ids.sort();
        ids
    };
    let after: Vec<Value> = after["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !mine(std::slice::from_ref(f)).is_empty())
        .cloned()
        .collect();
    assert_eq!(ids(&after), ids(&stored), "no finding twice");
}

/// AML screenings read back from the partner that keeps them: an onboarding screened clear at the
/// Mesh-shaped partner, whose screening the partner later keeps with hits found (no notice),
/// is a status mismatch, found once; a clean one is read back once and not again.
#[tokio::test]
async fn aml_screenings_are_read_back_from_the_partner() {
    let _alone = SERVICE.write().await;
    let m = Mesh::get();
    let key = m.api_key(&format!("tenant-ra-{}", short_id()), "onboarding:write,onboarding:read");
    let (flow, family) = approved(&m, &key, "ra-1").await;
    let about = |s: &Value| -> Vec<Value> {
        s["found"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["internal_reference"] == flow.as_str())
            .cloned()
            .collect()
    };
    // Clean: read back once our result has reached the service, and in agreement (the service's
    // own table says when it was read back).
    let db = m.service_db("RECONCILIATION_DATABASE_URL").await;
    let clean = eventually(Duration::from_secs(30), || async {
        let s = run(&m, json!({"grace_seconds": 0})).await;
        let verified: Option<bool> =
            sqlx::query_scalar("SELECT verified_at IS NOT NULL FROM cases_seen WHERE domain = 'aml' AND flow_id = $1")
                .bind(&flow)
                .fetch_optional(&db)
                .await
                .unwrap();
        about(&s).is_empty() && verified == Some(true)
    })
    .await;
    assert!(clean, "a clean screening is read back once, no finding");
    let r = m
        .http
        .post(format!("{MESH}/_sim/screenings/result"))
        .json(&json!({"matcher": family, "screening_result": "HAS_PROFILES"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    // Read back once and found in agreement: never read again, so a later change is not seen.
    let later = run(&m, json!({"grace_seconds": 0})).await;
    assert!(about(&later).is_empty(), "{later:#}");

    // A second onboarding, turned before its first read back: found.
    let (flow2, family) = approved(&m, &key, "ra-2").await;
    let r = m
        .http
        .post(format!("{MESH}/_sim/screenings/result"))
        .json(&json!({"matcher": family, "screening_result": "HAS_PROFILES"}))
        .send()
        .await
        .unwrap();
    let workflow: Value = r.json().await.unwrap();
    let last = std::sync::Mutex::new(Value::Null);
    let found = eventually(Duration::from_secs(30), || async {
        let s = run(&m, json!({"grace_seconds": 0})).await;
        let hit = s["found"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["internal_reference"] == flow2.as_str());
        *last.lock().unwrap() = s;
        hit
    })
    .await;
    assert!(found, "{:#}", last.lock().unwrap());
    let stored = m.admin_json(&format!("{}/findings", m.var("RECONCILIATION_URL"))).await;
    let mine: Vec<&Value> = stored["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["internal_reference"] == flow2.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "{mine:#?}");
    assert_eq!(
        (
            mine[0]["kind"].as_str(),
            mine[0]["domain"].as_str(),
            mine[0]["provider_reference"].as_str()
        ),
        (Some("status_mismatch"), Some("aml"), workflow["workflow"].as_str())
    );
    assert_eq!(
        mine[0]["evidence"]["partner_record"]["screening_result"],
        "HAS_PROFILES"
    );
}

/// A settled payout the bank sends back, and the partner's notice of it lost for good: the flow
/// still holds it settled, the partner's list says failed. Found once, as a status mismatch with no
/// return reached us; the flow is not touched (a finding never changes money state).
#[tokio::test]
async fn a_return_whose_webhook_was_dropped_is_found_from_the_partner_s_list() {
    let _alone = SERVICE.write().await;
    let m = Mesh::get();
    let t = format!("tenant-rw-{}", short_id());
    let key = m.api_key(&t, "payouts:write,payouts:read");
    let body = json!({"payout_id": "rw-0", "customer_id": "cust-rw", "amount": {"currency": "EUR", "value": "31.40"},
        "beneficiary": {"name": "Grace Hopper", "account": {"scheme": "iban", "value": iban_de(fresh_account())}}});
    let (code, resp) = m.post(&key, "/v1/payouts", &body).await;
    assert_eq!(code, 202, "{resp}");
    let p = m.payout_in(&key, "rw-0", &["settled"], WAIT).await;
    assert_eq!(p["partner"], "payouts-stripe", "{p}");
    let reference = p["provider_reference"].as_str().unwrap().to_string();
    let clean = eventually(Duration::from_secs(30), || async {
        let s = run(&m, json!({"dry_run": true, "grace_seconds": 0})).await;
        ours(s["found"].as_array().unwrap(), &t).is_empty()
    })
    .await;
    assert!(clean);
    // Every notice about this payout from now on is lost.
    m.sim_post(STRIPE, "/_sim/webhooks", json!({"matcher": reference, "drop": true}))
        .await;
    m.sim_post(
        STRIPE,
        &format!("/_sim/payouts/{reference}/fail"),
        json!({"failure_code": "account_closed"}),
    )
    .await;
    run(&m, json!({"grace_seconds": 0})).await;
    let found = stored(&m, &t).await;
    m.sim_clear(STRIPE).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        (found[0]["kind"].as_str(), found[0]["provider_reference"].as_str()),
        (Some("status_mismatch"), Some(reference.as_str()))
    );
    assert_eq!(found[0]["evidence"]["partner_record"]["status"], "failed", "{found:#?}");
    let (_, after) = m.read(&key, "/v1/payouts/rw-0").await;
    assert_eq!(after["status"], "settled", "the finding changed nothing: {after}");
}

/// A partner whose records cannot be read is left out of the run, named in its summary, and nothing
/// is concluded about it (its cases are not "missing at the partner"); the other partners are
/// reconciled as usual, and the run counts as partial.
#[tokio::test]
async fn a_partner_that_cannot_be_read_is_left_out_not_concluded_about() {
    let _alone = SERVICE.write().await;
    let m = Mesh::get();
    let key = m.api_key(&format!("tenant-ru-{}", short_id()), "onboarding:write,onboarding:read");
    let (flow, _) = approved(&m, &key, "ru-1").await;
    let before = m.metrics("RECONCILIATION_URL").await;
    m.sim_post(
        ONFIDO,
        "/_sim/faults",
        json!({"matcher": "GET /v3.6/applicants", "fault": {"kind": "error", "status": 503}}),
    )
    .await;
    let s = run(&m, json!({"grace_seconds": 0})).await;
    m.sim_clear(ONFIDO).await;
    assert!(
        s["partners_unavailable"]["kyc-onfido"]
            .as_str()
            .is_some_and(|e| e.contains("503")),
        "{s:#}"
    );
    assert!(
        s["partner_records"]["payouts-stripe"].is_u64(),
        "the others are read: {s:#}"
    );
    assert!(
        !s["found"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["partner"] == "kyc-onfido"),
        "nothing concluded about the partner left out: {s:#}"
    );
    let partial = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("switchyard_reconciliation_runs_total") && l.contains("result=\"partial\""))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let after = m.metrics("RECONCILIATION_URL").await;
    assert_eq!(partial(&after), partial(&before) + 1.0, "{after}");
    // Readable again: the flow's case is there, in agreement (once its result has reached the
    // service).
    let agreed = eventually(Duration::from_secs(30), || async {
        let s = run(&m, json!({"dry_run": true, "grace_seconds": 0})).await;
        s["partners_unavailable"].as_object().unwrap().is_empty()
            && !s["found"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["internal_reference"] == flow.as_str())
    })
    .await;
    assert!(agreed);
}
