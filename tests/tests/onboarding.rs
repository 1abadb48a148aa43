//! Onboarding end to end through the running mesh: ingress → orchestrator → adapters → simulated
//! vendors → webhooks → normalizer → orchestrator → outcome → ingress read model.
//!
//! The services and simulators are shared, so these tests run one at a time (a test may inject a
//! vendor outage); each uses its own tenant keys, applicant ids and names.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: a failed expectation is the test failing

use std::{collections::HashSet, time::Duration};

use serde_json::json;
use switchyard_tests::*;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const DECIDE: Duration = Duration::from_secs(40);

fn id() -> String {
    short_id()[..8].to_string()
}

#[tokio::test]
async fn a_clean_applicant_is_approved_with_one_effect_at_each_vendor() {
    let _g = SERIAL.lock().await;
    let m = Mesh::get();
    let key = m.api_key("tenant-alpha", "onboarding:write,onboarding:read");
    let n = id();
    let (status, headers, body) = m
        .submit(
            &key,
            &applicant(&format!("app-{n}"), &format!("Ada{n}"), "Lovelace", "UK", "LOW"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let flow = body["id"].as_str().unwrap().to_string();
    assert_eq!(headers.get("location").unwrap(), &format!("/v1/onboardings/{flow}"));
    let done = m.decided(&key, &flow, DECIDE).await;
    assert_eq!(done["decision"], "approved", "{done}");
    assert_eq!(done["kyc_partner"], "kyc-onfido");
    assert_eq!(done["aml_partner"], "aml-mesh");
    let onfido = m.ledger(ONFIDO, &format!("Ada{n}")).await;
    assert_eq!(onfido.get("check_created"), Some(&1), "{onfido:?}");
    assert_eq!(onfido.get("applicant_created"), Some(&1));
    assert_eq!(
        m.ledger(MESH, &format!("Ada{n}")).await.get("customer_screened"),
        Some(&1)
    );
}

#[tokio::test]
async fn kyc_step_up_waits_for_documents_then_continues() {
    let _g = SERIAL.lock().await;
    let m = Mesh::get();
    for (tenant, region, partner) in [
        ("tenant-alpha", "UK", "kyc-onfido"),
        ("tenant-beta", "EU", "kyc-sumsub"),
    ] {
        let key = m.api_key(tenant, "onboarding:write,onboarding:read");
        let n = id();
        let flow = m
            .start(
                &key,
                &applicant(&format!("app-{n}"), "Sam", &format!("Stepup{n}"), region, "LOW"),
            )
            .await;
        let saw_step_up = eventually(DECIDE, || async {
            m.fetch(&key, &flow).await.1["step"] == "kyc_awaiting_documents"
        })
        .await;
        assert!(saw_step_up, "{partner}: never asked for documents");
        let done = m.decided(&key, &flow, DECIDE).await;
        assert_eq!(done["decision"], "approved", "{done}");
        assert_eq!(done["kyc_partner"], partner);
    }
    // Time spent waiting for the applicant is not the mesh's latency: such flows are counted apart.
    let text = m.metrics("ORCHESTRATOR_URL").await;
    let waited = text
        .lines()
        .find(|l| {
            l.starts_with("switchyard_flow_duration_seconds_count{")
                && l.contains("flow=\"onboarding\",outcome=\"approved\",path=\"waited\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(
        waited.is_some_and(|n| n >= 2.0),
        "step-up flows counted as waited:\n{text}"
    );
}

#[tokio::test]
async fn screening_outcomes_decide_review_and_rejection() {
    let _g = SERIAL.lock().await;
    let m = Mesh::get();
    let key = m.api_key("tenant-alpha", "onboarding:write,onboarding:read");
    let n = id();
    let cases = [
        (
            "Pepita",
            format!("Politica{n}"),
            "manual_review",
            Some("screening_possible_match"),
        ),
        (
            "Viktor",
            format!("Sanctionov{n}"),
            "rejected",
            Some("screening_confirmed_match"),
        ),
        ("Fred", format!("Forger{n}"), "rejected", None),
        ("Rita", format!("Reviewme{n}"), "manual_review", Some("kyc_review")),
    ];
    let mut flows = Vec::new();
    for (i, (given, family, _, _)) in cases.iter().enumerate() {
        let (s, _, body) = m
            .submit(
                &key,
                &applicant(&format!("app-{n}-{i}"), given, family, "UK", "MEDIUM"),
                None,
            )
            .await;
        assert_eq!(s, 202);
        flows.push(body["id"].as_str().unwrap().to_string());
    }
    for (flow, (_, family, decision, failure)) in flows.iter().zip(cases.iter()) {
        let done = m.decided(&key, flow, DECIDE).await;
        assert_eq!(done["decision"], *decision, "{family}: {done}");
        assert_eq!(done["failure_code"].as_str(), *failure, "{family}: {done}");
        assert!(
            !done["reasons"].as_array().unwrap().is_empty(),
            "{family}: a decision other than approval says why"
        );
        if family.starts_with("Forger") {
            assert_eq!(
                done["reasons"],
                json!(["document_rejected"]),
                "canonical reason codes, no vendor words"
            );
        }
    }
}

#[tokio::test]
async fn kyc_fails_over_when_the_primary_is_down_and_returns_when_it_recovers() {
    let _g = SERIAL.lock().await;
    let m = Mesh::get();
    let key = m.api_key("tenant-alpha", "onboarding:write,onboarding:read");
    m.sim_clear(ONFIDO).await;
    m.sim_post(
        ONFIDO,
        "/_sim/faults",
        json!({"matcher": "", "fault": {"kind": "error", "status": 503}}),
    )
    .await;
    let n = id();
    let mut flows = Vec::new();
    for i in 0..4 {
        let (_, _, body) = m
            .submit(
                &key,
                &applicant(&format!("app-{n}-{i}"), &format!("Olive{n}{i}"), "Outage", "UK", "LOW"),
                None,
            )
            .await;
        flows.push(body["id"].as_str().unwrap().to_string());
    }
    for flow in &flows {
        let done = m.decided(&key, flow, DECIDE).await;
        assert_eq!(done["decision"], "approved", "{done}");
        assert_eq!(done["kyc_partner"], "kyc-sumsub", "failed over: {done}");
    }
    let metrics = m.metrics("KYC_ADAPTER_URL").await;
    assert!(metrics.contains("switchyard_provider_requests_total{service=\"kyc-adapter\",partner=\"kyc-onfido\",operation=\"verify\",outcome=\"transient\"}"), "{metrics}");
    // The primary recovers: once its circuit lets a call through, new flows use it again.
    m.sim_clear(ONFIDO).await;
    let back = eventually(Duration::from_secs(30), || async {
        let (_, _, body) = m
            .submit(
                &key,
                &applicant(
                    &format!("app-{n}-r{}", id()),
                    &format!("Rosa{n}"),
                    "Recovered",
                    "UK",
                    "LOW",
                ),
                None,
            )
            .await;
        let done = m.decided(&key, body["id"].as_str().unwrap(), DECIDE).await;
        done["kyc_partner"] == "kyc-onfido" && done["decision"] == "approved"
    })
    .await;
    assert!(back, "traffic never returned to the recovered primary");
    let orch = m.orchestrator_db().await;
    let failovers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM flow_history WHERE event = 'failover' AND flow_id = ANY($1)")
            .bind(&flows)
            .fetch_one(&orch)
            .await
            .unwrap();
    assert_eq!(failovers, 4);
}

#[tokio::test]
async fn shadow_mode_records_the_second_vendor_without_acting_on_it() {
    let _g = SERIAL.lock().await;
    let m = Mesh::get();
    let key = m.api_key("tenant-gamma", "onboarding:write,onboarding:read");
    let orch = m.orchestrator_db().await;
    let n = id();
    // Applicant 1: the shadow vendor agrees; applicant 2: the shadow vendor fails every call, a
    // failure that on the primary path would fail the step over; applicant 3: the shadow vendor
    // finds a forged document where the primary approves.
    let (agrees, fails, differs) = (format!("Gus{n}"), format!("Gil{n}"), format!("Gid{n}"));
    m.sim_post(
        SUMSUB,
        "/_sim/faults",
        json!({"matcher": fails, "fault": {"kind": "error", "status": 503}}),
    )
    .await;
    m.sim_post(
        SUMSUB,
        "/_sim/personas",
        json!({"matcher": differs, "persona": "forger"}),
    )
    .await;
    for (given, verdict, agreement, failure) in [
        (&agrees, json!("approved"), json!(true), json!(null)),
        (&fails, json!(null), json!(null), json!("provider_unavailable")),
        (&differs, json!("rejected"), json!(false), json!(null)),
    ] {
        let flow = m
            .start(&key, &applicant(&format!("app-{given}"), given, "Shadowy", "EU", "LOW"))
            .await;
        let done = m.decided(&key, &flow, DECIDE).await;
        assert_eq!(done["decision"], "approved", "{given}: {done}");
        assert_eq!(
            done["kyc_partner"], "kyc-onfido",
            "{given}: decided by the primary alone"
        );
        // The shadow vendor's own final verdict (from its webhook), compared with the live one.
        let row = || async {
            sqlx::query_as::<_, (Option<String>, Option<bool>, serde_json::Value)>(
                "SELECT verdict, agrees, detail FROM shadow_results WHERE flow_id = $1 AND partner = 'kyc-sumsub'",
            )
            .bind(&flow)
            .fetch_optional(&orch)
            .await
            .unwrap()
        };
        let recorded = eventually(Duration::from_secs(20), || async {
            row()
                .await
                .is_some_and(|(v, a, d)| json!(v) == verdict && json!(a) == agreement && d["failure"] == failure)
        })
        .await;
        let last = row().await;
        assert!(recorded, "{given}: shadow verdict not recorded as expected: {last:?}");
        let history: Vec<String> = sqlx::query_scalar("SELECT event FROM flow_history WHERE flow_id = $1")
            .bind(&flow)
            .fetch_all(&orch)
            .await
            .unwrap();
        assert!(
            !history.iter().any(|e| e == "failover" || e.starts_with("ignored")),
            "{given}: the shadow answer touched the flow: {history:?}"
        );
    }
    m.sim_clear(SUMSUB).await;
    m.http.delete(format!("{SUMSUB}/_sim/personas")).send().await.unwrap();
    assert_eq!(
        m.ledger(SUMSUB, &agrees).await.get("applicant_created"),
        Some(&1),
        "the shadow vendor was really called"
    );
    let metrics = m.metrics("ORCHESTRATOR_URL").await;
    for result in ["agree", "disagree"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("switchyard_shadow_comparisons_total{")
                    && l.contains("partner=\"kyc-sumsub\"")
                    && l.contains(&format!("result=\"{result}\""))),
            "{result}: {metrics}"
        );
    }
    let board = m.admin_json(&format!("{}/shadow", m.var("ORCHESTRATOR_URL"))).await;
    let sumsub = board["shadow"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["partner"] == "kyc-sumsub")
        .cloned()
        .unwrap_or_default();
    assert!(sumsub["compared"].as_i64().unwrap_or(0) >= 2, "{board}");
    let rate = sumsub["agreement_rate"].as_f64().unwrap_or(1.0);
    assert!(rate > 0.0 && rate < 1.0, "agreement between the two: {board}");
}

#[tokio::test]
async fn duplicate_and_out_of_order_webhooks_change_nothing_twice() {
    let _g = SERIAL.lock().await;
    let m = Mesh::get();
    let key = m.api_key("tenant-beta", "onboarding:write,onboarding:read");
    let n = id();
    let app = format!("dup-{n}");
    // Every webhook for this applicant arrives three times, and the stale "pending" notice is
    // re-sent after the final review.
    m.sim_post(
        SUMSUB,
        "/_sim/webhooks",
        json!({"matcher": app, "copies": 3, "out_of_order": true}),
    )
    .await;
    let flow = m
        .start(&key, &applicant(&app, "Dora", &format!("Stepup{n}"), "EU", "LOW"))
        .await;
    let done = m.decided(&key, &flow, DECIDE).await;
    assert_eq!(done["decision"], "approved", "{done}");
    // Every copy of this applicant's webhooks delivered (the simulator sends them one after another):
    // the count stops growing.
    let family = format!("Stepup{n}");
    let mut last = (0, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let deliveries = loop {
        let d = m
            .get_json(&format!("{SUMSUB}/_sim/deliveries?key={family}"))
            .await
            .as_array()
            .cloned()
            .unwrap_or_default();
        last = if d.len() == last.0 {
            (d.len(), last.1 + 1)
        } else {
            (d.len(), 0)
        };
        if last.1 >= 4 || std::time::Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let ok = deliveries
        .iter()
        .filter(|d| (200..300).contains(&d["status"].as_u64().unwrap_or(0)))
        .count();
    assert!(
        ok >= 7,
        "three copies of each notice and a stale one re-sent: {deliveries:?}"
    );
    // Nothing moved after the decision.
    let (_, again) = m.fetch(&key, &flow).await;
    assert_eq!(again["decision"], "approved");
    assert_eq!(again["completed_at"], done["completed_at"]);
    let orch = m.orchestrator_db().await;
    let events: Vec<String> = sqlx::query_scalar("SELECT event FROM flow_history WHERE flow_id = $1 ORDER BY id")
        .bind(&flow)
        .fetch_all(&orch)
        .await
        .unwrap();
    let count = |e: &str| events.iter().filter(|x| *x == e).count();
    assert_eq!(count("kyc_awaiting_documents"), 1, "{events:?}");
    assert_eq!(count("aml_pending"), 1, "{events:?}");
    assert_eq!(count("approved"), 1, "{events:?}");
    // Each delivery of this applicant's webhooks has its receipt: one accepted per distinct notice,
    // every other copy a duplicate.
    let hooks = m.service_db("WEBHOOK_NORMALIZER_DATABASE_URL").await;
    let receipts: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT verdict, count(*), count(DISTINCT event_id) FROM webhook_receipts \
         WHERE position($1 in convert_from(body, 'UTF8')) > 0 GROUP BY verdict ORDER BY verdict",
    )
    .bind(&app)
    .fetch_all(&hooks)
    .await
    .unwrap();
    let (accepted, duplicate) = match receipts.as_slice() {
        [(a, an, ad), (d, dn, _)] if a == "accepted" && d == "duplicate" => {
            assert_eq!(an, ad, "each notice accepted once: {receipts:?}");
            (*an, *dn)
        }
        other => panic!("accepted and duplicate receipts expected: {other:?}"),
    };
    assert_eq!((accepted + duplicate) as usize, ok, "every delivery has its receipt");
    assert!(duplicate >= 5, "{receipts:?}");
    m.sim_clear(SUMSUB).await;
}

fn sumsub_webhook(applicant_id: &str, created_ms: i64) -> String {
    json!({"applicantId": applicant_id, "inspectionId": "insp-test", "correlationId": format!("req-{}", short_id()),
        "externalUserId": "nobody", "type": "applicantReviewed", "reviewStatus": "completed", "createdAtMs": created_ms.to_string(),
        "reviewResult": {"reviewAnswer": "GREEN"}})
    .to_string()
}

#[tokio::test]
async fn forged_stale_and_replayed_webhooks_are_refused() {
    let _g = SERIAL.lock().await;
    let m = Mesh::get();
    let url = format!("{}/webhooks/kyc-sumsub", m.var("WEBHOOKS_URL"));
    let secret = m.var("SUMSUB_WEBHOOK_SECRET");
    let post = |body: String, digest: String| {
        let http = m.http.clone();
        let url = url.clone();
        async move {
            let r = http
                .post(&url)
                .header("x-payload-digest", digest)
                .header("x-payload-digest-alg", "HMAC_SHA256_HEX")
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let now = chrono::Utc::now().timestamp_millis();
    // Forged: signed with the wrong secret.
    let forged = sumsub_webhook(&format!("forged-{}", id()), now);
    let (s, text) = post(
        forged.clone(),
        switchyard_vendors::kyc::sumsub::webhooks::sign(b"not-the-secret", forged.as_bytes()),
    )
    .await;
    assert_eq!(s, 401, "{text}");
    assert!(text.contains("problem") || text.contains("signature"), "{text}");
    // Stale: correctly signed, four days old.
    let body = sumsub_webhook("stale-1", now - 4 * 24 * 3600 * 1000);
    let (s, _) = post(
        body.clone(),
        switchyard_vendors::kyc::sumsub::webhooks::sign(secret.as_bytes(), body.as_bytes()),
    )
    .await;
    assert_eq!(s, 400);
    // Replayed: the same signed delivery twice is processed once.
    let body = sumsub_webhook(&format!("replay-{}", id()), now);
    let sig = switchyard_vendors::kyc::sumsub::webhooks::sign(secret.as_bytes(), body.as_bytes());
    assert_eq!(post(body.clone(), sig.clone()).await, (200, "accepted".to_string()));
    assert_eq!(post(body.clone(), sig.clone()).await, (200, "duplicate".to_string()));
    // Unsigned.
    let r = m.http.post(&url).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Receipts: a refused (unauthenticated) body is kept only as its digest and length, a verified one
    // whole.
    let db = m.service_db("WEBHOOK_NORMALIZER_DATABASE_URL").await;
    let receipts = |body: String| {
        let db = db.clone();
        async move {
            let rows: Vec<(String, i32, i32)> = sqlx::query_as(
                "SELECT verdict, length(body), body_len FROM webhook_receipts WHERE body_sha256 = $1 ORDER BY id",
            )
            .bind(switchyard_vendors::signing::sha256_hex(body.as_bytes()))
            .fetch_all(&db)
            .await
            .unwrap();
            rows
        }
    };
    let (forged_len, body_len) = (forged.len() as i32, body.len() as i32);
    assert_eq!(receipts(forged).await, vec![("rejected".into(), 0, forged_len)]);
    assert_eq!(
        receipts(body).await,
        vec![
            ("accepted".into(), body_len, body_len),
            ("duplicate".into(), body_len, body_len),
            ("rejected".into(), 0, body_len),
        ]
    );
    let metrics = m.metrics("WEBHOOK_NORMALIZER_URL").await;
    for reason in ["bad_signature", "stale", "missing_signature"] {
        assert!(
            metrics.contains(&format!(
                "partner=\"kyc-sumsub\",verdict=\"rejected\",reason=\"{reason}\""
            )),
            "{reason}: {metrics}"
        );
    }
}

#[tokio::test]
async fn idempotency_keys_replay_refuse_and_serialise() {
    let _g = SERIAL.lock().await;
    let m = Mesh::get();
    let key = m.api_key("tenant-alpha", "onboarding:write,onboarding:read");
    let n = id();
    let body = applicant(&format!("idem-{n}"), &format!("Ida{n}"), "Potent", "UK", "LOW");
    let (s1, _, r1) = m.submit(&key, &body, Some(&format!("k-{n}"))).await;
    assert_eq!(s1, 202);
    let (s2, h2, r2) = m.submit(&key, &body, Some(&format!("k-{n}"))).await;
    assert_eq!((s2, &r2), (202, &r1), "same key, same body: same response");
    assert_eq!(h2.get("idempotent-replayed").unwrap(), "true");
    let mut other = body.clone();
    other["risk_tier"] = json!("HIGH");
    let (s3, _, r3) = m.submit(&key, &other, Some(&format!("k-{n}"))).await;
    assert_eq!(s3, 422, "same key, different body: {r3}");
    assert_eq!(r3["title"], "Idempotency-Key reused");
    // Keys are per tenant: the same key elsewhere is a new request.
    let beta = m.api_key("tenant-beta", "onboarding:write,onboarding:read");
    let (s4, _, r4) = m.submit(&beta, &body, Some(&format!("k-{n}"))).await;
    assert_eq!(s4, 202);
    assert_ne!(r4["id"], r1["id"]);

    // 100 concurrent identical requests with one key: one flow.
    let concurrent = applicant(&format!("burst-{n}"), &format!("Burst{n}"), "Potent", "UK", "LOW");
    let idem = format!("burst-{n}");
    let calls = (0..100).map(|_| {
        let m = &m;
        let key = key.clone();
        let body = concurrent.clone();
        let idem = idem.clone();
        async move { m.submit(&key, &body, Some(&idem)).await }
    });
    let results = futures::future::join_all(calls).await;
    let mut ids = HashSet::new();
    let (mut originals, mut replays, mut in_flight) = (0, 0, 0);
    for (status, headers, body) in &results {
        match status {
            202 => {
                ids.insert(body["id"].as_str().unwrap().to_string());
                if headers
                    .get("idempotent-replayed")
                    .is_some_and(|v| v.as_bytes() == b"true")
                {
                    replays += 1;
                } else {
                    originals += 1;
                }
            }
            409 => {
                assert_eq!(body["title"], "Request in progress");
                in_flight += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ids.len(), 1, "one flow for one key: {ids:?}");
    assert_eq!(originals, 1, "exactly one request created it");
    assert_eq!(
        originals + replays + in_flight,
        100,
        "every other one replayed it or was told it is in flight"
    );
    // Once done, the key replays for everyone.
    let (status, headers, again) = m.submit(&key, &concurrent, Some(&idem)).await;
    assert_eq!(status, 202);
    assert_eq!(headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(
        Some(again["id"].as_str().unwrap()),
        ids.iter().next().map(String::as_str)
    );
    let ingress = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&m.var("INGRESS_DATABASE_URL"))
        .await
        .unwrap();
    let flows: i64 = sqlx::query_scalar("SELECT count(*) FROM onboardings WHERE applicant_id = $1")
        .bind(format!("burst-{n}"))
        .fetch_one(&ingress)
        .await
        .unwrap();
    assert_eq!(flows, 1);
    let done = m.decided(&key, ids.iter().next().unwrap(), DECIDE).await;
    assert_eq!(done["decision"], "approved");
    assert_eq!(
        m.ledger(ONFIDO, &format!("Burst{n}")).await.get("check_created"),
        Some(&1)
    );
}

#[tokio::test]
async fn a_tenant_never_sees_another_tenants_flow() {
    let _g = SERIAL.lock().await;
    let m = Mesh::get();
    let alpha = m.api_key("tenant-alpha", "onboarding:write,onboarding:read");
    let beta = m.api_key("tenant-beta", "onboarding:write,onboarding:read");
    let (_, _, body) = m
        .submit(
            &alpha,
            &applicant(&format!("iso-{}", id()), "Iso", "Lated", "UK", "LOW"),
            None,
        )
        .await;
    let flow = body["id"].as_str().unwrap();
    let (s, b) = m.fetch(&beta, flow).await;
    assert_eq!(s, 404, "another tenant's flow must not be disclosed: {b}");
    assert_eq!(b["status"], 404);
    let (s, _) = m.fetch(&beta, "no-such-flow").await;
    assert_eq!(s, 404, "the same answer as for a flow that does not exist");
    let (s, _) = m.fetch(&alpha, flow).await;
    assert_eq!(s, 200);

    // Two tenants may use the same applicant id (here at two different vendors; the test below puts
    // two tenants on the same vendor).
    let shared = format!("shared-{}", id());
    let (_, _, a) = m
        .submit(&alpha, &applicant(&shared, "Alma", "Same", "UK", "LOW"), None)
        .await;
    let (_, _, b) = m
        .submit(&beta, &applicant(&shared, "Bert", "Same", "EU", "LOW"), None)
        .await;
    assert_eq!(
        m.decided(&alpha, a["id"].as_str().unwrap(), DECIDE).await["decision"],
        "approved"
    );
    assert_eq!(
        m.decided(&beta, b["id"].as_str().unwrap(), DECIDE).await["decision"],
        "approved"
    );
}

#[tokio::test]
async fn two_tenants_at_the_same_vendor_never_share_a_vendor_customer() {
    let _g = SERIAL.lock().await;
    let m = Mesh::get();
    let n = id();
    // Tenant `t<n>.x` with applicant `y`, and tenant `t<n>` with applicant `x.y`: joined naively with
    // a dot both are `t<n>.x.y` at the vendor, and the second would get the first's verdict.
    let (first_tenant, second_tenant) = (format!("t{n}.x"), format!("t{n}"));
    // Both tenants on the vendor that keys customers by external id.
    let route = format!(
        "[[routes]]\ndomain = \"kyc\"\nprimary = \"kyc-sumsub\"\nmatch = {{ tenants = [\"{first_tenant}\", \"{second_tenant}\"] }}\n\n"
    );
    let _restore = with_route(&m, &route, &first_tenant).await;
    let first = m.api_key(&first_tenant, "onboarding:write,onboarding:read");
    let second = m.api_key(&second_tenant, "onboarding:write,onboarding:read");
    let forger = format!("Fay{n}");
    let clean = format!("Cal{n}");
    let a = m.start(&first, &applicant("y", &forger, "Forger", "UK", "LOW")).await;
    let a = m.decided(&first, &a, DECIDE).await;
    assert_eq!(
        (a["decision"].as_str(), a["kyc_partner"].as_str()),
        (Some("rejected"), Some("kyc-sumsub")),
        "{a}"
    );
    let b = m
        .start(&second, &applicant("x.y", &clean, "Clearwater", "UK", "LOW"))
        .await;
    let b = m.decided(&second, &b, DECIDE).await;
    assert_eq!(
        (b["decision"].as_str(), b["kyc_partner"].as_str()),
        (Some("approved"), Some("kyc-sumsub")),
        "the second tenant got its own verdict: {b}"
    );
    assert_eq!(
        m.ledger(SUMSUB, &clean).await.get("applicant_created"),
        Some(&1),
        "a customer of its own"
    );
}

#[tokio::test]
async fn a_second_onboarding_of_the_same_person_is_screened_afresh() {
    let _g = SERIAL.lock().await;
    let m = Mesh::get();
    // tenant-beta's EU applicants go to the KYC vendor that keeps one applicant per person.
    let key = m.api_key("tenant-beta", "onboarding:write,onboarding:read");
    let n = id();
    let name = format!("Rea{n}");
    let person = applicant(&format!("again-{n}"), &name, "Clearwater", "EU", "LOW");
    let first = m.start(&key, &person).await;
    let first = m.decided(&key, &first, DECIDE).await;
    let second = m.start(&key, &person).await;
    let second = m.decided(&key, &second, DECIDE).await;
    for done in [&first, &second] {
        assert_eq!(
            (
                done["decision"].as_str(),
                done["kyc_partner"].as_str(),
                done["aml_partner"].as_str()
            ),
            (Some("approved"), Some("kyc-sumsub"), Some("aml-mesh")),
            "{done}"
        );
    }
    // Sanctions screening: never reused, one per flow.
    assert_eq!(
        m.ledger(MESH, &name).await.get("customer_screened"),
        Some(&2),
        "a fresh screening per flow"
    );
    // Identity verification: the vendor's final review of the same tenant's applicant is reused.
    let sumsub = m.ledger(SUMSUB, &name).await;
    assert_eq!(
        (sumsub.get("applicant_created"), sumsub.get("review_requested")),
        (Some(&1), Some(&1)),
        "{sumsub:?}"
    );
}

#[tokio::test]
async fn a_revoked_api_key_is_refused_at_once() {
    let m = Mesh::get();
    let key = m.api_key("tenant-alpha", "onboarding:read");
    // Authenticated: a flow that does not exist is 404 (an unauthenticated call would be 401).
    assert_eq!(m.fetch(&key, "no-such-flow").await.0, 404);
    let revoke = |k: &str| {
        std::process::Command::new(workspace_bin("ingress"))
            .args(["revoke-api-key", "--key", k])
            .env("SWITCHYARD_DATABASE__URL", m.var("INGRESS_DATABASE_URL"))
            .env_remove("SWITCHYARD_CONFIG")
            .output()
            .unwrap()
    };
    let out = revoke(&key);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, body) = m.fetch(&key, "no-such-flow").await;
    assert_eq!(status, 401, "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("revoked")), "{body}");
    // Revoking again (by id) says there is nothing to revoke, with a non-zero exit.
    let id = key.split('_').nth(1).unwrap();
    let again = revoke(id);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("no active API key"));
}

#[tokio::test]
async fn bad_requests_get_clear_problem_documents() {
    let _g = SERIAL.lock().await;
    let m = Mesh::get();
    let key = m.api_key("tenant-alpha", "onboarding:write,onboarding:read");
    let read_only = m.api_key("tenant-alpha", "onboarding:read");
    let url = format!("{}/v1/onboardings", m.ingress());
    let good = applicant("bad-1", "Ok", "Person", "UK", "LOW");
    let check = |resp: reqwest::Response, status: u16| async move {
        assert_eq!(resp.status().as_u16(), status);
        assert_eq!(resp.headers().get("content-type").unwrap(), "application/problem+json");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["status"], status);
        assert!(!body["detail"].as_str().unwrap_or("").is_empty(), "{body}");
        body
    };
    check(m.http.post(&url).json(&good).send().await.unwrap(), 401).await;
    check(
        m.http
            .post(&url)
            .bearer_auth("sy_nope_nope")
            .json(&good)
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    check(
        m.http
            .post(&url)
            .bearer_auth(&read_only)
            .json(&good)
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;
    check(
        m.http
            .post(&url)
            .bearer_auth(&key)
            .header("content-type", "text/plain")
            .body("hi")
            .send()
            .await
            .unwrap(),
        415,
    )
    .await;
    let b = check(
        m.http
            .post(&url)
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body("{oops")
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    assert!(b["detail"].as_str().unwrap().contains("JSON"));
    let invalid =
        json!({"applicant_id": "x y", "person": {"given_name": "A"}, "region": "europe", "risk_tier": "EXTREME"});
    let b = check(
        m.http.post(&url).bearer_auth(&key).json(&invalid).send().await.unwrap(),
        422,
    )
    .await;
    let fields: Vec<&str> = b["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in ["applicant_id", "person.family_name", "region", "risk_tier"] {
        assert!(fields.contains(&f), "{f} not reported: {b}");
    }
    let huge = json!({"applicant_id": "big", "person": {"given_name": "x".repeat(70_000), "family_name": "y"}, "region": "UK", "risk_tier": "LOW"});
    let r = m.http.post(&url).bearer_auth(&key).json(&huge).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let r = m
        .http
        .get(format!("{}/v1/openapi.json", m.ingress()))
        .send()
        .await
        .unwrap();
    let doc: serde_json::Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/onboardings"]["post"].is_object());
}

#[tokio::test]
async fn a_command_produced_straight_to_kafka_runs_the_same_flow() {
    let _g = SERIAL.lock().await;
    let m = Mesh::get();
    let stack = Stack::get();
    let key = m.api_key("tenant-direct", "onboarding:read");
    let n = id();
    let flow_id = format!("direct-{n}");
    // A product service with a Confluent client: the model's command, on the model's topic.
    use switchyard_model::events::{
        Event,
        common::Person,
        onboarding::{RiskTier, StartOnboarding},
    };
    let command = StartOnboarding {
        envelope: switchyard_model::Envelope::new(
            StartOnboarding::RECORD,
            "tenant-direct",
            flow_id.clone(),
            "product-service",
        ),
        applicant_id: format!("direct-app-{n}"),
        person: Person {
            given_name: format!("Dirk{n}"),
            family_name: "Kafka".into(),
            date_of_birth: Person::days_from_iso("1979-01-02"),
            nationality: Some("DE".into()),
            address: None,
            email: None,
            phone: None,
        },
        region: "EU".into(),
        risk_tier: RiskTier::Low,
        segment: None,
    };
    let codec = switchyard_runtime::Codec::new(switchyard_model::SchemaCatalog::embedded().unwrap(), stack.registry());
    let payload = codec
        .encode(
            StartOnboarding::TOPIC,
            &switchyard_model::EventRecord::of(&command).unwrap(),
        )
        .await
        .unwrap();
    let producer = switchyard_runtime::kafka::producer(&stack.kafka, "product-service").unwrap();
    producer
        .send(
            rdkafka::producer::FutureRecord::to(StartOnboarding::TOPIC)
                .key(&flow_id)
                .payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let done = m.decided(&key, &flow_id, DECIDE).await;
    assert_eq!(done["decision"], "approved", "{done}");
    assert_eq!(done["applicant_id"], format!("direct-app-{n}"));
}

#[tokio::test]
async fn a_lost_webhook_is_settled_by_asking_the_vendor_never_by_a_second_vendor() {
    let _g = SERIAL.lock().await;
    let m = Mesh::get();
    let key = m.api_key("tenant-alpha", "onboarding:write,onboarding:read");
    let n = id();
    let name = format!("Tim{n}");
    // The primary completes the check, but its webhook does not come (held for 5 minutes): the step
    // timer fires, the flow asks the vendor, and the vendor's answer decides. No failover: the
    // first vendor's case is live.
    m.sim_post(ONFIDO, "/_sim/webhooks", json!({"matcher": name, "delay_ms": 300_000}))
        .await;
    let flow = m
        .start(&key, &applicant(&format!("slow-{n}"), &name, "Waiting", "UK", "LOW"))
        .await;
    let done = m.decided(&key, &flow, Duration::from_secs(90)).await;
    m.sim_clear(ONFIDO).await;
    assert_eq!(done["decision"], "approved", "{done}");
    assert_eq!(
        done["kyc_partner"], "kyc-onfido",
        "the timer must not fail over: {done}"
    );
    assert_eq!(m.ledger(ONFIDO, &name).await.get("check_created"), Some(&1));
    assert_eq!(
        m.ledger(SUMSUB, &name).await.get("review_requested"),
        None,
        "no second vendor case"
    );
    let orch = m.orchestrator_db().await;
    let events: Vec<String> = sqlx::query_scalar("SELECT event FROM flow_history WHERE flow_id = $1 ORDER BY id")
        .bind(&flow)
        .fetch_all(&orch)
        .await
        .unwrap();
    assert_eq!(events.iter().filter(|e| *e == "timeout").count(), 1, "{events:?}");
    assert!(!events.iter().any(|e| e == "failover"), "{events:?}");
}

#[tokio::test]
async fn a_status_query_that_fails_is_no_news_and_never_fails_the_step_over() {
    let _g = SERIAL.lock().await;
    let m = Mesh::get();
    let key = m.api_key("tenant-alpha", "onboarding:write,onboarding:read");
    let n = id();
    let name = format!("Qin{n}");
    // The webhook never comes, and the first status query finds the vendor unreachable (503 on
    // reading the check): the flow must keep waiting and ask again, not move to the second vendor.
    m.sim_post(ONFIDO, "/_sim/webhooks", json!({"matcher": name, "delay_ms": 300_000}))
        .await;
    let flow = m
        .start(&key, &applicant(&format!("q-{n}"), &name, "Waiting", "UK", "LOW"))
        .await;
    // Let the start's own reads pass, then fail the next reads of the check (the status query).
    tokio::time::sleep(Duration::from_secs(3)).await;
    m.sim_post(
        ONFIDO,
        "/_sim/faults",
        json!({"matcher": "GET /v3.6/checks/", "fault": {"kind": "error", "status": 503}, "times": 3}),
    )
    .await;
    let done = m.decided(&key, &flow, Duration::from_secs(120)).await;
    m.sim_clear(ONFIDO).await;
    assert_eq!(done["decision"], "approved", "{done}");
    assert_eq!(done["kyc_partner"], "kyc-onfido", "{done}");
    assert_eq!(
        m.ledger(SUMSUB, &name).await.get("review_requested"),
        None,
        "no second vendor case"
    );
    let orch = m.orchestrator_db().await;
    let timeouts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM flow_history WHERE flow_id = $1 AND event = 'timeout'")
            .bind(&flow)
            .fetch_one(&orch)
            .await
            .unwrap();
    assert_eq!(timeouts, 2, "the failed query was followed by a second one");
}

#[tokio::test]
async fn a_vendor_that_answers_too_late_is_asked_not_called_again() {
    let _g = SERIAL.lock().await;
    let m = Mesh::get();
    let key = m.api_key("tenant-alpha", "onboarding:write,onboarding:read");
    let n = id();
    let name = format!("Amb{n}");
    // Both vendors do the work, then hold the answer past the adapters' 3 s timeout: the outcome is
    // unknown to us. The KYC adapter finds the check by its tag; the AML adapter re-sends the
    // byte-identical request the vendor de-duplicates. One effect each, no failover.
    m.sim_post(
        ONFIDO,
        "/_sim/faults",
        json!({"matcher": format!("POST /v3.6/checks"), "fault": {"kind": "hang_after_effect", "ms": 5000}, "times": 1}),
    )
    .await;
    m.sim_post(
        MESH,
        "/_sim/faults",
        json!({"matcher": name.clone(), "fault": {"kind": "hang_after_effect", "ms": 5000}, "times": 1}),
    )
    .await;
    let flow = m
        .start(&key, &applicant(&format!("amb-{n}"), &name, "Unsure", "UK", "LOW"))
        .await;
    let done = m.decided(&key, &flow, Duration::from_secs(90)).await;
    m.sim_clear(ONFIDO).await;
    m.sim_clear(MESH).await;
    assert_eq!(done["decision"], "approved", "{done}");
    assert_eq!(done["kyc_partner"], "kyc-onfido", "{done}");
    assert_eq!(m.ledger(ONFIDO, &name).await.get("check_created"), Some(&1));
    assert_eq!(m.ledger(SUMSUB, &name).await.get("review_requested"), None);
    assert_eq!(m.ledger(MESH, &name).await.get("customer_screened"), Some(&1));
    let recovered = m.metrics("KYC_ADAPTER_URL").await;
    assert!(
        recovered.lines().any(|l| l.contains("provider_effect_recoveries")
            && l.contains("kyc-onfido")
            && l.contains("result=\"found\"")),
        "the KYC adapter resolved the doubt by asking: {recovered}"
    );
}

/// Restores the routing file when dropped.
struct RestoreFile(std::path::PathBuf, String);

impl Drop for RestoreFile {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, &self.1);
    }
}

/// Puts `route` (TOML) ahead of the local routing policy's routes and waits until the orchestrator
/// shows a policy containing `marker`; the original file comes back when the guard is dropped.
async fn with_route(m: &Mesh, route: &str, marker: &str) -> RestoreFile {
    let file = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../local-stack/config/routing.toml");
    let original = std::fs::read_to_string(&file).unwrap();
    let restore = RestoreFile(file.clone(), original.clone());
    let at = original.find("[[routes]]").unwrap();
    std::fs::write(&file, format!("{}{route}{}", &original[..at], &original[at..])).unwrap();
    let routing = format!("{}/routing", m.var("ORCHESTRATOR_URL"));
    let reloaded = eventually(Duration::from_secs(15), || async {
        m.http
            .get(&routing)
            .bearer_auth(m.admin_token())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains(marker)
    })
    .await;
    assert!(reloaded, "the orchestrator did not pick up the route for {marker}");
    restore
}

#[tokio::test]
async fn a_routing_change_takes_effect_without_a_restart() {
    let _g = SERIAL.lock().await;
    let m = Mesh::get();
    let tenant = format!("tenant-delta-{}", id());
    let key = m.api_key(&tenant, "onboarding:write,onboarding:read");
    let (_, _, body) = m
        .submit(
            &key,
            &applicant(&format!("route-{}", id()), "Rudi", "Before", "UK", "LOW"),
            None,
        )
        .await;
    assert_eq!(
        m.decided(&key, body["id"].as_str().unwrap(), DECIDE).await["kyc_partner"],
        "kyc-onfido"
    );
    // Put the new tenant on the second vendor: a route ahead of the others.
    let route =
        format!("[[routes]]\ndomain = \"kyc\"\nprimary = \"kyc-sumsub\"\nmatch = {{ tenants = [\"{tenant}\"] }}\n\n");
    let restore = with_route(&m, &route, &tenant).await;
    let (file, routing) = (restore.0.clone(), format!("{}/routing", m.var("ORCHESTRATOR_URL")));
    let (_, _, body) = m
        .submit(
            &key,
            &applicant(&format!("route-{}", id()), "Rudi", "After", "UK", "LOW"),
            None,
        )
        .await;
    assert_eq!(
        m.decided(&key, body["id"].as_str().unwrap(), DECIDE).await["kyc_partner"],
        "kyc-sumsub"
    );
    // A broken file is refused; the last good policy stays.
    std::fs::write(&file, "[[routes]]\ndomain = \"kyc\"\nprimary = \"nobody\"\n").unwrap();
    let refused = eventually(Duration::from_secs(15), || async {
        m.metrics("ORCHESTRATOR_URL")
            .await
            .contains("switchyard_routing_reloads_total{service=\"orchestrator\",result=\"rejected\"}")
    })
    .await;
    assert!(refused);
    assert!(
        m.http
            .get(&routing)
            .bearer_auth(m.admin_token())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains(&tenant),
        "the good policy stays in force"
    );
}

#[tokio::test]
async fn aml_fails_over_to_the_secondary_screening_vendor() {
    let _g = SERIAL.lock().await;
    let m = Mesh::get();
    let key = m.api_key("tenant-alpha", "onboarding:write,onboarding:read");
    let n = id();
    let given = format!("Amy{n}");
    // The primary screening vendor refuses every screening of this applicant (503: nothing done).
    m.sim_post(
        MESH,
        "/_sim/faults",
        json!({"matcher": given, "fault": {"kind": "error", "status": 503}}),
    )
    .await;
    let (_, _, body) = m
        .submit(
            &key,
            &applicant(&format!("aml-{n}"), &given, "Fallback", "UK", "LOW"),
            None,
        )
        .await;
    let done = m.decided(&key, body["id"].as_str().unwrap(), DECIDE).await;
    m.sim_clear(MESH).await;
    assert_eq!(done["decision"], "approved", "{done}");
    assert_eq!(done["aml_partner"], "aml-watchman", "{done}");
    assert_eq!(m.ledger(WATCHMAN, &given).await.get("search"), Some(&1));
    assert!(
        !m.ledger(MESH, &given).await.contains_key("customer_screened"),
        "the failing vendor recorded no effect"
    );
}

#[tokio::test]
async fn a_screening_whose_outcome_stays_unknown_goes_to_an_operator_not_to_another_vendor() {
    let _g = SERIAL.lock().await;
    let m = Mesh::get();
    let key = m.api_key("tenant-alpha", "onboarding:write,onboarding:read");
    let n = id();
    let given = format!("Una{n}");
    // Every screening of this applicant answers 502: the vendor may have screened, we cannot tell.
    m.sim_post(
        MESH,
        "/_sim/faults",
        json!({"matcher": given, "fault": {"kind": "error", "status": 502}}),
    )
    .await;
    let (_, _, body) = m
        .submit(
            &key,
            &applicant(&format!("unk-{n}"), &given, "Unknowable", "UK", "LOW"),
            None,
        )
        .await;
    let done = m.decided(&key, body["id"].as_str().unwrap(), DECIDE).await;
    m.sim_clear(MESH).await;
    assert_eq!(done["decision"], "manual_review", "{done}");
    assert_eq!(done["failure_code"], "provider_outcome_unknown", "{done}");
    assert_eq!(done["aml_partner"], "aml-mesh", "no failover on doubt: {done}");
    assert!(
        m.ledger(WATCHMAN, &given).await.is_empty(),
        "the second vendor was never asked"
    );
}
