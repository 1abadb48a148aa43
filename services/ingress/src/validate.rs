//! Validation of `POST /v1/onboardings` bodies, collecting every problem with its field path.

use serde_json::Value;
use switchyard_model::events::{
    common::{Address, Person},
    onboarding::RiskTier,
};

pub struct NewOnboarding {
    pub applicant_id: String,
    pub person: Person,
    pub region: String,
    pub risk_tier: RiskTier,
    pub segment: Option<String>,
}

struct Check {
    errors: Vec<(String, String)>,
}

impl Check {
    fn fail(&mut self, field: &str, msg: &str) {
        self.errors.push((field.to_string(), msg.to_string()));
    }

    fn string(&mut self, v: &Value, field: &str, required: bool, max: usize) -> Option<String> {
        let at = pointer(v, field);
        match at {
            None | Some(Value::Null) => {
                if required {
                    self.fail(field, "is required");
                }
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.fail(field, "must not be blank");
                None
            }
            Some(Value::String(s)) if s.chars().count() > max => {
                self.fail(field, &format!("must be at most {max} characters"));
                None
            }
            Some(Value::String(s)) => Some(s.trim().to_string()),
            Some(_) => {
                self.fail(field, "must be a string");
                None
            }
        }
    }
}

fn pointer<'a>(v: &'a Value, dotted: &str) -> Option<&'a Value> {
    v.pointer(&format!("/{}", dotted.replace('.', "/")))
}

fn upper_letters(s: &str, n: std::ops::RangeInclusive<usize>) -> bool {
    n.contains(&s.len()) && s.chars().all(|c| c.is_ascii_uppercase())
}

pub fn onboarding(body: &Value) -> Result<NewOnboarding, Vec<(String, String)>> {
    let mut c = Check { errors: vec![] };
    if !body.is_object() {
        return Err(vec![("body".into(), "must be a JSON object".into())]);
    }
    const KNOWN: &[&str] = &["applicant_id", "person", "region", "risk_tier", "segment"];
    if let Some(obj) = body.as_object() {
        for k in obj.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
            c.fail(k, "is not a known field");
        }
    }
    let applicant_id = c.string(body, "applicant_id", true, 128);
    if let Some(a) = &applicant_id
        && !a.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.:".contains(ch))
    {
        c.fail("applicant_id", "may contain only letters, digits and - _ . :");
    }
    if !pointer(body, "person").is_some_and(Value::is_object) {
        c.fail("person", "is required and must be an object");
    }
    let given = c.string(body, "person.given_name", true, 100);
    let family = c.string(body, "person.family_name", true, 100);
    let dob = c.string(body, "person.date_of_birth", false, 10);
    let dob_days = dob.as_deref().and_then(|d| {
        let days = Person::days_from_iso(d);
        let today = chrono::Utc::now().date_naive();
        match chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d") {
            Err(_) => {
                c.fail("person.date_of_birth", "must be a date as YYYY-MM-DD");
                None
            }
            Ok(date) if date > today => {
                c.fail("person.date_of_birth", "must not be in the future");
                None
            }
            Ok(date) if chrono::Datelike::year(&date) < 1900 => {
                c.fail("person.date_of_birth", "must be after 1900-01-01");
                None
            }
            Ok(_) => days,
        }
    });
    let nationality = c.string(body, "person.nationality", false, 2);
    if let Some(n) = &nationality
        && !upper_letters(n, 2..=2)
    {
        c.fail("person.nationality", "must be an ISO 3166-1 alpha-2 code, e.g. GB");
    }
    let email = c.string(body, "person.email", false, 254);
    if let Some(e) = &email
        && !(e.contains('@') && e.contains('.'))
    {
        c.fail("person.email", "must be an email address");
    }
    let phone = c.string(body, "person.phone", false, 32);
    let address = match pointer(body, "person.address") {
        None | Some(Value::Null) => None,
        Some(Value::Object(_)) => {
            let line1 = c.string(body, "person.address.line1", true, 200);
            let line2 = c.string(body, "person.address.line2", false, 200);
            let city = c.string(body, "person.address.city", true, 100);
            let postal_code = c.string(body, "person.address.postal_code", true, 20);
            let region = c.string(body, "person.address.region", false, 100);
            let country = c.string(body, "person.address.country", true, 2);
            if let Some(cc) = &country
                && !upper_letters(cc, 2..=2)
            {
                c.fail("person.address.country", "must be an ISO 3166-1 alpha-2 code");
            }
            match (line1, city, postal_code, country) {
                (Some(line1), Some(city), Some(postal_code), Some(country)) => Some(Address {
                    line1,
                    line2,
                    city,
                    postal_code,
                    region,
                    country,
                }),
                _ => None,
            }
        }
        Some(_) => {
            c.fail("person.address", "must be an object");
            None
        }
    };
    let region = c.string(body, "region", true, 8);
    if let Some(r) = &region
        && !upper_letters(r, 2..=8)
    {
        c.fail("region", "must be an upper-case region code, e.g. EU, UK, US");
    }
    let risk_tier = match c.string(body, "risk_tier", true, 10).as_deref() {
        Some("LOW") => Some(RiskTier::Low),
        Some("MEDIUM") => Some(RiskTier::Medium),
        Some("HIGH") => Some(RiskTier::High),
        Some(_) => {
            c.fail("risk_tier", "must be one of LOW, MEDIUM, HIGH");
            None
        }
        None => None,
    };
    let segment = c.string(body, "segment", false, 32);
    match (applicant_id, given, family, region, risk_tier) {
        (Some(applicant_id), Some(given_name), Some(family_name), Some(region), Some(risk_tier))
            if c.errors.is_empty() =>
        {
            Ok(NewOnboarding {
                applicant_id,
                person: Person {
                    given_name,
                    family_name,
                    date_of_birth: dob_days,
                    nationality,
                    address,
                    email,
                    phone,
                },
                region,
                risk_tier,
                segment,
            })
        }
        _ => Err(c.errors),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::onboarding;

    #[test]
    fn a_complete_request_is_accepted() {
        let ok = onboarding(
            &json!({"applicant_id": "cust-1", "person": {"given_name": "Ada", "family_name": "Lovelace",
            "date_of_birth": "1990-02-03", "nationality": "GB"}, "region": "EU", "risk_tier": "LOW"}),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(ok.person.dob_iso().as_deref(), Some("1990-02-03"));
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let errors = onboarding(
            &json!({"applicant_id": "bad id!", "person": {"given_name": " ", "date_of_birth": "2999-01-01",
            "nationality": "gbr"}, "region": "eu", "risk_tier": "EXTREME", "colour": "blue"}),
        )
        .err()
        .unwrap_or_default();
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        for f in [
            "colour",
            "applicant_id",
            "person.given_name",
            "person.family_name",
            "person.date_of_birth",
            "person.nationality",
            "region",
            "risk_tier",
        ] {
            assert!(fields.contains(&f), "{f} missing from {errors:?}");
        }
    }
}
