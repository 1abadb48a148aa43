//! Cards in the chaos run: cards issued through the ingress, alternately at the Marqeta- and the
//! Lithic-shaped processor, and purchases asked by the processors of the cards adapter's real-time
//! endpoint, while the ingress, the orchestrator, the normalizer and the cards adapter are
//! SIGKILLed and the adapter dies between a processor's answer and its commit. A purchase asked
//! while the adapter is down is decided by the processor's stand-in rule (it declines) and reported
//! by webhook. Every third card is then suspended, reinstated and suspended again at the
//! processor's own console, its notices arriving late, twice or out of order through the kills.
//! Then: every card issued exactly once (the processors' own ledgers); every purchase recorded by
//! the mesh as the processor answered it, and shown to products once; each card's money equal to
//! its funding less what the processors approved; each card's state, as products see it and as the
//! real-time decisions use it, the processor's. Any difference fails the run.

// Amounts in minor units are written <units>_<cents>.
#![allow(clippy::inconsistent_digit_grouping)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::demo::Env;

const MARQETA: &str = "http://127.0.0.1:9309";
const LITHIC: &str = "http://127.0.0.1:9310";
/// Purchases per card.
const PURCHASES: usize = 4;
const FUNDING: i64 = 1_000_00;

pub struct Case {
    pub id: String,
    pub key: String,
    pub sim: &'static str,
    pub token: Option<String>,
    /// The processor's transaction id, amount, and whether the processor approved it.
    pub purchases: Vec<(String, i64, bool)>,
    /// Changed at the processor's console after its purchases.
    pub console: bool,
    pub error: Option<String>,
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        switchyard_vendors::signing::b64(format!("{user}:{password}").as_bytes())
    )
}

/// Issues `n` cards spread over `window` (each with its own Idempotency-Key, retried while the
/// ingress is down), and once each is active, asks its processor for purchases.
pub async fn run(env: &Env, run: &str, n: usize, window: Duration) -> anyhow::Result<Vec<Case>> {
    let keys = [
        env.api_key_with("tenant-chaos", "cards:write,cards:read").await?,
        env.api_key_with("tenant-lithic-program", "cards:write,cards:read")
            .await?,
    ];
    let started = Instant::now();
    let per = window.as_secs_f64() / n.max(1) as f64;
    let mut tasks = Vec::new();
    for i in 0..n {
        tokio::time::sleep_until((started + Duration::from_secs_f64(per * i as f64)).into()).await;
        let (key, sim) = if i % 2 == 0 {
            (keys[0].clone(), MARQETA)
        } else {
            (keys[1].clone(), LITHIC)
        };
        let env = env.clone();
        let id = format!("ccard-{run}-{i}");
        tasks.push(tokio::spawn(async move {
            let mut case = Case {
                id: id.clone(),
                key: key.clone(),
                sim,
                token: None,
                purchases: vec![],
                console: false,
                error: None,
            };
            if let Err(e) = one(&env, &mut case, i).await {
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

async fn one(env: &Env, case: &mut Case, i: usize) -> anyhow::Result<()> {
    // The card product names the card (both processors keep it): their ledgers count by it.
    let body = json!({"card_id": case.id, "cardholder_id": format!("chaos-holder-{i}"), "form_factor": "virtual",
        "product": format!("{}-virtual", case.id), "funding": {"currency": "USD", "value": "1000.00"},
        "controls": {"per_transaction": {"currency": "USD", "value": "300.00"}}});
    crate::chaos::submit_to(env, &case.key, "/v1/cards", &body, &format!("issue-{}", case.id)).await?;
    let token = wait_active(env, case).await?;
    case.token = Some(token.clone());
    for p in 0..PURCHASES {
        let cents = 10_00 + (i as i64 % 7) * 1_00 + p as i64 * 25;
        let (txn, approved) = purchase(env, case.sim, &token, cents).await?;
        case.purchases.push((txn, cents, approved));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if i.is_multiple_of(3) {
        case.console = true;
        for suspend in [true, false, true] {
            at_console(env, case.sim, &token, suspend).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// A state change made at the processor itself, not through the mesh.
async fn at_console(env: &Env, sim: &str, token: &str, suspend: bool) -> anyhow::Result<()> {
    let r = if sim == MARQETA {
        env.http
            .post(format!("{MARQETA}/v3/cardtransitions"))
            .header(
                "authorization",
                basic(env.var("MARQETA_APPLICATION_TOKEN")?, env.var("MARQETA_ADMIN_TOKEN")?),
            )
            .json(&json!({"card_token": token, "channel": "ADMIN", "reason_code": "00",
                "state": if suspend { "SUSPENDED" } else { "ACTIVE" }}))
    } else {
        env.http
            .patch(format!("{LITHIC}/v1/cards/{token}"))
            .header("authorization", env.var("LITHIC_API_KEY")?)
            .json(&json!({"state": if suspend { "PAUSED" } else { "OPEN" }}))
    };
    r.send().await?.error_for_status()?;
    Ok(())
}

/// The card's state at its processor, in our words (`active`, `frozen`, ...).
async fn at_processor(env: &Env, sim: &str, token: &str) -> anyhow::Result<String> {
    let r = if sim == MARQETA {
        env.http.get(format!("{MARQETA}/v3/cards/{token}")).header(
            "authorization",
            basic(env.var("MARQETA_APPLICATION_TOKEN")?, env.var("MARQETA_ADMIN_TOKEN")?),
        )
    } else {
        env.http
            .get(format!("{LITHIC}/v1/cards/{token}"))
            .header("authorization", env.var("LITHIC_API_KEY")?)
    };
    let card: Value = r.send().await?.error_for_status()?.json().await?;
    Ok(match card["state"].as_str().unwrap_or_default() {
        "ACTIVE" | "OPEN" => "active",
        "SUSPENDED" | "PAUSED" => "frozen",
        "TERMINATED" | "CLOSED" => "terminated",
        _ => "inactive",
    }
    .to_string())
}

async fn card(env: &Env, case: &Case) -> Option<Value> {
    let r = env
        .http
        .get(format!("{}/v1/cards/{}", env.var("INGRESS_URL").ok()?, case.id))
        .bearer_auth(&case.key)
        .send()
        .await
        .ok()?;
    r.status().is_success().then_some(())?;
    r.json().await.ok()
}

async fn wait_active(env: &Env, case: &Case) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if let Some(c) = card(env, case).await
            && c["status"] == "active"
            && let Some(t) = c["processor_token"].as_str()
        {
            return Ok(t.to_string());
        }
        anyhow::ensure!(Instant::now() < deadline, "card {} not active in 240 s", case.id);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A purchase at the processor; its transaction id and whether it approved (its final word: with
/// our endpoint down, its stand-in rule decided).
async fn purchase(env: &Env, sim: &str, token: &str, cents: i64) -> anyhow::Result<(String, bool)> {
    let r: Value = if sim == MARQETA {
        env.http
            .post(format!("{MARQETA}/v3/simulate/authorization"))
            .header(
                "authorization",
                basic(env.var("MARQETA_APPLICATION_TOKEN")?, env.var("MARQETA_ADMIN_TOKEN")?),
            )
            .json(&json!({"card_token": token, "amount": cents as f64 / 100.0,
                "card_acceptor": {"mcc": "5411", "name": "Chaos Grocer", "country_code": "USA"}}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?
    } else {
        env.http
            .post(format!("{LITHIC}/v1/simulate/authorize"))
            .header("authorization", env.var("LITHIC_API_KEY")?)
            .json(
                &json!({"card_token": token, "amount": cents, "mcc": "5411", "descriptor": "CHAOS GROCER",
                "merchant_country": "USA"}),
            )
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?
    };
    Ok(if sim == MARQETA {
        let t = &r["transaction"];
        (
            t["token"].as_str().unwrap_or_default().to_string(),
            t["state"] == "PENDING",
        )
    } else {
        (
            r["token"].as_str().unwrap_or_default().to_string(),
            r["result"] == "APPROVED",
        )
    })
}

#[derive(Default)]
pub struct Report {
    pub cards: usize,
    pub active: usize,
    pub not_issued: Vec<String>,
    pub issued_twice: Vec<String>,
    pub purchases: usize,
    pub approved: usize,
    pub stand_in: usize,
    /// Purchases the mesh records otherwise than the processor answered (or never records).
    pub contradicted: Vec<String>,
    /// Purchases shown to products other than once.
    pub not_shown_once: Vec<String>,
    /// Cards whose money left differs from their funding less what was approved.
    pub money_wrong: Vec<String>,
    /// Cards changed at the processor's console.
    pub console: usize,
    /// Cards whose state (products' view or the decision store's) is not the processor's.
    pub state_wrong: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.not_issued.is_empty()
            && self.issued_twice.is_empty()
            && self.contradicted.is_empty()
            && self.not_shown_once.is_empty()
            && self.money_wrong.is_empty()
            && self.state_wrong.is_empty()
    }

    pub fn print(&self) {
        println!(
            "  cards issued and active: {}/{}; issued twice at a processor: {}",
            self.active,
            self.cards,
            self.issued_twice.len()
        );
        println!(
            "  card purchases: {} ({} approved; {} decided by a processor's stand-in while our endpoint was down); \
             recorded otherwise than the processor answered: {}; not shown to products exactly once: {}; cards whose money is wrong: {}",
            self.purchases,
            self.approved,
            self.stand_in,
            self.contradicted.len(),
            self.not_shown_once.len(),
            self.money_wrong.len()
        );
        println!(
            "  cards changed at the processor's console: {}; cards whose state differs from the processor's (products' view or decision store): {}",
            self.console,
            self.state_wrong.len()
        );
        for x in self
            .not_issued
            .iter()
            .chain(&self.issued_twice)
            .chain(&self.contradicted)
            .chain(&self.not_shown_once)
            .chain(&self.money_wrong)
            .chain(&self.state_wrong)
            .take(10)
        {
            println!("  cards: {x}");
        }
    }
}

/// Checks the run's cards once the mesh has settled (within `left`).
pub async fn verify(env: &Env, cases: &[Case], left: Duration) -> anyhow::Result<Report> {
    let mut r = Report {
        cards: cases.len(),
        ..Report::default()
    };
    let db = sqlx::PgPool::connect(env.var("CARDS_ADAPTER_DATABASE_URL")?).await?;
    let deadline = Instant::now() + left;
    for c in cases {
        let Some(token) = &c.token else {
            r.not_issued
                .push(format!("{}: {}", c.id, c.error.as_deref().unwrap_or("never active")));
            continue;
        };
        if let Some(e) = &c.error {
            r.not_issued.push(format!("{}: {e}", c.id));
        }
        r.active += 1;
        let issued: u64 = env
            .http
            .get(format!("{}/_sim/ledger", c.sim))
            .query(&[("key", format!("{}-virtual", c.id))])
            .send()
            .await?
            .json::<Value>()
            .await?["counts"]["card"]
            .as_u64()
            .unwrap_or(0);
        if issued != 1 {
            r.issued_twice.push(format!("{}: {issued} cards at {}", c.id, c.sim));
        }
        r.console += usize::from(c.console);
        r.purchases += c.purchases.len();
        let approved: i64 = c.purchases.iter().filter(|p| p.2).map(|p| p.1).sum();
        r.approved += c.purchases.iter().filter(|p| p.2).count();
        // The mesh's record of each purchase, and products' view, once both have caught up.
        loop {
            let rows: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT provider_transaction_id, decision, decided_by FROM card_authorizations WHERE card_token = $1",
            )
            .bind(token)
            .fetch_all(&db)
            .await?;
            let money: Option<i64> =
                sqlx::query_scalar("SELECT available_minor FROM card_accounts WHERE card_token = $1")
                    .bind(token)
                    .fetch_optional(&db)
                    .await?;
            let view = card(env, c).await.unwrap_or(Value::Null);
            let shown = view["transactions"].clone();
            let shown = shown.as_array().cloned().unwrap_or_default();
            let mut problems = Vec::new();
            for (txn, _, ok) in &c.purchases {
                match rows.iter().find(|x| &x.0 == txn) {
                    Some((_, d, _)) if (d == "APPROVED") == *ok => {}
                    Some((_, d, _)) => {
                        problems.push(("contradicted", format!("{}/{txn}: processor {ok}, mesh {d}", c.id)))
                    }
                    None => problems.push(("contradicted", format!("{}/{txn}: never recorded", c.id))),
                }
                let n = shown
                    .iter()
                    .filter(|x| x["id"] == txn.as_str() && x["kind"] == "authorization")
                    .count();
                if n != 1 {
                    problems.push(("shown", format!("{}/{txn}: shown {n} times", c.id)));
                }
            }
            let truth = at_processor(env, c.sim, token).await?;
            let held: Option<String> = sqlx::query_scalar("SELECT state FROM card_accounts WHERE card_token = $1")
                .bind(token)
                .fetch_optional(&db)
                .await?;
            let status = &view["status"];
            if *status != truth.as_str() || held.as_deref().map(str::to_ascii_lowercase).as_deref() != Some(&truth) {
                problems.push((
                    "state",
                    format!(
                        "{}: {truth} at {}, {status} to products, {held:?} in the decision store",
                        c.id, c.sim
                    ),
                ));
            }
            if money != Some(FUNDING - approved) {
                problems.push((
                    "money",
                    format!("{}: {money:?} left, expected {}", c.id, FUNDING - approved),
                ));
            }
            if problems.is_empty() || Instant::now() > deadline {
                r.stand_in += rows.iter().filter(|x| x.2 == "STAND_IN").count();
                for (kind, p) in problems {
                    match kind {
                        "contradicted" => r.contradicted.push(p),
                        "shown" => r.not_shown_once.push(p),
                        "state" => r.state_wrong.push(p),
                        _ => r.money_wrong.push(p),
                    }
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    db.close().await;
    Ok(r)
}
