//! `yardctl bench card-gateway`: real-time authorizations through the running cards adapter's
//! endpoint, as a processor asks them (Marqeta-shaped JIT Funding requests with the funding source's
//! Basic auth, at `/authorizations/cards-marqeta`): cards issued through the ingress first, then
//! requests several at once over them. Prints answers/s, the latency percentiles of one answer as
//! the processor sees it, and how many the fallback decided (our deadline passed); asserts nothing.

use std::{process::ExitCode, time::Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::demo::Env;

const TENANT: &str = "tenant-bench-cards";

pub async fn bench(auths: usize, cards: usize, concurrency: usize) -> anyhow::Result<ExitCode> {
    let env = Env::load()?;
    let key = env.api_key_with(TENANT, "cards:write,cards:read").await?;
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let ingress = env.var("INGRESS_URL")?.to_string();
    let cards = cards.max(1);
    println!("bench card-gateway: issuing {cards} cards through the ingress (run {run})");
    for c in 0..cards {
        let body = json!({"card_id": format!("bench-{run}-{c}"), "cardholder_id": format!("bench-{run}"),
            "form_factor": "virtual", "funding": {"currency": "USD", "value": "10000000.00"},
            "controls": {"per_transaction": {"currency": "USD", "value": "500.00"}, "blocked_mccs": ["7995"]}});
        let r = env
            .http
            .post(format!("{ingress}/v1/cards"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 202, "issue: {}", r.status());
    }
    let mut tokens = Vec::new();
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    for c in 0..cards {
        loop {
            let v: Value = env
                .http
                .get(format!("{ingress}/v1/cards/bench-{run}-{c}"))
                .bearer_auth(&key)
                .send()
                .await?
                .json()
                .await?;
            if v["status"] == "active" {
                tokens.push(v["processor_token"].as_str().context("no processor token")?.to_string());
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "card {c} not active: {v}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let url = format!("{}/authorizations/cards-marqeta", env.var("CARDS_ADAPTER_URL")?);
    let auth = format!(
        "Basic {}",
        switchyard_vendors::signing::b64(format!("switchyard:{}", env.var("MARQETA_CALLBACK_PASSWORD")?).as_bytes())
    );
    println!("  {auths} authorizations over {cards} cards, {concurrency} at once, to {url}");
    let tokens = std::sync::Arc::new(tokens);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (http, url, auth, tokens, next) = (
                env.http.clone(),
                url.clone(),
                auth.clone(),
                tokens.clone(),
                next.clone(),
            );
            let run = run.to_string();
            tokio::spawn(async move {
                let (mut took, mut approved, mut fallback, mut failed) = (Vec::new(), 0usize, 0usize, 0usize);
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= auths {
                        break;
                    }
                    let amount = 1.0 + (i % 400) as f64 / 4.0;
                    let mcc = if i % 50 == 0 { "7995" } else { "5411" };
                    let body = json!({"type": "authorization", "state": "PENDING", "token": format!("bench-{run}-{i}"),
                        "card_token": tokens[i % tokens.len()], "amount": amount, "currency_code": "USD",
                        "card_acceptor": {"mcc": mcc, "name": "Bench Grocer", "country_code": "USA"},
                        "gpa_order": {"jit_funding": {"token": format!("jit-{run}-{i}"), "method": "pgfs.authorization",
                            "user_token": "bench", "amount": amount}}});
                    let t = Instant::now();
                    match http.post(&url).header("authorization", &auth).json(&body).send().await {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let v: Value = r.json().await.unwrap_or(Value::Null);
                            took.push(t.elapsed().as_secs_f64() * 1000.0);
                            match status {
                                200 => approved += 1,
                                402 if v["jit_funding"]["decline_reason"] == "TRANSACTION_NOT_PERMITTED" => {
                                    fallback += 1
                                }
                                402 => {}
                                _ => failed += 1,
                            }
                        }
                        Err(_) => failed += 1,
                    }
                }
                (took, approved, fallback, failed)
            })
        })
        .collect();
    let (mut took, mut approved, mut fallback, mut failed) = (Vec::new(), 0, 0, 0);
    for w in workers {
        let (t, a, f, x) = w.await?;
        took.extend(t);
        approved += a;
        fallback += f;
        failed += x;
    }
    let wall = started.elapsed().as_secs_f64();
    took.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        took.get(((took.len() as f64 * p) as usize).min(took.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "  {:.0} answers/s; one answer p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {approved} approved, {} declined ({fallback} by the fallback), {failed} not answered",
        took.len() as f64 / wall,
        pct(0.50),
        pct(0.95),
        pct(0.99),
        took.last().copied().unwrap_or(0.0),
        took.len() - approved,
    );
    Ok(ExitCode::SUCCESS)
}
