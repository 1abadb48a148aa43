//! The canonical model's Avro schemas.
//!
//! Source layout: `schemas/common/*.avsc` define shared named types (the envelope, money, person...);
//! `schemas/topics/<topic>.avsc` is the value schema of `<topic>`: a union of that topic's event
//! records, referring to shared types by full name. The catalog *assembles* each topic schema into one
//! self-contained schema (each shared type inlined at its first use), which is what is registered under
//! `<topic>-value` and what any Confluent client sees.

use std::collections::{HashMap, HashSet};

use apache_avro::{
    Schema, reader::datum::GenericDatumReader, schema::ResolvedSchema, types::Value, writer::datum::GenericDatumWriter,
};
use serde_json::{Map, Value as Json};
use thiserror::Error;

use crate::{
    envelope::{EventRecord, envelope_of},
    redact::redact_values,
};

include!(concat!(env!("OUT_DIR"), "/embedded_schemas.rs"));

#[derive(Debug, Error)]
pub enum SchemaError {
    #[error("schema source {file}: {reason}")]
    Source { file: String, reason: String },
    #[error("no schema for topic {0}")]
    UnknownTopic(String),
    #[error("topic {topic} carries no record named {record}")]
    UnknownRecord { topic: String, record: String },
    #[error("cannot encode {record}: {reason}")]
    Encode { record: String, reason: String },
    #[error("cannot decode: {reason}")]
    Decode { reason: String },
}

/// One topic's value schema.
#[derive(Debug, Clone)]
pub struct TopicSchema {
    pub topic: String,
    /// The assembled, self-contained schema text (compact JSON), as registered.
    pub text: String,
    pub schema: Schema,
    /// Full names of the union's records, in union order.
    pub records: Vec<String>,
}

/// Records that hold personal data: a person's identity, what a screening matched against it, a
/// payout's (or bank payment's) beneficiary (name and account), and a customer's bank transactions
/// (their descriptions name people and places).
pub const PERSONAL_RECORDS: [&str; 4] = [
    "com.switchyard.common.Person",
    "com.switchyard.aml.ScreeningHit",
    "com.switchyard.payouts.Beneficiary",
    "com.switchyard.openbanking.BankTransaction",
];

/// All topic schemas of the model.
#[derive(Debug, Clone)]
pub struct SchemaCatalog {
    topics: HashMap<String, TopicSchema>,
}

impl SchemaCatalog {
    /// The schemas this binary was built with.
    pub fn embedded() -> Result<Self, SchemaError> {
        Self::from_sources(COMMON, TOPICS)
    }

    /// Builds a catalog from `(file stem, text)` pairs of common types and topic schemas.
    pub fn from_sources(common: &[(&str, &str)], topics: &[(&str, &str)]) -> Result<Self, SchemaError> {
        let mut shared = HashMap::new();
        for (file, text) in common {
            let json: Json = serde_json::from_str(text).map_err(|e| SchemaError::Source {
                file: format!("common/{file}.avsc"),
                reason: e.to_string(),
            })?;
            let name = full_name(&json, None).ok_or_else(|| SchemaError::Source {
                file: format!("common/{file}.avsc"),
                reason: "a common schema must be a named type".to_string(),
            })?;
            shared.insert(name, json);
        }
        let mut out = HashMap::new();
        for (topic, text) in topics {
            let file = format!("topics/{topic}.avsc");
            let mut json: Json = serde_json::from_str(text).map_err(|e| SchemaError::Source {
                file: file.clone(),
                reason: e.to_string(),
            })?;
            let mut defined = HashSet::new();
            inline_shared(&mut json, None, &shared, &mut defined);
            let text = json.to_string();
            let schema = Schema::parse_str(&text).map_err(|e| SchemaError::Source {
                file: file.clone(),
                reason: e.to_string(),
            })?;
            let records = union_records(&schema).map_err(|reason| SchemaError::Source { file, reason })?;
            out.insert(
                topic.to_string(),
                TopicSchema {
                    topic: topic.to_string(),
                    text,
                    schema,
                    records,
                },
            );
        }
        Ok(SchemaCatalog { topics: out })
    }

    /// Builds a catalog from a folder laid out like the repository's `schemas/` (`common/*.avsc`,
    /// `topics/*.avsc`).
    pub fn from_dir(dir: &std::path::Path) -> Result<Self, SchemaError> {
        let read = |sub: &str| -> Result<Vec<(String, String)>, SchemaError> {
            let folder = dir.join(sub);
            let entries = std::fs::read_dir(&folder).map_err(|e| SchemaError::Source {
                file: folder.display().to_string(),
                reason: e.to_string(),
            })?;
            let mut out = Vec::new();
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("avsc") {
                    continue;
                }
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_string();
                let text = std::fs::read_to_string(&path).map_err(|e| SchemaError::Source {
                    file: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                out.push((stem, text));
            }
            out.sort();
            Ok(out)
        };
        let common = read("common")?;
        let topics = read("topics")?;
        Self::from_sources(&borrowed(&common), &borrowed(&topics))
    }

    pub fn get(&self, topic: &str) -> Result<&TopicSchema, SchemaError> {
        self.topics
            .get(topic)
            .ok_or_else(|| SchemaError::UnknownTopic(topic.to_string()))
    }

    /// Whether `topic`'s events can carry personal data: its schema holds one of
    /// [`PERSONAL_RECORDS`] at any depth. Such a topic is read only by the services that need the
    /// data; every other topic, every log line and every dead-letter header must be free of it.
    pub fn carries_personal_data(&self, topic: &str) -> Result<bool, SchemaError> {
        fn holds(schema: &Schema) -> bool {
            match schema {
                Schema::Record(r) => {
                    PERSONAL_RECORDS.contains(&r.name.fullname(None).as_str())
                        || r.fields.iter().any(|f| holds(&f.schema))
                }
                Schema::Ref { name } => PERSONAL_RECORDS.contains(&name.fullname(None).as_str()),
                Schema::Union(u) => u.variants().iter().any(holds),
                Schema::Array(a) => holds(&a.items),
                Schema::Map(m) => holds(&m.types),
                _ => false,
            }
        }
        Ok(holds(&self.get(topic)?.schema))
    }

    /// Topic names, sorted.
    pub fn topics(&self) -> Vec<&str> {
        let mut t: Vec<&str> = self.topics.keys().map(String::as_str).collect();
        t.sort_unstable();
        t
    }
}

impl TopicSchema {
    /// Encodes an event as an Avro datum of this topic's schema (no wire header).
    pub fn encode(&self, event: &EventRecord) -> Result<Vec<u8>, SchemaError> {
        let err = |reason: String| SchemaError::Encode {
            record: event.record.clone(),
            reason,
        };
        let index = self
            .records
            .iter()
            .position(|r| *r == event.record)
            .ok_or_else(|| SchemaError::UnknownRecord {
                topic: self.topic.clone(),
                record: event.record.clone(),
            })?;
        let Schema::Union(union) = &self.schema else {
            return Err(err("topic schema is not a union".to_string()));
        };
        let variant = &union.variants()[index];
        let resolved = ResolvedSchema::try_from(&self.schema).map_err(|e| err(redact_values(&e.to_string())))?;
        let record = event
            .value
            .clone()
            .resolve_with_names(variant, resolved.get_names())
            .map_err(|e| err(redact_values(&e.to_string())))?;
        let index = u32::try_from(index).map_err(|e| err(redact_values(&e.to_string())))?;
        GenericDatumWriter::builder(&self.schema)
            .build()
            .and_then(|w| w.write_value_to_vec(Value::Union(index, Box::new(record))))
            .map_err(|e| err(redact_values(&e.to_string())))
    }

    /// Decodes a datum written with `writer` (the schema the registry holds for its id) into this
    /// topic's schema, resolving schema evolution.
    pub fn decode(&self, writer: &Schema, mut datum: &[u8]) -> Result<EventRecord, SchemaError> {
        let err = |reason: String| SchemaError::Decode { reason };
        // Read with the writer's schema, then resolve the branch it wrote against the reader's branch
        // of the same name. Resolving the union as a whole would take the first reader branch the
        // value fits, and a record can fit another with fewer fields (`ReviewPayout` read as
        // `CancelPayout`).
        let value = GenericDatumReader::builder(writer)
            .build()
            .and_then(|r| r.read_value(&mut datum))
            .map_err(|e| err(redact_values(&e.to_string())))?;
        if !datum.is_empty() {
            return Err(err(format!("{} trailing bytes after the datum", datum.len())));
        }
        let Value::Union(index, record) = value else {
            return Err(err("decoded value is not a union branch".to_string()));
        };
        let written = union_records(writer).map_err(err)?;
        let name = usize::try_from(index)
            .ok()
            .and_then(|i| written.get(i))
            .ok_or_else(|| err(format!("union branch {index} out of range")))?
            .clone();
        let position = self
            .records
            .iter()
            .position(|r| *r == name)
            .ok_or_else(|| err(format!("{name} is not a record of {}", self.topic)))?;
        let Schema::Union(union) = &self.schema else {
            return Err(err("topic schema is not a union".to_string()));
        };
        let resolved = ResolvedSchema::try_from(&self.schema).map_err(|e| err(redact_values(&e.to_string())))?;
        let record = record
            .resolve_with_names(&union.variants()[position], resolved.get_names())
            .map_err(|e| err(redact_values(&e.to_string())))?;
        let envelope = envelope_of(&record).map_err(err)?;
        Ok(EventRecord {
            record: name,
            envelope,
            value: record,
        })
    }
}

fn borrowed(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

fn union_records(schema: &Schema) -> Result<Vec<String>, String> {
    let Schema::Union(union) = schema else {
        return Err("a topic schema must be a union of records".to_string());
    };
    union
        .variants()
        .iter()
        .map(|v| match v {
            Schema::Record(r) => Ok(r.name.fullname(None)),
            other => Err(format!("union member {other:?} is not a record")),
        })
        .collect()
}

fn full_name(json: &Json, enclosing_ns: Option<&str>) -> Option<String> {
    let obj = json.as_object()?;
    let name = obj.get("name")?.as_str()?;
    if name.contains('.') {
        return Some(name.to_string());
    }
    match obj.get("namespace").and_then(Json::as_str).or(enclosing_ns) {
        Some(ns) if !ns.is_empty() => Some(format!("{ns}.{name}")),
        _ => Some(name.to_string()),
    }
}

/// Replaces the first reference to each shared type (in a type position) with its definition.
fn inline_shared(node: &mut Json, ns: Option<&str>, shared: &HashMap<String, Json>, defined: &mut HashSet<String>) {
    match node {
        Json::String(name) => {
            if let Some(def) = shared.get(name.as_str())
                && defined.insert(name.clone())
            {
                *node = def.clone();
                inline_shared(node, ns, shared, defined);
            }
        }
        Json::Array(members) => {
            for m in members {
                inline_shared(m, ns, shared, defined);
            }
        }
        Json::Object(obj) => inline_object(obj, ns, shared, defined),
        _ => {}
    }
}

fn inline_object(
    obj: &mut Map<String, Json>,
    ns: Option<&str>,
    shared: &HashMap<String, Json>,
    defined: &mut HashSet<String>,
) {
    let kind = obj.get("type").and_then(Json::as_str).map(str::to_string);
    let own_ns = obj.get("namespace").and_then(Json::as_str).map(str::to_string);
    let ns = own_ns.as_deref().or(ns);
    match kind.as_deref() {
        Some("record" | "enum" | "fixed") => {
            if let Some(name) = full_name(&Json::Object(obj.clone()), ns) {
                defined.insert(name);
            }
            if let Some(Json::Array(fields)) = obj.get_mut("fields") {
                for field in fields {
                    if let Some(t) = field.get_mut("type") {
                        inline_shared(t, ns, shared, defined);
                    }
                }
            }
        }
        Some("array") => {
            if let Some(items) = obj.get_mut("items") {
                inline_shared(items, ns, shared, defined);
            }
        }
        Some("map") => {
            if let Some(values) = obj.get_mut("values") {
                inline_shared(values, ns, shared, defined);
            }
        }
        _ => {
            if let Some(t) = obj.get_mut("type")
                && !t.is_string()
            {
                inline_shared(t, ns, shared, defined);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;
    use crate::topics::all_topics;

    #[test]
    fn every_model_topic_has_a_schema_and_nothing_else_does() {
        let catalog = SchemaCatalog::embedded().expect("schemas assemble");
        let mut expected = all_topics();
        expected.sort();
        assert_eq!(
            catalog.topics(),
            expected.iter().map(String::as_str).collect::<Vec<_>>()
        );
        for topic in catalog.topics() {
            let s = catalog.get(topic).expect("topic");
            assert!(!s.records.is_empty(), "{topic} has no records");
            // Self-contained: the assembled text parses on its own.
            Schema::parse_str(&s.text).expect("assembled schema parses");
        }
    }

    #[test]
    fn no_float_money_and_no_pan_fields() {
        for (file, text) in COMMON.iter().chain(TOPICS.iter()) {
            assert!(
                !text.contains("\"float\"") && !text.contains("\"double\""),
                "{file}: floats are not allowed"
            );
            let lower = text.to_lowercase();
            for banned in ["\"pan\"", "card_number", "\"cvv\"", "\"cvc\""] {
                assert!(!lower.contains(banned), "{file}: {banned} must never be in the model");
            }
        }
    }

    fn sample(record: &str) -> EventRecord {
        let mut env = Envelope::new(record, "tenant-a", "flow-1", "test");
        env.idempotency_key = Some("k-1".into());
        let value = Value::Record(vec![
            ("envelope".into(), apache_avro::to_value(&env).expect("envelope")),
            ("subject_id".into(), Value::String("s-1".into())),
            (
                "person".into(),
                Value::Record(vec![
                    ("given_name".into(), Value::String("Ada".into())),
                    ("family_name".into(), Value::String("Lovelace".into())),
                    ("date_of_birth".into(), Value::Null),
                    ("nationality".into(), Value::Null),
                    ("address".into(), Value::Null),
                    ("email".into(), Value::Null),
                    ("phone".into(), Value::Null),
                ]),
            ),
            (
                "document_types".into(),
                Value::Array(vec![Value::String("passport".into())]),
            ),
        ]);
        EventRecord::from_value(record, value).expect("record")
    }

    #[test]
    fn encode_decode_round_trip() {
        let catalog = SchemaCatalog::embedded().expect("catalog");
        let topic = catalog.get("kyc.commands.v1").expect("topic");
        let event = sample("com.switchyard.kyc.VerifyIdentity");
        let datum = topic.encode(&event).expect("encode");
        let back = topic.decode(&topic.schema, &datum).expect("decode");
        assert_eq!(back.record, event.record);
        assert_eq!(back.envelope, event.envelope);
    }

    /// An event that does not fit (here: a value of the wrong type for `subject_id`) is refused with
    /// an error that names the problem but not the person's data in it.
    #[test]
    fn encode_and_decode_errors_never_quote_personal_data() {
        let catalog = SchemaCatalog::embedded().expect("catalog");
        let topic = catalog.get("kyc.commands.v1").expect("topic");
        let mut event = sample("com.switchyard.kyc.VerifyIdentity");
        if let Value::Record(fields) = &mut event.value {
            fields[1].1 = Value::Int(19151210);
        }
        let e = topic.encode(&event).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.starts_with("cannot encode com.switchyard.kyc.VerifyIdentity"), "{e}");
        assert!(
            !e.contains("Ada") && !e.contains("Lovelace") && !e.contains("19151210"),
            "{e}"
        );
        // A datum written with one record's schema, read as another topic's: the values are not echoed.
        let datum = topic
            .encode(&sample("com.switchyard.kyc.VerifyIdentity"))
            .expect("encode");
        let other = catalog.get("onboarding.outcomes.v1").expect("topic");
        let e = other
            .decode(&topic.schema, &datum)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("cannot decode"), "{e}");
        assert!(!e.contains("Ada") && !e.contains("Lovelace"), "{e}");
    }

    #[test]
    fn topics_with_a_person_a_screening_hit_or_a_beneficiary_carry_personal_data() {
        let catalog = SchemaCatalog::embedded().expect("catalog");
        let personal: Vec<&str> = catalog
            .topics()
            .into_iter()
            .filter(|t| catalog.carries_personal_data(t).expect("topic"))
            .collect();
        assert_eq!(
            personal,
            [
                "aml.commands.v1",
                "aml.requests.v1",
                "aml.results.v1",
                "cards.commands.v1",
                "cards.requests.v1",
                "kyc.commands.v1",
                "kyc.requests.v1",
                "onboarding.commands.v1",
                "openbanking.commands.v1",
                "openbanking.outcomes.v1",
                "openbanking.requests.v1",
                "openbanking.results.v1",
                "payouts.commands.v1",
                "payouts.requests.v1"
            ]
        );
    }

    #[test]
    fn unknown_record_is_refused() {
        let catalog = SchemaCatalog::embedded().expect("catalog");
        let topic = catalog.get("aml.commands.v1").expect("topic");
        let event = sample("com.switchyard.kyc.VerifyIdentity");
        assert!(matches!(topic.encode(&event), Err(SchemaError::UnknownRecord { .. })));
    }

    #[test]
    fn truncated_datum_is_a_decode_error() {
        let catalog = SchemaCatalog::embedded().expect("catalog");
        let topic = catalog.get("kyc.commands.v1").expect("topic");
        let datum = topic
            .encode(&sample("com.switchyard.kyc.VerifyIdentity"))
            .expect("encode");
        assert!(topic.decode(&topic.schema, &datum[..datum.len() / 2]).is_err());
        assert!(topic.decode(&topic.schema, &[0xff, 0xff, 0xff]).is_err());
    }
}

#[cfg(test)]
mod typed_tests {
    use super::*;
    use crate::envelope::Envelope;
    use crate::events::{
        Event,
        aml::{AmlScreeningResult, HitCategory, ScreeningHit, ScreeningStatus},
        common::{Failure, FailureClass, Money, Person},
        fraud::{
            Channel, FraudCheckCompleted, FraudDecision, FraudScoreRequested, FraudScoreResult, ScoreBand,
            ScoreTransaction,
        },
        kyc::{KycStatus, KycVerificationResult},
        onboarding::{OnboardingCompleted, OnboardingDecision, RiskTier, StartOnboarding},
        payouts::{
            AccountIdentifier, AccountScheme, Beneficiary, CancelPayout, InitiatePayout, PayoutCancelRequested,
            PayoutCompleted, PayoutRequested, PayoutResult, PayoutReversed, PayoutStatus, PayoutStatusRequested,
            PayoutStepChanged, ResolvePayout, ReviewPayout,
        },
    };

    fn round_trip<E: Event + PartialEq + std::fmt::Debug>(event: E) {
        let catalog = SchemaCatalog::embedded().expect("catalog");
        let topic = catalog.get(E::TOPIC).expect("topic");
        let record = EventRecord::of(&event).expect("record");
        let datum = topic.encode(&record).expect("encode");
        let back = topic.decode(&topic.schema, &datum).expect("decode");
        assert_eq!(back.record, record.record, "same record");
        let typed: E = back.as_event::<E>().expect("same record").expect("typed");
        assert_eq!(typed, event);
    }

    fn person() -> Person {
        Person {
            given_name: "Ada".into(),
            family_name: "Lovelace".into(),
            date_of_birth: Person::days_from_iso("1815-12-10"),
            nationality: Some("GB".into()),
            address: None,
            email: None,
            phone: None,
        }
    }

    #[test]
    fn typed_events_round_trip_through_their_topic_schema() {
        round_trip(StartOnboarding {
            envelope: Envelope::new(StartOnboarding::RECORD, "t", "f", "test"),
            applicant_id: "a-1".into(),
            person: person(),
            region: "EU".into(),
            risk_tier: RiskTier::Medium,
            segment: Some("retail".into()),
        });
        round_trip(OnboardingCompleted {
            envelope: Envelope::new(OnboardingCompleted::RECORD, "t", "f", "test"),
            applicant_id: "a-1".into(),
            decision: OnboardingDecision::ManualReview,
            kyc_partner: Some("kyc-a".into()),
            aml_partner: None,
            reasons: vec!["pep".into()],
            failure: Some(Failure::new(FailureClass::ComplianceHold, "pep_match", "possible PEP")),
        });
        round_trip(KycVerificationResult {
            envelope: Envelope::new(KycVerificationResult::RECORD, "t", "f", "test"),
            subject_id: "a-1".into(),
            partner: "kyc-a".into(),
            provider_reference: Some("chk_1".into()),
            status: KycStatus::NeedsDocuments,
            reasons: vec![],
            failure: None,
            shadow: false,
        });
        round_trip(AmlScreeningResult {
            envelope: Envelope::new(AmlScreeningResult::RECORD, "t", "f", "test"),
            subject_id: "a-1".into(),
            partner: "aml-a".into(),
            provider_reference: None,
            status: ScreeningStatus::PossibleMatch,
            hits: vec![ScreeningHit {
                list_name: "PEP".into(),
                matched_name: "Ada Lovelace".into(),
                category: HitCategory::Pep,
                score: 87,
            }],
            failure: None,
            shadow: true,
        });
        round_trip(FraudScoreRequested {
            envelope: Envelope::new(FraudScoreRequested::RECORD, "t", "f", "test"),
            customer_id: "c-1".into(),
            transaction_id: "po-1".into(),
            amount: Money {
                amount_minor: 1_500,
                currency: "JPY".into(),
            },
            counterparty_id: "b-1".into(),
            channel: Channel::Api,
            device_id: None,
            partner: "fraud-sift".into(),
            attempt: 1,
            shadow: false,
        });
        round_trip(FraudScoreResult {
            envelope: Envelope::new(FraudScoreResult::RECORD, "t", "f", "test"),
            transaction_id: "po-1".into(),
            partner: "fraud-seon".into(),
            provider_reference: Some("tx-9".into()),
            score: 720,
            band: Some(ScoreBand::of(720)),
            decision: FraudDecision::Review,
            reasons: vec!["velocity".into()],
            failure: None,
            shadow: false,
        });
        round_trip(PayoutRequested {
            envelope: Envelope::new(PayoutRequested::RECORD, "t", "f", "test"),
            payout_id: "po-1".into(),
            amount: Money {
                amount_minor: 1_250,
                currency: "KWD".into(),
            },
            beneficiary: Beneficiary {
                name: "Ada Lovelace".into(),
                account: AccountIdentifier {
                    scheme: AccountScheme::Iban,
                    value: "GB82WEST12345698765432".into(),
                    bank_code: None,
                },
                address: None,
            },
            rail: "swift".into(),
            reference: Some("invoice 7".into()),
            partner: "payouts-wise".into(),
            attempt: 1,
        });
        round_trip(PayoutResult {
            envelope: Envelope::new(PayoutResult::RECORD, "t", "f", "test"),
            payout_id: "po-1".into(),
            partner: "payouts-wise".into(),
            provider_reference: Some("4711".into()),
            status: PayoutStatus::Unknown,
            failure: None,
        });
        assert_eq!(person().dob_iso().as_deref(), Some("1815-12-10"));
    }

    #[test]
    fn payout_commands_outcomes_and_standalone_scores_round_trip() {
        let eur = Money {
            amount_minor: 150_000,
            currency: "EUR".into(),
        };
        let beneficiary = Beneficiary {
            name: "Grace Hopper".into(),
            account: AccountIdentifier {
                scheme: AccountScheme::Iban,
                value: "DE89370400440532013000".into(),
                bank_code: Some("COBADEFFXXX".into()),
            },
            address: None,
        };
        round_trip(InitiatePayout {
            envelope: Envelope::new(InitiatePayout::RECORD, "t", "f", "test"),
            payout_id: "po-1".into(),
            customer_id: "cust-1".into(),
            amount: eur.clone(),
            beneficiary: beneficiary.clone(),
            rail: None,
            reference: Some("rent".into()),
            country: Some("DE".into()),
            priority: Some("speed".into()),
            channel: Some(Channel::Mobile),
            device_id: Some("dev-9".into()),
        });
        round_trip(CancelPayout {
            envelope: Envelope::new(CancelPayout::RECORD, "t", "f", "test"),
            payout_id: "po-1".into(),
            reason: Some("customer asked".into()),
        });
        round_trip(ResolvePayout {
            envelope: Envelope::new(ResolvePayout::RECORD, "t", "f", "test"),
            payout_id: "po-1".into(),
            partner: "stripe".into(),
            provider_reference: "po_1".into(),
            status: PayoutStatus::Settled,
            amount: Money {
                amount_minor: 1250,
                currency: "EUR".into(),
            },
            evidence: "reconciliation run 3".into(),
        });
        round_trip(ReviewPayout {
            envelope: Envelope::new(ReviewPayout::RECORD, "t", "f", "test"),
            payout_id: "po-1".into(),
            release: true,
            reviewer: "analyst-4".into(),
            note: None,
        });
        round_trip(PayoutStatusRequested {
            envelope: Envelope::new(PayoutStatusRequested::RECORD, "t", "f", "test"),
            payout_id: "po-1".into(),
            partner: "payouts-stripe".into(),
            request_event_id: "0190c0de-0000-7000-8000-000000000001".into(),
            amount: eur.clone(),
            beneficiary,
            reference: None,
        });
        round_trip(PayoutCancelRequested {
            envelope: Envelope::new(PayoutCancelRequested::RECORD, "t", "f", "test"),
            payout_id: "po-1".into(),
            partner: "payouts-wise".into(),
            request_event_id: "0190c0de-0000-7000-8000-000000000001".into(),
            provider_reference: "4711".into(),
            amount: eur.clone(),
            beneficiary: Beneficiary {
                name: "Grace Hopper".into(),
                account: AccountIdentifier {
                    scheme: AccountScheme::Iban,
                    value: "DE89370400440532013000".into(),
                    bank_code: None,
                },
                address: None,
            },
        });
        round_trip(PayoutCompleted {
            envelope: Envelope::new(PayoutCompleted::RECORD, "t", "f", "test"),
            payout_id: "po-1".into(),
            status: PayoutStatus::Failed,
            amount: eur.clone(),
            partner: "payouts-wise".into(),
            provider_reference: None,
            failure: Some(Failure::new(FailureClass::Permanent, "fraud_blocked", "blocked")),
            reasons: vec!["velocity".into()],
        });
        round_trip(PayoutStepChanged {
            envelope: Envelope::new(PayoutStepChanged::RECORD, "t", "f", "test"),
            payout_id: "po-1".into(),
            step: "held_for_review".into(),
            partner: Some("fraud-sift".into()),
            reasons: vec!["amount_unusual".into()],
        });
        round_trip(PayoutReversed {
            envelope: Envelope::new(PayoutReversed::RECORD, "t", "f", "test"),
            payout_id: "po-1".into(),
            amount: eur.clone(),
            partner: "payouts-stripe".into(),
            provider_reference: Some("po_1".into()),
            reason: Some("account_closed".into()),
        });
        round_trip(ScoreTransaction {
            envelope: Envelope::new(ScoreTransaction::RECORD, "t", "f", "test"),
            customer_id: "cust-1".into(),
            transaction_id: "tx-1".into(),
            amount: eur,
            counterparty_id: "cp-1".into(),
            channel: Channel::Web,
            device_id: None,
        });
        round_trip(FraudCheckCompleted {
            envelope: Envelope::new(FraudCheckCompleted::RECORD, "t", "f", "test"),
            transaction_id: "tx-1".into(),
            decision: FraudDecision::Review,
            score: 640,
            partner: "fraud-seon".into(),
            band: Some(ScoreBand::Medium),
            reasons: vec!["amount_unusual".into()],
            failure: None,
        });
    }

    #[test]
    fn card_events_round_trip() {
        use crate::events::cards::*;
        let env = |r: &str| Envelope::new(r, "t", "card.1.t.c-1", "test");
        let usd = |m: i64| Money {
            amount_minor: m,
            currency: "USD".into(),
        };
        let merchant = CardMerchant {
            name: "Corner Coffee".into(),
            mcc: "5814".into(),
            country: Some("US".into()),
            city: None,
        };
        let controls = SpendControls {
            per_transaction_minor: Some(50_000),
            daily_minor: None,
            monthly_minor: Some(200_000),
            allowed_mccs: vec![],
            blocked_mccs: vec!["7995".into()],
            allowed_countries: vec!["US".into(), "CA".into()],
        };
        round_trip(RequestCardOperation {
            envelope: env(RequestCardOperation::RECORD),
            cardholder_id: "cust-1".into(),
            operation: CardOperation::Issue,
            card_token: None,
            cardholder: Some(person()),
            spend_limit: None,
            card_id: Some("c-1".into()),
            product: Some("debit-virtual".into()),
            form_factor: Some(CardFormFactor::Virtual),
            controls: Some(controls.clone()),
            funding: Some(usd(100_000)),
            reason: None,
        });
        round_trip(CardOperationRequested {
            envelope: env(CardOperationRequested::RECORD),
            cardholder_id: "cust-1".into(),
            operation: CardOperation::Freeze,
            card_token: Some("tok_1".into()),
            cardholder: None,
            spend_limit: None,
            partner: "cards-lithic".into(),
            attempt: 1,
            card_id: Some("c-1".into()),
            product: None,
            form_factor: None,
            controls: None,
            funding: None,
            reason: Some("lost".into()),
        });
        round_trip(ApplyCardTransaction {
            envelope: env(ApplyCardTransaction::RECORD),
            partner: "cards-marqeta".into(),
            card_token: "tok_1".into(),
            kind: CardTransactionKind::Clearing,
            provider_transaction_id: "txn-9".into(),
            amount: usd(1_250),
            approved: true,
            decline_reason: None,
            merchant: None,
        });
        round_trip(CardOperationResult {
            envelope: env(CardOperationResult::RECORD),
            cardholder_id: "cust-1".into(),
            partner: "cards-marqeta".into(),
            provider_reference: Some("tok_1".into()),
            operation: CardOperation::Issue,
            card_token: Some("tok_1".into()),
            last4: Some("4242".into()),
            state: CardState::Inactive,
            failure: None,
            card_id: Some("c-1".into()),
            form_factor: Some(CardFormFactor::Physical),
        });
        round_trip(CardAuthorizationDecided {
            envelope: env(CardAuthorizationDecided::RECORD),
            partner: "cards-lithic".into(),
            card_token: "tok_1".into(),
            provider_transaction_id: "txn-9".into(),
            amount: usd(1_250),
            merchant: merchant.clone(),
            approved: false,
            decline_reason: Some("over_daily_limit".into()),
            fallback: false,
            latency_ms: 7,
        });
        round_trip(CardProcessorEvent {
            envelope: env(CardProcessorEvent::RECORD),
            partner: "cards-lithic".into(),
            provider_event_id: "evt-1".into(),
            card_token: "tok_1".into(),
            kind: CardEventKind::Reversal,
            amount: Some(usd(1_250)),
            state: None,
            received_at: 1_700_000_000_000,
            provider_transaction_id: Some("txn-9".into()),
            merchant: Some(merchant.clone()),
            decline_reason: None,
        });
        round_trip(CardStateChanged {
            envelope: env(CardStateChanged::RECORD),
            cardholder_id: "cust-1".into(),
            card_token: "tok_1".into(),
            state: CardState::Frozen,
            partner: "cards-lithic".into(),
            card_id: Some("c-1".into()),
            operation: Some(CardOperation::Freeze),
            last4: Some("0005".into()),
            form_factor: None,
            failure: None,
        });
        round_trip(CardTransaction {
            envelope: env(CardTransaction::RECORD),
            card_id: Some("c-1".into()),
            card_token: "tok_1".into(),
            partner: "cards-lithic".into(),
            kind: CardTransactionKind::Authorization,
            provider_transaction_id: "txn-9".into(),
            amount: usd(1_250),
            merchant: Some(merchant),
            approved: Some(true),
            decline_reason: None,
            latency_ms: Some(4),
            fallback: true,
        });
    }

    #[test]
    fn open_banking_events_round_trip() {
        use crate::events::openbanking::*;
        let env = |r: &str| Envelope::new(r, "t", "obc.1.t.c-1", "test");
        let tx = BankTransaction {
            transaction_id: "tx-1".into(),
            account_id: "acc-1".into(),
            amount_minor: -4_50,
            currency: "GBP".into(),
            status: BankTransactionStatus::Booked,
            booking_date: Some(20_413),
            value_date: Some(20_412),
            description: "Corner Cafe".into(),
            replaces: Some("p-1".into()),
        };
        let account = BankAccount {
            account_id: "acc-1".into(),
            name: "Everyday".into(),
            kind: "current".into(),
            currency: "GBP".into(),
            number_last4: Some("5555".into()),
            current_minor: Some(-12_00),
            available_minor: None,
        };
        round_trip(OpenBankingRequested {
            envelope: env(OpenBankingRequested::RECORD),
            customer_id: "cust-1".into(),
            operation: OpenBankingOperation::InitiatePayment,
            consent_id: None,
            institution_id: None,
            amount: Some(Money {
                amount_minor: 12_50,
                currency: "GBP".into(),
            }),
            creditor_account: None,
            redirect_uri: Some("https://app.example/done".into()),
            partner: "openbanking-truelayer".into(),
            attempt: 1,
            authorization_code: None,
            payment_id: Some("obp-1".into()),
            reference: Some("Order 7".into()),
            beneficiary: None,
        });
        round_trip(OpenBankingResult {
            envelope: env(OpenBankingResult::RECORD),
            customer_id: "cust-1".into(),
            partner: "openbanking-plaid".into(),
            provider_reference: Some("link-1".into()),
            operation: OpenBankingOperation::CompleteConsent,
            status: OpenBankingStatus::Authorized,
            authorization_url: None,
            consent_id: Some("c-1".into()),
            account_count: 2,
            failure: None,
            payment_id: None,
            consent_expires_at: Some(1_800_000_000_000),
            scopes: vec!["accounts".into(), "transactions".into()],
        });
        round_trip(OpenBankingAccountsFetched {
            envelope: env(OpenBankingAccountsFetched::RECORD),
            customer_id: "cust-1".into(),
            consent_id: "c-1".into(),
            partner: "openbanking-plaid".into(),
            accounts: vec![account.clone()],
        });
        round_trip(OpenBankingTransactionsFetched {
            envelope: env(OpenBankingTransactionsFetched::RECORD),
            customer_id: "cust-1".into(),
            consent_id: "c-1".into(),
            partner: "openbanking-plaid".into(),
            transactions: vec![tx.clone()],
            removed: vec!["p-1".into()],
        });
        round_trip(OpenBankingProviderEvent {
            envelope: env(OpenBankingProviderEvent::RECORD),
            partner: "openbanking-truelayer".into(),
            provider_reference: "pay-1".into(),
            provider_event_id: "evt-1".into(),
            status: OpenBankingStatus::Failed,
            received_at: 1_700_000_000_000,
            notice: "payment".into(),
            failure_reason: Some("insufficient_funds".into()),
            expires_at: None,
        });
        round_trip(OpenBankingCompleted {
            envelope: env(OpenBankingCompleted::RECORD),
            customer_id: "cust-1".into(),
            operation: OpenBankingOperation::CreateConsent,
            status: OpenBankingStatus::AwaitingAuthorization,
            consent_id: Some("c-1".into()),
            partner: "openbanking-truelayer".into(),
            authorization_url: Some("https://auth.example/?state=c-1".into()),
            payment_id: None,
            provider_reference: None,
            consent_expires_at: None,
            failure: None,
            scopes: vec![],
        });
        round_trip(OpenBankingAccounts {
            envelope: env(OpenBankingAccounts::RECORD),
            customer_id: "cust-1".into(),
            consent_id: "c-1".into(),
            partner: "openbanking-plaid".into(),
            accounts: vec![account],
        });
        round_trip(OpenBankingTransactions {
            envelope: env(OpenBankingTransactions::RECORD),
            customer_id: "cust-1".into(),
            consent_id: "c-1".into(),
            partner: "openbanking-plaid".into(),
            transactions: vec![tx],
            removed: vec![],
        });
    }
}
