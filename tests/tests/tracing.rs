//! Traces through the running mesh (`make services`, which exports to the local stack's Jaeger): one
//! onboarding's trace is followed from the ingress's request through the orchestrator, the KYC
//! adapter and its call to the partner, to the partner's webhook at the normalizer (its own trace,
//! linked from the flow's), and on to the AML step the webhook's verdict started.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeSet, time::Duration};

use serde_json::Value;
use switchyard_tests::{Mesh, applicant, short_id};

/// A trace as Jaeger's query API answers it: (service, operation) per span, and the traces its
/// spans link to (references to other traces).
struct Trace {
    spans: Vec<(String, String)>,
    links: BTreeSet<String>,
}

async fn trace(m: &Mesh, id: &str) -> Option<Trace> {
    let url = format!("{}/api/traces/{id}", m.var("JAEGER_URL"));
    let v: Value = m.http.get(&url).send().await.ok()?.json().await.ok()?;
    let t = v["data"].as_array()?.first()?;
    let service = |p: &Value| {
        t["processes"][p.as_str().unwrap_or("")]["serviceName"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let spans = t["spans"]
        .as_array()?
        .iter()
        .map(|s| {
            (
                service(&s["processID"]),
                s["operationName"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let links = t["spans"]
        .as_array()?
        .iter()
        .flat_map(|s| s["references"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["traceID"].as_str().map(str::to_string))
        .filter(|r| r != id)
        .collect();
    Some(Trace { spans, links })
}

fn has(t: &Trace, service: &str, operation: &str) -> bool {
    t.spans.iter().any(|(s, o)| s == service && o == operation)
}

#[tokio::test]
async fn one_onboarding_is_followed_from_the_api_to_the_partner_and_its_webhook() {
    let m = Mesh::get();
    let key = m.api_key("tenant-alpha", "onboarding:write,onboarding:read");
    let n = &short_id()[..8];
    let flow = m
        .start(
            &key,
            &applicant(&format!("app-{n}"), &format!("Trace{n}"), "Lovelace", "UK", "LOW"),
        )
        .await;
    let done = m.decided(&key, &flow, Duration::from_secs(40)).await;
    assert_eq!(done["decision"], "approved", "{done}");
    assert_eq!(done["kyc_partner"], "kyc-onfido");

    let shown = m
        .admin_json(&format!("{}/admin/flows/{flow}", m.var("ORCHESTRATOR_URL")))
        .await;
    let trace_id = shown["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no trace id: {shown}"))
        .to_string();
    assert_eq!(trace_id.len(), 32, "{trace_id}");

    // Spans are exported in batches, by each service in its own time: wait for the whole flow's.
    let wanted = [
        ("ingress", "POST /v1/onboardings"),
        ("orchestrator", "consume onboarding.commands.v1"),
        ("kyc-adapter", "consume kyc.requests.v1"),
        ("kyc-adapter", "kyc-onfido verify"),
        ("orchestrator", "kyc-onfido notice"),
        ("aml-adapter", "aml-mesh screen"),
    ];
    let complete = |t: &Trace| wanted.iter().all(|(s, o)| has(t, s, o)) && !t.links.is_empty();
    let mut found = None;
    for _ in 0..120 {
        found = trace(&m, &trace_id).await;
        if found.as_ref().is_some_and(complete) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let t = found.unwrap_or_else(|| panic!("trace {trace_id} not in Jaeger"));
    let complete = complete(&t);
    let names: Vec<String> = t.spans.iter().map(|(s, o)| format!("{s}: {o}")).collect();
    assert!(complete, "the flow's trace is incomplete: {names:#?}");
    for (service, operation) in wanted {
        assert!(has(&t, service, operation), "{service}: {operation} not in {names:#?}");
    }
    assert!(
        t.spans
            .iter()
            .any(|(s, o)| s == "orchestrator" && o.starts_with("consume")),
        "{names:#?}"
    );
    // The partner's webhook: its own trace, one link away, begun at the normalizer (whose exporter
    // sends its spans in batches of its own: waited for, as the flow's trace was).
    let mut webhook = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !webhook && tokio::time::Instant::now() < deadline {
        for linked in &t.links {
            if let Some(w) = trace(&m, linked).await {
                webhook |= has(&w, "webhook-normalizer", "POST /webhooks/{partner}");
            }
        }
        if !webhook {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    assert!(
        webhook,
        "no linked trace holds the normalizer's webhook: links {:?}",
        t.links
    );
}
