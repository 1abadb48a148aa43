//! Pay-by-bank payments in the chaos run: payments through the ingress, alternately at the
//! TrueLayer- and the Plaid-shaped provider, each authorized by its customer (the link followed as
//! soon as it shows) while the ingress, the orchestrator, the normalizer and the open-banking
//! adapter are SIGKILLed and the adapter dies between a provider's answer and its commit. Then:
//! every payment executed, and made exactly once at its provider (the provider's own ledger); any
//! other count fails the run.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::demo::Env;

const TRUELAYER: &str = "http://127.0.0.1:9311";
const PLAID: &str = "http://127.0.0.1:9312";

pub struct Case {
    pub id: String,
    pub key: String,
    /// The beneficiary's name: unique, so the provider's ledger counts this payment by it.
    pub name: String,
    pub sim: &'static str,
    pub error: Option<String>,
}

pub async fn run(env: &Env, run: &str, n: usize, window: Duration) -> anyhow::Result<Vec<Case>> {
    let keys = [
        env.api_key_with("tenant-chaos", "openbanking:write,openbanking:read")
            .await?,
        env.api_key_with("tenant-ob-plaid", "openbanking:write,openbanking:read")
            .await?,
    ];
    let started = Instant::now();
    let per = window.as_secs_f64() / n.max(1) as f64;
    let mut tasks = Vec::new();
    for i in 0..n {
        tokio::time::sleep_until((started + Duration::from_secs_f64(per * i as f64)).into()).await;
        let (key, sim) = if i % 2 == 0 {
            (keys[0].clone(), TRUELAYER)
        } else {
            (keys[1].clone(), PLAID)
        };
        let env = env.clone();
        // Fixed-width numbers: the providers' ledgers are searched by substring, and "-1" must
        // not find "-10".
        let mut case = Case {
            id: format!("cobp-{run}-{i:04}"),
            key,
            name: format!("Chaos Merchant {run} {i:04}"),
            sim,
            error: None,
        };
        tasks.push(tokio::spawn(async move {
            if let Err(e) = one(&env, &case, i).await {
                case.error = Some(e.to_string());
            }
            case
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await?);
    }
    Ok(out)
}

async fn payment(env: &Env, case: &Case) -> Option<Value> {
    let r = env
        .http
        .get(format!(
            "{}/v1/openbanking/payments/{}",
            env.var("INGRESS_URL").ok()?,
            case.id
        ))
        .bearer_auth(&case.key)
        .send()
        .await
        .ok()?;
    r.status().is_success().then_some(())?;
    r.json().await.ok()
}

async fn one(env: &Env, case: &Case, i: usize) -> anyhow::Result<()> {
    let account = if case.sim == TRUELAYER {
        json!({"scheme": "sort_code_account", "value": format!("{:08}", 10_000_000 + i), "bank_code": "040004"})
    } else {
        json!({"scheme": "iban", "value": "FR1420041010050500013M02606"})
    };
    let body = json!({"payment_id": case.id, "customer_id": format!("chaos-payer-{i}"),
        "amount": {"currency": if case.sim == TRUELAYER { "GBP" } else { "EUR" }, "value": format!("{}.50", 10 + i % 20)},
        "beneficiary": {"name": case.name, "account": account}, "reference": "Chaos order",
        "redirect_uri": "https://app.example/pay/done"});
    crate::chaos::submit_to(
        env,
        &case.key,
        "/v1/openbanking/payments",
        &body,
        &format!("pay-{}", case.id),
    )
    .await?;
    // The customer authorizes as soon as the link shows.
    let deadline = Instant::now() + Duration::from_secs(240);
    let url = loop {
        if let Some(p) = payment(env, case).await
            && let Some(u) = p["authorization_url"].as_str()
        {
            break u.to_string();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "payment {} never asked for authorization",
            case.id
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    http.get(&url).send().await?;
    Ok(())
}

#[derive(Default)]
pub struct Report {
    pub payments: usize,
    pub executed: usize,
    pub not_executed: Vec<String>,
    pub made_twice: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.not_executed.is_empty() && self.made_twice.is_empty()
    }

    pub fn print(&self) {
        println!(
            "  bank payments executed: {}/{}; made other than once at their provider: {}",
            self.executed,
            self.payments,
            self.made_twice.len()
        );
        for x in self.not_executed.iter().chain(&self.made_twice).take(10) {
            println!("  bank payments: {x}");
        }
    }
}

pub async fn verify(env: &Env, cases: &[Case], left: Duration) -> anyhow::Result<Report> {
    let mut r = Report {
        payments: cases.len(),
        ..Report::default()
    };
    let deadline = Instant::now() + left;
    for c in cases {
        let status = loop {
            let s = payment(env, c)
                .await
                .map(|p| p["status"].as_str().unwrap_or("").to_string());
            if s.as_deref() == Some("executed") || Instant::now() > deadline {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        if status.as_deref() == Some("executed") {
            r.executed += 1;
        } else {
            r.not_executed.push(format!(
                "{}: {status:?}{}",
                c.id,
                c.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
            ));
        }
        let made: u64 = env
            .http
            .get(format!("{}/_sim/ledger", c.sim))
            .query(&[(
                "key",
                if c.sim == TRUELAYER {
                    c.id.clone()
                } else {
                    c.name.clone()
                },
            )])
            .send()
            .await?
            .json::<Value>()
            .await?["counts"]["payment"]
            .as_u64()
            .unwrap_or(0);
        if made != 1 {
            r.made_twice.push(format!("{}: made {made} times at {}", c.id, c.sim));
        }
    }
    Ok(r)
}
