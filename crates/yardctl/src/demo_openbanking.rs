//! The main job's open-banking run: a consent at each provider (the TrueLayer-shaped one by default,
//! the Plaid-shaped one for its own program's tenant), authorized by the customer at their bank (the
//! link followed as their browser would), its callback handed over, accounts and transactions
//! fetched twice (the second fetch adds nothing twice); a pay-by-bank payment at each, authorized and
//! executed. The summary counts them and checks the providers' ledgers: one payment each.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::demo::Env;

const TRUELAYER: &str = "http://127.0.0.1:9311";
const PLAID: &str = "http://127.0.0.1:9312";

impl Env {
    async fn read(&self, key: &str, path: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}{path}", self.var("INGRESS_URL")?))
            .bearer_auth(key)
            .send()
            .await?
            .json()
            .await?)
    }

    async fn wait_for(&self, key: &str, path: &str, ok: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let v = self.read(key, path).await?;
            if ok(&v) || Instant::now() > deadline {
                return Ok(v);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Follows a link as the customer's browser would; the query it is sent back with.
async fn follow(url: &str) -> anyhow::Result<std::collections::HashMap<String, String>> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let r = http.get(url).send().await?;
    let to = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| anyhow::anyhow!("{url} sent the customer nowhere ({})", r.status()))?
        .to_string();
    Ok(reqwest::Url::parse(&to)?.query_pairs().into_owned().collect())
}

pub async fn run(env: &Env, run: &str) -> anyhow::Result<bool> {
    println!("\n== open banking (run {run}) ==");
    println!("routing: openbanking-truelayer, then openbanking-plaid; tenant-ob-plaid's program at openbanking-plaid");
    let mut ok = true;
    for (tenant, code_param, sim, currency, account) in [
        (
            "tenant-alpha",
            "code",
            TRUELAYER,
            "GBP",
            json!({"scheme": "sort_code_account", "value": "12345678", "bank_code": "040004"}),
        ),
        (
            "tenant-ob-plaid",
            "public_token",
            PLAID,
            "EUR",
            json!({"scheme": "iban", "value": "FR1420041010050500013M02606"}),
        ),
    ] {
        let key = env.api_key_with(tenant, "openbanking:write,openbanking:read").await?;
        let id = format!("dobc-{run}-{currency}");
        let (code, r) = env
            .post(
                &key,
                "/v1/openbanking/consents",
                &json!({"consent_id": id, "customer_id": format!("cust-{run}"),
                "redirect_uri": "https://app.example/ob/callback"}),
            )
            .await?;
        anyhow::ensure!(code == 202, "consent {id}: {code} {r}");
        let path = format!("/v1/openbanking/consents/{id}");
        let c = env
            .wait_for(&key, &path, |c| c["status"] == "awaiting_authorization")
            .await?;
        let Some(url) = c["authorization_url"].as_str() else {
            println!("  WRONG: consent {id} has no authorization link: {c}");
            ok = false;
            continue;
        };
        let back = follow(url).await?;
        env.post(
            &key,
            &format!("{path}/callback"),
            &json!({"code": back.get(code_param)}),
        )
        .await?;
        let c = env.wait_for(&key, &path, |c| c["status"] == "authorized").await?;
        env.post(&key, &format!("{path}/fetch-accounts"), &json!({})).await?;
        env.post(&key, &format!("{path}/fetch-transactions"), &json!({}))
            .await?;
        let c2 = env
            .wait_for(&key, &path, |c| c["accounts"].as_array().is_some_and(|a| !a.is_empty()))
            .await?;
        let t1 = env
            .wait_for(&key, &format!("{path}/transactions"), |t| {
                t["transactions"].as_array().is_some_and(|a| !a.is_empty())
            })
            .await?;
        env.post(&key, &format!("{path}/fetch-transactions"), &json!({}))
            .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let t2 = env.read(&key, &format!("{path}/transactions")).await?;
        let n = |t: &Value| t["transactions"].as_array().map_or(0, Vec::len);
        let pending = |t: &Value| {
            t["transactions"]
                .as_array()
                .map_or(0, |a| a.iter().filter(|x| x["status"] == "pending").count())
        };
        println!(
            "  consent {id}: {} at {} (expires {}); {} accounts; {} transactions ({} pending), fetched again: {} ({} pending)",
            c["status"].as_str().unwrap_or("?"),
            c["partner"].as_str().unwrap_or("?"),
            c["consent_expires_at"].as_str().unwrap_or("-"),
            c2["accounts"].as_array().map_or(0, Vec::len),
            n(&t1),
            pending(&t1),
            n(&t2),
            pending(&t2)
        );
        if c["status"] != "authorized" || n(&t1) == 0 || n(&t2) > n(&t1) {
            println!("    WRONG: expected an authorized consent, transactions, nothing twice");
            ok = false;
        }
        let pid = format!("dobp-{run}-{currency}");
        let body = json!({"payment_id": pid, "customer_id": format!("cust-{run}"),
            "amount": {"currency": currency, "value": "42.00"},
            "beneficiary": {"name": "Demo Merchant Ltd", "account": account}, "reference": "Demo order",
            "redirect_uri": "https://app.example/pay/done"});
        let (code, r) = env.post(&key, "/v1/openbanking/payments", &body).await?;
        anyhow::ensure!(code == 202, "payment {pid}: {code} {r}");
        let ppath = format!("/v1/openbanking/payments/{pid}");
        let p = env
            .wait_for(&key, &ppath, |p| p["status"] == "awaiting_authorization")
            .await?;
        if let Some(url) = p["authorization_url"].as_str() {
            follow(url).await?;
        }
        let p = env.wait_for(&key, &ppath, |p| p["status"] == "executed").await?;
        let executed: u64 = env
            .http
            .get(format!("{sim}/_sim/ledger"))
            .send()
            .await?
            .json::<Value>()
            .await?["effects"]
            .as_array()
            .map_or(0, |e| {
                e.iter()
                    .filter(|x| x["kind"] == "payment" && x["key"].as_str().is_some_and(|k| k.contains(&pid)))
                    .count() as u64
            });
        println!(
            "  payment {pid}: {} {currency} 42.00 to {}, {} at {}",
            p["status"].as_str().unwrap_or("?"),
            p["beneficiary"].as_str().unwrap_or("?"),
            if p["status"] == "executed" {
                "executed"
            } else {
                "NOT executed"
            },
            p["partner"].as_str().unwrap_or("?")
        );
        if p["status"] != "executed" || (sim == TRUELAYER && executed != 1) {
            println!("    WRONG: expected one executed payment (provider ledger: {executed})");
            ok = false;
        }
    }
    Ok(ok)
}
