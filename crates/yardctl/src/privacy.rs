//! `yardctl privacy`: personal data stays where it belongs. The mesh is restarted at debug log
//! level; onboardings whose people carry marker values (names, dates of birth, emails, phone
//! numbers, an IBAN-like string in the address) run through every vendor path (KYC at both vendors,
//! step-up, shadow mode, PEP and sanctions hits), each person is also paid out to through the API (a
//! marker account with valid check digits, whole payout flows at both payout vendors, and one whose
//! check digits fail, refused at the door with the account never echoed), and a poison message full of markers is sent to a consumer. Then every new log line of every service, every header of every dead-letter topic, every
//! event on every topic that carries no personal data (per the model's classification) and the API's
//! answers are scanned for the markers: exit 1 on any. The scan proves it can see: the markers must
//! be found on the topics that do carry personal data, and the poison message in its dead-letter topic.

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use rdkafka::{
    ClientConfig,
    consumer::{BaseConsumer, Consumer},
    producer::FutureRecord,
};
use serde_json::{Value, json};
use switchyard_model::{
    EventRecord, SchemaCatalog,
    events::{
        Event,
        onboarding::{RiskTier, StartOnboarding},
    },
    topics,
};

use crate::demo::Env;

const SERVICES: [&str; 10] = [
    "ingress",
    "orchestrator",
    "kyc-adapter",
    "aml-adapter",
    "fraud-adapter",
    "cards-adapter",
    "payouts-adapter",
    "openbanking-adapter",
    "webhook-normalizer",
    "reconciliation",
];

/// Tenant, region, family-name persona: every vendor path of the default routing policy.
const PATHS: [(&str, &str, &str); 6] = [
    ("tenant-privacy", "UK", "Politica"),   // first vendor, PEP hit
    ("tenant-privacy", "UK", "Sanctionov"), // sanctions hit
    ("tenant-privacy", "UK", "Stepup"),     // documents asked for, status pulls
    ("tenant-beta", "EU", "Clearwater"),    // the other KYC vendor, signed webhooks
    ("tenant-beta", "EU", "Stepup"),        // the other vendor's step-up
    ("tenant-gamma", "UK", "Clearwater"),   // a shadow vendor alongside
];

fn stack_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../local-stack")
}

/// The marker values of one applicant.
struct Person {
    given: String,
    family: String,
    dob: String,
    email: String,
    phone: String,
    street: String,
    iban: String,
    /// A beneficiary account with valid check digits (paid out to).
    account: String,
}

/// A German IBAN with valid check digits around an 18-digit account part.
fn iban_de(bban: &str) -> String {
    // ISO 13616: the check digits make the rearranged number (BBAN, "DE" as 1314, "00") ≡ 1 mod 97.
    let digits = format!("{bban}131400");
    let rem = digits
        .chars()
        .fold(0u32, |r, c| (r * 10 + c.to_digit(10).unwrap_or(0)) % 97);
    format!("DE{:02}{bban}", 98 - rem)
}

impl Person {
    fn new(run: &str, i: usize, persona: &str) -> Person {
        Person {
            given: format!("Mrkgiven{run}x{i}"),
            family: format!("Mrkfam{run}x{i}{persona}"),
            dob: format!("1931-0{}-1{}", 1 + i % 9, i % 10),
            email: format!("mrkmail{run}x{i}@example.test"),
            phone: format!("+44 7700 9{:05}", 31_000 + i),
            street: format!("{i} Mrkstreet{run} Lane"),
            iban: format!("GB29MRKR6016133192{:04}", 1000 + i),
            account: iban_de(&format!(
                "{:012}{:06}",
                u64::from_str_radix(run, 16).unwrap_or(0) % 1_000_000_000_000,
                700_000 + i
            )),
        }
    }

    fn markers(&self) -> [(&'static str, &str); 8] {
        [
            ("given name", &self.given),
            ("family name", &self.family),
            ("date of birth", &self.dob),
            ("email", &self.email),
            ("phone", &self.phone),
            ("street", &self.street),
            ("IBAN-like", &self.iban),
            // The account part (without country and check digits): caught whatever check digits
            // travel with it.
            ("beneficiary account", &self.account[4..]),
        ]
    }

    fn body(&self, run: &str, i: usize, region: &str) -> Value {
        json!({"applicant_id": format!("privacy-{run}-{i}"),
            "person": {"given_name": self.given, "family_name": self.family, "date_of_birth": self.dob, "nationality": "GB",
                "email": self.email, "phone": self.phone,
                "address": {"line1": self.street, "line2": self.iban, "city": "London", "postal_code": "N1 9GU", "country": "GB"}},
            "region": region, "risk_tier": "LOW", "segment": "retail"})
    }
}

/// Where a marker was found.
struct Leak {
    place: String,
    what: &'static str,
}

fn scan(text: &[u8], place: &str, people: &[Person], out: &mut Vec<Leak>) {
    let text = String::from_utf8_lossy(text);
    for p in people {
        for (what, marker) in p.markers() {
            if text.contains(marker) {
                out.push(Leak {
                    place: place.to_string(),
                    what,
                });
            }
        }
    }
}

async fn services(action: &str, env: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut c = tokio::process::Command::new(stack_dir().join("services.sh"));
    c.arg(action).stdout(std::process::Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let status = c.status().await.context("services.sh")?;
    anyhow::ensure!(status.success(), "services.sh {action} failed");
    Ok(())
}

fn log_sizes() -> BTreeMap<&'static str, u64> {
    SERVICES
        .iter()
        .map(|s| {
            let len = std::fs::metadata(stack_dir().join(format!("data/logs/{s}.log")))
                .map(|m| m.len())
                .unwrap_or(0);
            (*s, len)
        })
        .collect()
}

/// Every partition's end offset, per topic.
fn ends(kafka: &str, names: &[String]) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", kafka).create()?;
    let meta = c.fetch_metadata(None, Duration::from_secs(10))?;
    let mut out = BTreeMap::new();
    for t in meta.topics().iter().filter(|t| names.iter().any(|n| n == t.name())) {
        for p in t.partitions() {
            let (_, high) = c.fetch_watermarks(t.name(), p.id(), Duration::from_secs(10))?;
            out.insert((t.name().to_string(), p.id()), high);
        }
    }
    Ok(out)
}

/// The messages produced to `topic` between `from` and `to` (end offsets per partition).
fn read_range(
    kafka: &str,
    from: &BTreeMap<(String, i32), i64>,
    to: &BTreeMap<(String, i32), i64>,
    topic: &str,
) -> anyhow::Result<Vec<crate::dlq::DeadLetter>> {
    let ranges: Vec<(String, i32, i64, i64)> = to
        .iter()
        .filter(|((t, _), _)| t == topic)
        .map(|((t, p), end)| (t.clone(), *p, from.get(&(t.clone(), *p)).copied().unwrap_or(0), *end))
        .collect();
    crate::dlq::read_ranges(kafka, &ranges).with_context(|| format!("{topic}: reading back"))
}

/// Pays out to each person's marker account through the ingress (whole payout flows: fraud
/// screening, both payout vendors by asking for speed or cost in turn, settlement webhooks), and
/// once to an account whose check digits fail (refused at the door, the account never echoed).
/// Returns the ids of the payouts accepted, and every API answer (scanned).
async fn send_payouts(env: &Env, people: &[Person], run: &str) -> anyhow::Result<(String, Vec<String>, Vec<String>)> {
    let key = env.api_key_with("tenant-privacy", "payouts:write,payouts:read").await?;
    let url = format!("{}/v1/payouts", env.var("INGRESS_URL")?);
    let mut ids = Vec::new();
    let mut answers = Vec::new();
    for (i, p) in people.iter().enumerate() {
        let bad = i == people.len() - 1;
        // The last one's check digits are broken: refused with the account never echoed.
        let account = if bad {
            let mut a = p.account.clone();
            a.replace_range(2..4, if &a[2..4] == "01" { "02" } else { "01" });
            a
        } else {
            p.account.clone()
        };
        let id = format!("privacy-payout-{run}-{i}");
        let body = json!({"payout_id": id, "customer_id": format!("privacy-{run}-{i}"),
            "amount": {"currency": "EUR", "value": "42.00"}, "priority": if i % 2 == 0 { "speed" } else { "cost" },
            "beneficiary": {"name": format!("{} {}", p.given, p.family), "account": {"scheme": "iban", "value": account}}});
        let r = env.http.post(&url).bearer_auth(&key).json(&body).send().await?;
        let status = r.status().as_u16();
        answers.push(r.text().await?);
        match (bad, status) {
            (false, 202) => ids.push(id),
            (true, 422) => {}
            _ => anyhow::bail!("payout {id}: answered {status}"),
        }
    }
    Ok((key, ids, answers))
}

/// A message a consumer must refuse: the person of an onboarding request, in the request topic's
/// schema, sent to the topic of KYC results (the orchestrator dead-letters it as undecodable).
async fn send_poison(env: &Env, kafka: &str, p: &Person, run: &str) -> anyhow::Result<String> {
    let registry =
        switchyard_runtime::registry::RegistryClient::new(env.var("SCHEMA_REGISTRY_URL")?, Duration::from_secs(5))?;
    let codec = switchyard_runtime::Codec::new(SchemaCatalog::embedded()?, registry);
    let key = format!("privacy-poison-{run}");
    let mut envelope = switchyard_model::Envelope::new(StartOnboarding::RECORD, "tenant-privacy", &key, "yardctl");
    envelope.idempotency_key = Some(key.clone());
    let person = switchyard_model::events::common::Person {
        given_name: p.given.clone(),
        family_name: p.family.clone(),
        date_of_birth: switchyard_model::events::common::Person::days_from_iso(&p.dob),
        nationality: Some("GB".into()),
        address: None,
        email: Some(p.email.clone()),
        phone: Some(p.phone.clone()),
    };
    let start = StartOnboarding {
        envelope,
        applicant_id: key.clone(),
        person,
        region: "UK".into(),
        risk_tier: RiskTier::Low,
        segment: None,
    };
    let bytes = codec.encode(StartOnboarding::TOPIC, &EventRecord::of(&start)?).await?;
    let producer = switchyard_runtime::kafka::producer(kafka, "yardctl-privacy")?;
    let target = topics::topic(topics::Domain::Kyc, topics::TopicKind::Results);
    producer
        .send(
            FutureRecord::to(&target).key(&key).payload(&bytes),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| anyhow::anyhow!("producing the poison message: {e}"))?;
    Ok(key)
}

pub async fn privacy() -> anyhow::Result<ExitCode> {
    let env = Env::load()?;
    let kafka = env.var("KAFKA_BOOTSTRAP_SERVERS")?.to_string();
    let run = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
    let catalog = SchemaCatalog::embedded()?;
    let model = topics::all_topics();
    let personal: Vec<String> = model
        .iter()
        .filter(|t| catalog.carries_personal_data(t).unwrap_or(true))
        .cloned()
        .collect();
    let mut names: Vec<String> = model.clone();
    names.extend(model.iter().map(|t| topics::dlq(t)));
    println!(
        "privacy run {run}: {} onboardings and {} payouts with marker values at debug log level; topics with personal data: {}",
        PATHS.len(),
        PATHS.len(),
        personal.join(", ")
    );

    // The mesh at debug level, every log line from here on is scanned.
    services("stop", &[]).await?;
    let logs_from = log_sizes();
    let topics_from = ends(&kafka, &names)?;
    services("start", &[("SWITCHYARD_TELEMETRY__LOG_FILTER", "debug")]).await?;
    let traced_from = chrono::Utc::now();

    let people: Vec<Person> = PATHS
        .iter()
        .enumerate()
        .map(|(i, (_, _, persona))| Person::new(&run, i, persona))
        .collect();
    let mut keys = BTreeMap::new();
    let mut flows = Vec::new();
    for (i, ((tenant, region, _), p)) in PATHS.iter().zip(&people).enumerate() {
        if !keys.contains_key(tenant) {
            keys.insert(*tenant, env.api_key(tenant).await?);
        }
        let key = &keys[tenant];
        let id = env.submit(key, &p.body(&run, i, region)).await?;
        flows.push((key.clone(), id));
    }
    let (payout_key, payouts, payout_answers) = send_payouts(&env, &people, &run).await?;
    let poison = Person::new(&run, PATHS.len(), "Clearwater");
    let poison_key = send_poison(&env, &kafka, &poison, &run).await?;
    let mut everyone = people;
    everyone.push(poison);

    // Every flow decided; every answer of the API kept for the scan.
    let mut answers = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    for (key, id) in &flows {
        loop {
            let v = env.get(key, id).await?;
            if v["status"] == "completed" {
                answers.push(v.to_string());
                break;
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "flow {id} not decided in 180 s: {v}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    // Every payout completed; its answers kept for the scan.
    answers.extend(payout_answers);
    for id in &payouts {
        let url = format!("{}/v1/payouts/{id}", env.var("INGRESS_URL")?);
        loop {
            let v: Value = env.http.get(&url).bearer_auth(&payout_key).send().await?.json().await?;
            if ["settled", "failed", "returned"].iter().any(|s| v["status"] == *s) {
                answers.push(v.to_string());
                break;
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "payout {id} not completed in 180 s: {v}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    for path in ["/routing", "/shadow"] {
        let url = format!("{}{path}", env.var("ORCHESTRATOR_URL")?);
        answers.push(
            env.http
                .get(url)
                .bearer_auth(env.admin_token()?)
                .send()
                .await?
                .text()
                .await?,
        );
    }
    // Let the dead-letter and the outcome events land, then stop: logs are flushed on exit.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let topics_to = ends(&kafka, &names)?;
    services("stop", &[]).await?;

    let mut leaks = Vec::new();
    let mut seen = Vec::new();
    let mut debug_lines = 0;
    for (service, from) in &logs_from {
        let path = stack_dir().join(format!("data/logs/{service}.log"));
        let text = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
        let new = text.get(*from as usize..).unwrap_or_default();
        debug_lines += String::from_utf8_lossy(new).matches("\"DEBUG\"").count();
        scan(new, &format!("log of {service}"), &everyone, &mut leaks);
    }
    let mut poison_dead_lettered = false;
    for topic in &model {
        let is_personal = personal.contains(topic);
        for m in read_range(&kafka, &topics_from, &topics_to, topic)? {
            let payload = m.payload.unwrap_or_default();
            // The poison message is ours, sent where it does not belong: only what the mesh made of
            // it counts.
            let poison = String::from_utf8_lossy(&payload).contains(&poison_key);
            if poison {
                continue;
            }
            if is_personal {
                scan(&payload, topic, &everyone, &mut seen);
            } else {
                scan(&payload, topic, &everyone, &mut leaks);
            }
        }
        let dlq = topics::dlq(topic);
        for m in read_range(&kafka, &topics_from, &topics_to, &dlq)? {
            let (payload, headers) = (m.payload.unwrap_or_default(), m.headers);
            let poison = String::from_utf8_lossy(&payload).contains(&poison_key);
            if !is_personal && !poison {
                scan(&payload, &dlq, &everyone, &mut leaks);
            }
            for (name, value) in headers {
                if name == "dlq_detail" && poison {
                    poison_dead_lettered = true;
                }
                scan(value.as_bytes(), &format!("{dlq} header {name}"), &everyone, &mut leaks);
            }
        }
    }
    for a in &answers {
        scan(a.as_bytes(), "API answer", &everyone, &mut leaks);
    }
    // Traces: every span (its attributes and events, debug ones included) the services exported
    // during the run, as the tracing backend keeps them.
    let traces = env
        .traces(&[
            ("start", traced_from.timestamp_micros().to_string()),
            ("limit", "5000".to_string()),
        ])
        .await?;
    let spans = traces.map(|traces| {
        let mut spans = 0;
        for t in &traces {
            spans += t["spans"].as_array().map_or(0, Vec::len);
            scan(t.to_string().as_bytes(), "a trace", &everyone, &mut leaks);
        }
        spans
    });
    println!("restarting the mesh at its usual log level");
    services("start", &[]).await?;

    // The scan must be able to see: markers on the topics that carry personal data, the poison
    // message in its dead-letter topic, debug lines in the logs.
    let mut blind = Vec::new();
    if !["given name", "IBAN-like", "beneficiary account"]
        .iter()
        .all(|what| seen.iter().any(|l| l.what == *what))
    {
        blind.push("no marker found on the topics that carry personal data".to_string());
    }
    if !poison_dead_lettered {
        blind.push("the poison message did not reach its dead-letter topic".to_string());
    }
    if debug_lines == 0 {
        blind.push("the services logged nothing at debug level".to_string());
    }
    if spans == Some(0) {
        blind.push("no span of the run reached the tracing backend".to_string());
    }
    let mut by_place: BTreeMap<(String, &str), usize> = BTreeMap::new();
    for l in &leaks {
        *by_place.entry((l.place.clone(), l.what)).or_default() += 1;
    }
    for ((place, what), n) in &by_place {
        println!("  LEAK  {what} in {place} ({n}×)");
    }
    for b in &blind {
        println!("  BLIND {b}");
    }
    println!(
        "privacy: {} leaks, {} debug log lines and {} spans scanned, {} flows, markers seen {} times where personal data belongs",
        leaks.len(),
        debug_lines,
        spans.unwrap_or(0),
        flows.len(),
        seen.len()
    );
    Ok(if leaks.is_empty() && blind.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
