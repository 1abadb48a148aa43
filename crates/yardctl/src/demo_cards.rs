// Amounts in minor units are written <units>_<cents>.
#![allow(clippy::inconsistent_digit_grouping)]

//! The main job's card run: a virtual card at the Marqeta-shaped processor and a physical one at
//! the Lithic-shaped processor (its own card program, routed by tenant), issued through the
//! ingress; purchases asked by the processors of the mesh's real-time decision (approved, and
//! declined for their controls and money), a clearing at a tip's amount, a reversal, a freeze (the
//! processor declines on its own). The summary counts cards, decisions by reason, their latency
//! (ours, and what the processor waited), and checks the money each card has left against what
//! happened; any disagreement fails the run.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::demo::{Env, percentile};

const MARQETA: &str = "http://127.0.0.1:9309";
const LITHIC: &str = "http://127.0.0.1:9310";

struct Card {
    id: String,
    key: String,
    sim: &'static str,
    token: String,
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        switchyard_vendors::signing::b64(format!("{user}:{password}").as_bytes())
    )
}

impl Env {
    async fn card(&self, key: &str, id: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}/v1/cards/{id}", self.var("INGRESS_URL")?))
            .bearer_auth(key)
            .send()
            .await?
            .json()
            .await?)
    }

    async fn card_until(&self, key: &str, id: &str, ok: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let c = self.card(key, id).await?;
            if ok(&c) || Instant::now() > deadline {
                return Ok(c);
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// A purchase at the card's processor (which asks the mesh); the processor's transaction id,
    /// whether it approved, and how long it waited for our answer (ms).
    async fn purchase(
        &self,
        c: &Card,
        cents: i64,
        mcc: &str,
        merchant: &str,
        country: &str,
    ) -> anyhow::Result<(String, bool, u64)> {
        if c.sim == MARQETA {
            let r: Value = self
                .http
                .post(format!("{MARQETA}/v3/simulate/authorization"))
                .header(
                    "authorization",
                    basic(self.var("MARQETA_APPLICATION_TOKEN")?, self.var("MARQETA_ADMIN_TOKEN")?),
                )
                .json(&json!({"card_token": c.token, "amount": cents as f64 / 100.0,
                    "card_acceptor": {"mcc": mcc, "name": merchant, "country_code": country}}))
                .send()
                .await?
                .json()
                .await?;
            let t = &r["transaction"];
            Ok((
                t["token"].as_str().unwrap_or_default().to_string(),
                t["state"] == "PENDING",
                t["duration"].as_u64().unwrap_or(0),
            ))
        } else {
            let r: Value = self
                .http
                .post(format!("{LITHIC}/v1/simulate/authorize"))
                .header("authorization", self.var("LITHIC_API_KEY")?)
                .json(
                    &json!({"card_token": c.token, "amount": cents, "mcc": mcc, "descriptor": merchant,
                    "merchant_country": country}),
                )
                .send()
                .await?
                .json()
                .await?;
            Ok((
                r["token"].as_str().unwrap_or_default().to_string(),
                r["result"] == "APPROVED",
                r["asa_ms"].as_u64().unwrap_or(0),
            ))
        }
    }

    async fn settle(&self, c: &Card, txn: &str, cents: i64, clear: bool) -> anyhow::Result<()> {
        let r = if c.sim == MARQETA {
            self.http
                .post(format!(
                    "{MARQETA}/v3/simulate/{}",
                    if clear { "clearing" } else { "reversal" }
                ))
                .header(
                    "authorization",
                    basic(self.var("MARQETA_APPLICATION_TOKEN")?, self.var("MARQETA_ADMIN_TOKEN")?),
                )
                .json(&json!({"original_transaction_token": txn, "amount": cents as f64 / 100.0}))
        } else {
            self.http
                .post(format!(
                    "{LITHIC}/v1/simulate/{}",
                    if clear { "clearing" } else { "void" }
                ))
                .header("authorization", self.var("LITHIC_API_KEY")?)
                .json(&json!({"token": txn, "amount": cents}))
        };
        let r = r.send().await?;
        anyhow::ensure!(r.status().is_success(), "settle at {}: {}", c.sim, r.status());
        Ok(())
    }
}

/// One purchase of the run: card, amount (cents), merchant category, merchant, country, and the
/// decision it must get.
type Purchase = (
    usize,
    i64,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

pub async fn run(env: &Env, run: &str) -> anyhow::Result<bool> {
    println!("\n== cards (run {run}) ==");
    println!(
        "routing: cards-marqeta, then cards-lithic; tenant-lithic-program's card program at cards-lithic. Decisions \
         from the mesh's own store within 800 ms (fallback: decline)"
    );
    let mut ok = true;
    let mut cards: Vec<Card> = Vec::new();
    for (tenant, sim, form, funding, controls) in [
        (
            "tenant-alpha",
            MARQETA,
            "virtual",
            "250.00",
            json!({"per_transaction": {"currency": "USD", "value": "100.00"},
                "daily": {"currency": "USD", "value": "150.00"}, "blocked_mccs": ["7995"]}),
        ),
        (
            "tenant-lithic-program",
            LITHIC,
            "physical",
            "500.00",
            json!({"allowed_countries": ["US"], "monthly": {"currency": "USD", "value": "400.00"}}),
        ),
    ] {
        let key = env.api_key_with(tenant, "cards:write,cards:read").await?;
        let id = format!("dcard-{run}-{form}");
        let body = json!({"card_id": id, "cardholder_id": format!("cust-{run}"),
            "cardholder": {"given_name": "Demo", "family_name": "Cardholder"}, "form_factor": form,
            "funding": {"currency": "USD", "value": funding}, "controls": controls});
        let (code, resp) = env.post(&key, "/v1/cards", &body).await?;
        anyhow::ensure!(code == 202, "issue {id}: {code} {resp}");
        let c = env.card_until(&key, &id, |c| c["status"] != "requested").await?;
        if form == "physical" && c["status"] == "inactive" {
            env.post(&key, &format!("/v1/cards/{id}/activate"), &json!({})).await?;
        }
        let c = env.card_until(&key, &id, |c| c["status"] == "active").await?;
        println!(
            "  {id}: {form}, issued at {} (•••• {}), {}",
            c["partner"].as_str().unwrap_or("?"),
            c["last4"].as_str().unwrap_or("????"),
            c["status"].as_str().unwrap_or("?")
        );
        if c["status"] != "active" {
            println!("    WRONG: not active");
            ok = false;
            continue;
        }
        cards.push(Card {
            id,
            key,
            sim,
            token: c["processor_token"].as_str().unwrap_or_default().to_string(),
        });
    }
    if cards.len() < 2 {
        return Ok(false);
    }
    let purchases: [Purchase; 10] = [
        (0, 4_50, "5814", "Corner Coffee", "USA", None),
        (0, 62_30, "5411", "Fresh Grocer", "USA", None),
        (
            0,
            25_00,
            "7995",
            "Lucky Casino",
            "USA",
            Some("MERCHANT_CATEGORY_BLOCKED"),
        ),
        (0, 180_00, "5732", "Gadget Barn", "USA", Some("PER_TRANSACTION_LIMIT")),
        (0, 95_00, "5732", "Gadget Barn", "USA", Some("DAILY_LIMIT")),
        (1, 120_00, "4112", "Rail Tickets", "USA", None),
        (1, 80_00, "5812", "Bistro Paris", "FRA", Some("COUNTRY_BLOCKED")),
        (1, 35_00, "5812", "Diner", "USA", None),
        (1, 300_00, "5944", "Watch Shop", "USA", Some("MONTHLY_LIMIT")),
        (1, 12_00, "5814", "Corner Coffee", "USA", None),
    ];
    let mut waited: Vec<f64> = Vec::new();
    let mut txns: Vec<(usize, String, i64)> = Vec::new();
    for (i, cents, mcc, merchant, country, _) in purchases {
        let (txn, approved, ms) = env.purchase(&cards[i], cents, mcc, merchant, country).await?;
        waited.push(ms as f64);
        if approved {
            txns.push((i, txn, cents));
        }
    }
    // A tip on the coffee (cleared at 5.40), the diner's hold released.
    let (_, coffee, _) = txns[0].clone();
    env.settle(&cards[0], &coffee, 5_40, true).await?;
    let diner = txns
        .iter()
        .find(|(i, _, c)| *i == 1 && *c == 35_00)
        .map(|t| t.1.clone());
    if let Some(d) = &diner {
        env.settle(&cards[1], d, 35_00, false).await?;
    }
    // Frozen: the processor declines before asking; products hear of it all the same.
    env.post(
        &cards[0].key,
        &format!("/v1/cards/{}/freeze", cards[0].id),
        &json!({"reason": "reported lost"}),
    )
    .await?;
    env.card_until(&cards[0].key, &cards[0].id, |c| c["status"] == "frozen")
        .await?;
    let (_, frozen_approved, _) = env.purchase(&cards[0], 3_00, "5814", "Corner Coffee", "USA").await?;
    if frozen_approved {
        println!("  WRONG: a frozen card's purchase was approved");
        ok = false;
    }
    // Every decision and settlement as products see it.
    let expected: Vec<usize> = vec![5 + 1 + 1, 5 + 1]; // authorizations (+ the frozen one) and settlements
    let mut decisions: Vec<f64> = Vec::new();
    let mut approved = 0;
    let mut declined: std::collections::BTreeMap<String, usize> = Default::default();
    for (n, c) in cards.iter().enumerate() {
        let want = expected[n];
        let got = env
            .card_until(&c.key, &c.id, |v| {
                v["transactions"].as_array().map_or(0, Vec::len) >= want
            })
            .await?;
        let t = got["transactions"].as_array().cloned().unwrap_or_default();
        for x in t.iter().filter(|x| x["kind"] == "authorization") {
            if let Some(ms) = x["decision_ms"].as_i64().filter(|_| x["fallback"] == false) {
                decisions.push(ms as f64);
            }
            match x["approved"].as_bool() {
                Some(true) => approved += 1,
                _ => {
                    *declined
                        .entry(x["decline_reason"].as_str().unwrap_or("?").to_string())
                        .or_default() += 1
                }
            }
        }
        let clearings = t.iter().filter(|x| x["kind"] == "clearing").count();
        let reversals = t.iter().filter(|x| x["kind"] == "reversal").count();
        println!(
            "  {}: {} transactions ({} clearing, {} reversal), now {}",
            c.id,
            t.len(),
            clearings,
            reversals,
            got["status"].as_str().unwrap_or("?")
        );
    }
    // Each purchase's decision as the run expected it.
    for (i, cents, _, merchant, _, want) in purchases {
        let c = &cards[i];
        let got = env.card(&c.key, &c.id).await?;
        let hit = got["transactions"].as_array().and_then(|t| {
            t.iter()
                .find(|x| {
                    x["kind"] == "authorization" && x["amount"]["minor_units"] == cents && x["merchant"] == merchant
                })
                .cloned()
        });
        let reason = hit
            .as_ref()
            .and_then(|x| x["decline_reason"].as_str().map(str::to_string));
        if hit.is_none() || reason.as_deref() != want {
            println!("  WRONG: {merchant} {cents}: expected {want:?}, got {reason:?}");
            ok = false;
        }
    }
    // The money each card has left, as the mesh holds it: funding less what was cleared and what
    // is still held (the diner's hold released, the coffee cleared with its tip).
    let db = sqlx::PgPool::connect(env.var("CARDS_ADAPTER_DATABASE_URL")?).await?;
    for (c, want) in cards.iter().zip([250_00 - 5_40 - 62_30, 500_00 - 120_00 - 12_00]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let left = loop {
            let left: Option<i64> =
                sqlx::query_scalar("SELECT available_minor FROM card_accounts WHERE card_token = $1")
                    .bind(&c.token)
                    .fetch_optional(&db)
                    .await?;
            if left == Some(want) || Instant::now() > deadline {
                break left;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let shown = |m: i64| format!("{}.{:02}", m / 100, m % 100);
        println!(
            "  {}: {} USD left (expected {})",
            c.id,
            left.map(shown).unwrap_or_else(|| "?".into()),
            shown(want)
        );
        if left != Some(want) {
            ok = false;
        }
    }
    db.close().await;
    decisions.sort_by(f64::total_cmp);
    waited.sort_by(f64::total_cmp);
    println!(
        "authorizations: {approved} approved, {} declined ({})",
        declined.values().sum::<usize>(),
        declined
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "decision latency (request in to answer, ours): p50 {:.0} ms, p99 {:.0} ms over {}; the processors waited p50 {:.0} ms, max {:.0} ms (their window: 3000 ms)",
        percentile(&decisions, 50.0),
        percentile(&decisions, 99.0),
        decisions.len(),
        percentile(&waited, 50.0),
        waited.last().copied().unwrap_or(0.0)
    );
    Ok(ok)
}
