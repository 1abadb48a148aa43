//! `yardctl dlq list|show|replay`: the dead-letter topics, read from Kafka (never a service's
//! tables). A replay sends the message back to its source topic, key, payload and headers as they
//! were: it takes the normal path again, and the consumers' inboxes apply it at most once (a second
//! replay of a message applied is skipped as a duplicate by its event id).

use std::{process::ExitCode, time::Duration};

use anyhow::Context;
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    producer::{FutureProducer, FutureRecord},
};

#[derive(clap::Subcommand)]
pub enum DlqCommand {
    /// Dead letters, newest last: where each came from, when, and why.
    List {
        /// One dead-letter topic (e.g. kyc.results.v1.dlq); default: every one.
        #[arg(long)]
        topic: Option<String>,
        /// Only those of this flow (the message key).
        #[arg(long)]
        key: Option<String>,
        /// At most this many, the newest.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One dead letter: every header; with --payload, the event decoded (it may hold personal data).
    Show {
        /// `<dlq topic>/<partition>/<offset>`, as `list` prints it.
        id: String,
        #[arg(long)]
        payload: bool,
    },
    /// Send dead letters back to their source topic (after the cause is fixed).
    Replay {
        /// `<dlq topic>/<partition>/<offset>`; or, with --all, a dead-letter topic.
        id: String,
        /// Every dead letter of the topic (optionally only of --reason).
        #[arg(long)]
        all: bool,
        #[arg(long)]
        reason: Option<String>,
        /// Replay undecodable messages too (they come straight back unless the schema was fixed).
        #[arg(long)]
        force: bool,
    },
}

/// One message read back (a dead letter, or any other).
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<String>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

impl DeadLetter {
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.topic, self.partition, self.offset)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Every `.dlq` topic the cluster has.
fn dlq_topics(kafka: &str) -> anyhow::Result<Vec<String>> {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", kafka).create()?;
    let meta = c.fetch_metadata(None, Duration::from_secs(10))?;
    let mut names: Vec<String> = meta
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|n| n.ends_with(".dlq"))
        .collect();
    names.sort();
    Ok(names)
}

/// The messages of `topics` (whole, or one offset when `only` is given), by a reader that joins no
/// consumer group.
pub fn read(kafka: &str, topics: &[String], only: Option<(i32, i64)>) -> anyhow::Result<Vec<DeadLetter>> {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", kafka).create()?;
    let meta = c.fetch_metadata(None, Duration::from_secs(10))?;
    let mut ranges = Vec::new();
    for t in meta.topics().iter().filter(|t| topics.iter().any(|n| n == t.name())) {
        for p in t.partitions() {
            if only.is_some_and(|(op, _)| op != p.id()) {
                continue;
            }
            let (low, high) = c.fetch_watermarks(t.name(), p.id(), Duration::from_secs(10))?;
            match only {
                Some((_, o)) if o >= low && o < high => ranges.push((t.name().to_string(), p.id(), o, o + 1)),
                Some(_) => {}
                None => ranges.push((t.name().to_string(), p.id(), low, high)),
            }
        }
    }
    let mut out = read_ranges(kafka, &ranges)?;
    out.sort_by_key(|d| (d.timestamp_ms.unwrap_or(0), d.topic.clone(), d.partition, d.offset));
    Ok(out)
}

/// The messages of each `(topic, partition, from, to)` (from inclusive, to exclusive), by a reader
/// that joins no consumer group.
pub fn read_ranges(kafka: &str, ranges: &[(String, i32, i64, i64)]) -> anyhow::Result<Vec<DeadLetter>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("group.id", format!("yardctl-read-{}", uuid::Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    let mut left = 0i64;
    for (topic, partition, from, to) in ranges.iter().filter(|r| r.3 > r.2) {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*from))?;
        ends.insert((topic.clone(), *partition), *to);
        left += to - from;
    }
    let mut out = Vec::new();
    if left == 0 {
        return Ok(out);
    }
    c.assign(&tpl)?;
    // A minute, and a second more for every 10,000 messages.
    let budget = Duration::from_secs(60 + u64::try_from(left / 10_000).unwrap_or(0));
    let deadline = std::time::Instant::now() + budget;
    while left > 0 && std::time::Instant::now() < deadline {
        let Some(m) = c.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m?;
        let end = ends.get(&(m.topic().to_string(), m.partition())).copied().unwrap_or(0);
        if m.offset() >= end {
            continue;
        }
        left -= 1;
        let headers = m
            .headers()
            .map(|hs| {
                use rdkafka::message::Headers;
                hs.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            h.value
                                .map(|v| String::from_utf8_lossy(v).into_owned())
                                .unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(DeadLetter {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: m.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
    anyhow::ensure!(left == 0, "{left} messages could not be read back in {budget:?}");
    Ok(out)
}

/// A Confluent-framed payload decoded with its writer's schema (from the registry by its id), as
/// JSON: whatever topic it came from, and whether or not this build knows its record.
async fn decode(
    registry: &switchyard_runtime::registry::RegistryClient,
    payload: Option<&[u8]>,
) -> anyhow::Result<(u32, serde_json::Value)> {
    let bytes = payload.context("no payload")?;
    anyhow::ensure!(
        bytes.len() > 5 && bytes[0] == 0,
        "not Confluent wire format (first byte {:#04x})",
        bytes.first().copied().unwrap_or(0)
    );
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let schema = registry
        .schema_by_id(id)
        .await
        .map_err(|e| anyhow::anyhow!("schema {id}: {e}"))?;
    let value = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
        .build()
        .and_then(|r| r.read_value(&mut &bytes[5..]))?;
    // A topic's schema is a union of its records: show the record written.
    let value = match value {
        apache_avro::types::Value::Union(_, inner) => *inner,
        other => other,
    };
    Ok((id, apache_avro::from_value::<serde_json::Value>(&value)?))
}

fn parse_id(id: &str) -> anyhow::Result<(String, i32, i64)> {
    let mut parts = id.rsplitn(3, '/');
    let (offset, partition, topic) = (parts.next(), parts.next(), parts.next());
    match (
        topic,
        partition.and_then(|p| p.parse().ok()),
        offset.and_then(|o| o.parse().ok()),
    ) {
        (Some(t), Some(p), Some(o)) if t.ends_with(".dlq") => Ok((t.to_string(), p, o)),
        _ => anyhow::bail!("{id:?} is not <dlq topic>/<partition>/<offset> (as `yardctl dlq list` prints it)"),
    }
}

fn when(d: &DeadLetter) -> String {
    d.header("dlq_at")
        .map(|a| a.get(..19).unwrap_or(a).replace('T', " "))
        .unwrap_or_default()
}

/// The dead letters of one flow (its key), every dead-letter topic.
pub fn of_key(kafka: &str, key: &str) -> anyhow::Result<Vec<DeadLetter>> {
    let topics = dlq_topics(kafka)?;
    Ok(read(kafka, &topics, None)?
        .into_iter()
        .filter(|d| d.key.as_deref() == Some(key))
        .collect())
}

pub fn print_row(d: &DeadLetter) {
    println!(
        "  {:<44} {:<19}  {:<16} {:<18} {:<30} {}",
        d.id(),
        when(d),
        d.header("dlq_reason").unwrap_or("?"),
        d.header("dlq_consumer").unwrap_or("?"),
        d.key.as_deref().unwrap_or("-"),
        d.header("dlq_detail")
            .unwrap_or("")
            .chars()
            .take(80)
            .collect::<String>()
    );
}

pub async fn run(command: DlqCommand, kafka: &str, registry: &str) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::List { topic, key, limit } => {
            let topics = match topic {
                Some(t) => vec![if t.ends_with(".dlq") { t } else { format!("{t}.dlq") }],
                None => dlq_topics(kafka)?,
            };
            let all: Vec<DeadLetter> = read(kafka, &topics, None)?
                .into_iter()
                .filter(|d| key.as_deref().is_none_or(|k| d.key.as_deref() == Some(k)))
                .collect();
            let mut per_topic = std::collections::BTreeMap::<&str, usize>::new();
            for d in &all {
                *per_topic.entry(d.topic.as_str()).or_default() += 1;
            }
            println!(
                "  {:<44} {:<19}  {:<16} {:<18} {:<30} detail",
                "id", "dead-lettered", "reason", "consumer", "key"
            );
            for d in all.iter().skip(all.len().saturating_sub(limit)) {
                print_row(d);
            }
            println!(
                "{} dead letters ({} shown) in {} dead-letter topics",
                all.len(),
                all.len().min(limit),
                topics.len()
            );
            let mut busiest: Vec<(&str, usize)> = per_topic.into_iter().collect();
            busiest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            for (t, n) in busiest.iter().take(20) {
                println!("  {n:>6}  {t}");
            }
            if busiest.len() > 20 {
                println!("  … and {} more topics with dead letters", busiest.len() - 20);
            }
        }
        DlqCommand::Show { id, payload } => {
            let (topic, partition, offset) = parse_id(&id)?;
            let d = read(kafka, &[topic], Some((partition, offset)))?
                .pop()
                .with_context(|| format!("no dead letter {id}"))?;
            println!("{}", d.id());
            println!("  key          {}", d.key.as_deref().unwrap_or("-"));
            println!("  size         {} bytes", d.payload.as_ref().map_or(0, Vec::len));
            for (k, v) in &d.headers {
                println!("  {k:<12} {v}");
            }
            if payload {
                let registry = switchyard_runtime::registry::RegistryClient::new(registry, Duration::from_secs(10))?;
                match decode(&registry, d.payload.as_deref()).await {
                    Ok((schema, value)) => println!(
                        "  payload      writer schema {schema}\n{}",
                        serde_json::to_string_pretty(&value)?
                    ),
                    Err(e) => println!("  payload      not decodable: {e}"),
                }
            }
        }
        DlqCommand::Replay { id, all, reason, force } => {
            let letters = if all {
                let topic = if id.ends_with(".dlq") {
                    id.clone()
                } else {
                    format!("{id}.dlq")
                };
                read(kafka, &[topic], None)?
                    .into_iter()
                    .filter(|d| reason.as_deref().is_none_or(|r| d.header("dlq_reason") == Some(r)))
                    .collect()
            } else {
                let (topic, partition, offset) = parse_id(&id)?;
                vec![
                    read(kafka, &[topic], Some((partition, offset)))?
                        .pop()
                        .with_context(|| format!("no dead letter {id}"))?,
                ]
            };
            let producer: FutureProducer = ClientConfig::new()
                .set("bootstrap.servers", kafka)
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .create()?;
            let (mut sent, mut skipped) = (0, 0);
            for d in &letters {
                let Some(source) = d.header("dlq_source_topic").map(str::to_string) else {
                    println!("  skipped {}: no dlq_source_topic header", d.id());
                    skipped += 1;
                    continue;
                };
                if d.header("dlq_reason") == Some("undecodable") && !force {
                    println!(
                        "  skipped {}: undecodable (it would come straight back; --force to send it anyway)",
                        d.id()
                    );
                    skipped += 1;
                    continue;
                }
                // The original headers, without the dead-letter ones, and where the copy came from.
                let mut h = rdkafka::message::OwnedHeaders::new();
                for (k, v) in d.headers.iter().filter(|(k, _)| !k.starts_with("dlq_")) {
                    h = h.insert(rdkafka::message::Header {
                        key: k,
                        value: Some(v.as_bytes()),
                    });
                }
                let from = d.id();
                h = h.insert(rdkafka::message::Header {
                    key: "replayed_from",
                    value: Some(from.as_bytes()),
                });
                let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&source).headers(h);
                if let Some(k) = &d.key {
                    record = record.key(k.as_bytes());
                }
                if let Some(p) = &d.payload {
                    record = record.payload(p);
                }
                let delivered = producer
                    .send(record, Duration::from_secs(30))
                    .await
                    .map_err(|(e, _)| anyhow::anyhow!("replaying {from}: {e}"))?;
                println!(
                    "  replayed {from} -> {source}/{}/{}",
                    delivered.partition, delivered.offset
                );
                sent += 1;
            }
            println!("{sent} replayed, {skipped} skipped");
            if sent == 0 && !letters.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
