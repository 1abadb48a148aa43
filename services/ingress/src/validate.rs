//! Validation of `POST /v1/onboardings` bodies, collecting every problem with its field path.

use serde_json::Value;
use switchyard_model::{
    events::{
        cards::{CardFormFactor, SpendControls},
        common::{Address, Money, Person},
        fraud::Channel,
        onboarding::RiskTier,
        payouts::{AccountIdentifier, AccountScheme, Beneficiary, account_problem},
    },
    money,
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
    let person = person(&mut c, body, "person", true);
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
    match (applicant_id, person, region, risk_tier) {
        (Some(applicant_id), Some(person), Some(region), Some(risk_tier)) if c.errors.is_empty() => Ok(NewOnboarding {
            applicant_id,
            person,
            region,
            risk_tier,
            segment,
        }),
        _ => Err(c.errors),
    }
}

/// A person at `at` (`person`, `cardholder`): names required, the rest optional.
fn person(c: &mut Check, body: &Value, at: &str, required: bool) -> Option<Person> {
    match pointer(body, at) {
        Some(Value::Object(_)) => {}
        None | Some(Value::Null) if !required => return None,
        _ => {
            c.fail(at, "is required and must be an object");
            return None;
        }
    }
    let given = c.string(body, &format!("{at}.given_name"), true, 100);
    let family = c.string(body, &format!("{at}.family_name"), true, 100);
    let dob = c.string(body, &format!("{at}.date_of_birth"), false, 10);
    let dob_days = dob.as_deref().and_then(|d| {
        let days = Person::days_from_iso(d);
        let today = chrono::Utc::now().date_naive();
        match chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d") {
            Err(_) => {
                c.fail(&format!("{at}.date_of_birth"), "must be a date as YYYY-MM-DD");
                None
            }
            Ok(date) if date > today => {
                c.fail(&format!("{at}.date_of_birth"), "must not be in the future");
                None
            }
            Ok(date) if chrono::Datelike::year(&date) < 1900 => {
                c.fail(&format!("{at}.date_of_birth"), "must be after 1900-01-01");
                None
            }
            Ok(_) => days,
        }
    });
    let nationality = c.string(body, &format!("{at}.nationality"), false, 2);
    if let Some(n) = &nationality
        && !upper_letters(n, 2..=2)
    {
        c.fail(
            &format!("{at}.nationality"),
            "must be an ISO 3166-1 alpha-2 code, e.g. GB",
        );
    }
    let email = c.string(body, &format!("{at}.email"), false, 254);
    if let Some(e) = &email
        && !(e.contains('@') && e.contains('.'))
    {
        c.fail(&format!("{at}.email"), "must be an email address");
    }
    let phone = c.string(body, &format!("{at}.phone"), false, 32);
    let address = match pointer(body, &format!("{at}.address")) {
        None | Some(Value::Null) => None,
        Some(Value::Object(_)) => {
            let line1 = c.string(body, &format!("{at}.address.line1"), true, 200);
            let line2 = c.string(body, &format!("{at}.address.line2"), false, 200);
            let city = c.string(body, &format!("{at}.address.city"), true, 100);
            let postal_code = c.string(body, &format!("{at}.address.postal_code"), true, 20);
            let region = c.string(body, &format!("{at}.address.region"), false, 100);
            let country = c.string(body, &format!("{at}.address.country"), true, 2);
            if let Some(cc) = &country
                && !upper_letters(cc, 2..=2)
            {
                c.fail(&format!("{at}.address.country"), "must be an ISO 3166-1 alpha-2 code");
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
            c.fail(&format!("{at}.address"), "must be an object");
            None
        }
    };
    Some(Person {
        given_name: given?,
        family_name: family?,
        date_of_birth: dob_days,
        nationality,
        address,
        email,
        phone,
    })
}

/// A beneficiary (`beneficiary.name`, `beneficiary.account`): the account checked in its own
/// scheme's format and never echoed in an error.
fn beneficiary(c: &mut Check, body: &Value) -> (Option<String>, Option<AccountIdentifier>) {
    if !pointer(body, "beneficiary").is_some_and(Value::is_object) {
        c.fail("beneficiary", "is required and must be an object with name and account");
    }
    known_fields(c, body, "beneficiary", &["name", "account"]);
    known_fields(c, body, "beneficiary.account", &["scheme", "value", "bank_code"]);
    let name = c.string(body, "beneficiary.name", true, 140);
    let scheme = match c.string(body, "beneficiary.account.scheme", true, 32).as_deref() {
        Some("iban") => Some(AccountScheme::Iban),
        Some("sort_code_account") => Some(AccountScheme::SortCodeAccount),
        Some("ach_routing_account") => Some(AccountScheme::AchRoutingAccount),
        Some("wallet") => Some(AccountScheme::Wallet),
        Some(_) => {
            c.fail(
                "beneficiary.account.scheme",
                "must be one of iban, sort_code_account, ach_routing_account, wallet",
            );
            None
        }
        None => None,
    };
    let value = c.string(body, "beneficiary.account.value", true, 64);
    let bank_code = c.string(body, "beneficiary.account.bank_code", false, 16);
    let account = match (scheme, value) {
        (Some(scheme), Some(value)) => {
            let a = AccountIdentifier {
                scheme,
                value: if scheme == AccountScheme::Iban {
                    value.replace(' ', "").to_uppercase()
                } else {
                    value
                },
                bank_code,
            };
            // The account itself is never echoed in an error.
            if let Some(problem) = account_problem(&a) {
                c.fail("beneficiary.account", problem);
            }
            Some(a)
        }
        _ => None,
    };
    (name, account)
}

/// A payout as the API accepts it.
pub struct NewPayout {
    pub payout_id: String,
    pub customer_id: String,
    pub amount: Money,
    pub beneficiary: Beneficiary,
    pub country: Option<String>,
    pub priority: Option<String>,
    pub reference: Option<String>,
    pub rail: Option<String>,
    pub channel: Option<Channel>,
    pub device_id: Option<String>,
}

fn id_like(c: &mut Check, field: &str, v: &Option<String>) {
    if let Some(a) = v
        && !a.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.:".contains(ch))
    {
        c.fail(field, "may contain only letters, digits and - _ . :");
    }
}

fn known_fields(c: &mut Check, body: &Value, at: &str, known: &[&str]) {
    let obj = if at.is_empty() { Some(body) } else { pointer(body, at) };
    if let Some(Value::Object(o)) = obj {
        for k in o.keys().filter(|k| !known.contains(&k.as_str())) {
            let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
            c.fail(&path, "is not a known field");
        }
    }
}

/// `amount`: `{"currency": "EUR", "value": "150.25"}` (a decimal string with at most the
/// currency's decimals) or `{"currency": "JPY", "minor_units": 1500}`.
fn amount(c: &mut Check, body: &Value) -> Option<Money> {
    money_at(c, body, "amount")
}

/// An amount at `at`, as [`amount`] reads it.
fn money_at(c: &mut Check, body: &Value, at: &str) -> Option<Money> {
    if !pointer(body, at).is_some_and(Value::is_object) {
        c.fail(at, "is required and must be an object with currency and value");
        return None;
    }
    known_fields(c, body, at, &["currency", "value", "minor_units"]);
    let currency = c.string(body, &format!("{at}.currency"), true, 3);
    let currency = currency.filter(|cur| {
        let ok = money::exponent(cur).is_some();
        if !ok {
            c.fail(
                &format!("{at}.currency"),
                "must be an ISO 4217 currency code, e.g. EUR, JPY, KWD",
            );
        }
        ok
    })?;
    let (value_at, minor_at) = (format!("{at}.value"), format!("{at}.minor_units"));
    let minor = match (pointer(body, &value_at), pointer(body, &minor_at)) {
        (Some(Value::String(v)), None) => match money::parse_decimal(v, &currency) {
            Ok(m) => Some(m),
            Err(why) => {
                c.fail(&value_at, &why);
                None
            }
        },
        (None, Some(Value::Number(n))) => match n.as_i64() {
            Some(m) => Some(m),
            None => {
                c.fail(&minor_at, "must be a whole number of minor units");
                None
            }
        },
        (Some(_), None) => {
            c.fail(&value_at, "must be a decimal string such as \"150.25\" (never a float)");
            None
        }
        (None, Some(_)) => {
            c.fail(&minor_at, "must be a whole number");
            None
        }
        (None, None) => {
            c.fail(&value_at, &format!("is required (or {at}.minor_units)"));
            None
        }
        (Some(_), Some(_)) => {
            c.fail(at, "give value or minor_units, not both");
            None
        }
    }?;
    if minor <= 0 {
        c.fail(at, "must be positive");
        return None;
    }
    Some(Money {
        amount_minor: minor,
        currency,
    })
}

fn channel(c: &mut Check, body: &Value) -> Option<Channel> {
    match c.string(body, "channel", false, 10).as_deref() {
        None => None,
        Some("web") => Some(Channel::Web),
        Some("mobile") => Some(Channel::Mobile),
        Some("api") => Some(Channel::Api),
        Some("branch") => Some(Channel::Branch),
        Some(_) => {
            c.fail("channel", "must be one of web, mobile, api, branch");
            None
        }
    }
}

pub fn payout(body: &Value) -> Result<NewPayout, Vec<(String, String)>> {
    let mut c = Check { errors: vec![] };
    if !body.is_object() {
        return Err(vec![("body".into(), "must be a JSON object".into())]);
    }
    known_fields(
        &mut c,
        body,
        "",
        &[
            "payout_id",
            "customer_id",
            "amount",
            "beneficiary",
            "country",
            "priority",
            "reference",
            "rail",
            "channel",
            "device_id",
        ],
    );
    let payout_id = c.string(body, "payout_id", true, 64);
    id_like(&mut c, "payout_id", &payout_id);
    let customer_id = c.string(body, "customer_id", true, 128);
    id_like(&mut c, "customer_id", &customer_id);
    let amount = amount(&mut c, body);
    let (name, account) = beneficiary(&mut c, body);
    let country = c.string(body, "country", false, 2);
    if let Some(cc) = &country
        && !upper_letters(cc, 2..=2)
    {
        c.fail("country", "must be an ISO 3166-1 alpha-2 code, e.g. DE");
    }
    let priority = c.string(body, "priority", false, 5);
    if let Some(p) = &priority
        && p != "cost"
        && p != "speed"
    {
        c.fail("priority", "must be cost or speed");
    }
    let reference = c.string(body, "reference", false, 140);
    let rail = c.string(body, "rail", false, 16);
    let channel = channel(&mut c, body);
    let device_id = c.string(body, "device_id", false, 128);
    match (payout_id, customer_id, amount, name, account) {
        (Some(payout_id), Some(customer_id), Some(amount), Some(name), Some(account)) if c.errors.is_empty() => {
            Ok(NewPayout {
                payout_id,
                customer_id,
                amount,
                beneficiary: Beneficiary {
                    name,
                    account,
                    address: None,
                },
                country,
                priority,
                reference,
                rail,
                channel,
                device_id,
            })
        }
        _ => Err(c.errors),
    }
}

/// A standalone fraud score as the API accepts it.
pub struct NewScore {
    pub transaction_id: String,
    pub customer_id: String,
    pub amount: Money,
    pub counterparty_id: String,
    pub channel: Channel,
    pub device_id: Option<String>,
}

pub fn score(body: &Value) -> Result<NewScore, Vec<(String, String)>> {
    let mut c = Check { errors: vec![] };
    if !body.is_object() {
        return Err(vec![("body".into(), "must be a JSON object".into())]);
    }
    known_fields(
        &mut c,
        body,
        "",
        &[
            "transaction_id",
            "customer_id",
            "amount",
            "counterparty_id",
            "channel",
            "device_id",
        ],
    );
    let transaction_id = c.string(body, "transaction_id", true, 64);
    id_like(&mut c, "transaction_id", &transaction_id);
    let customer_id = c.string(body, "customer_id", true, 128);
    id_like(&mut c, "customer_id", &customer_id);
    let amount = amount(&mut c, body);
    let counterparty_id = c.string(body, "counterparty_id", true, 128);
    let channel = channel(&mut c, body).or_else(|| {
        if pointer(body, "channel").is_none() {
            c.fail("channel", "is required: web, mobile, api or branch");
        }
        None
    });
    let device_id = c.string(body, "device_id", false, 128);
    match (transaction_id, customer_id, amount, counterparty_id, channel) {
        (Some(transaction_id), Some(customer_id), Some(amount), Some(counterparty_id), Some(channel))
            if c.errors.is_empty() =>
        {
            Ok(NewScore {
                transaction_id,
                customer_id,
                amount,
                counterparty_id,
                channel,
                device_id,
            })
        }
        _ => Err(c.errors),
    }
}

/// A card as `POST /v1/cards` accepts it.
pub struct NewCard {
    pub card_id: String,
    pub cardholder_id: String,
    pub cardholder: Option<Person>,
    pub product: Option<String>,
    pub form_factor: CardFormFactor,
    pub controls: Option<SpendControls>,
    pub funding: Option<Money>,
}

fn limit(c: &mut Check, body: &Value, at: &str, currency: Option<&str>) -> Option<i64> {
    pointer(body, at).filter(|v| !v.is_null())?;
    let m = money_at(c, body, at)?;
    if let Some(cur) = currency
        && cur != m.currency
    {
        c.fail(
            &format!("{at}.currency"),
            &format!("must be the card's currency, {cur}"),
        );
        return None;
    }
    Some(m.amount_minor)
}

fn codes(c: &mut Check, body: &Value, at: &str, valid: fn(&str) -> bool, what: &str) -> Vec<String> {
    match pointer(body, at) {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for (i, v) in items.iter().enumerate() {
                match v.as_str() {
                    Some(s) if valid(s) => out.push(s.to_string()),
                    _ => c.fail(&format!("{at}.{i}"), what),
                }
            }
            out
        }
        Some(_) => {
            c.fail(at, "must be an array");
            vec![]
        }
    }
}

pub fn card(body: &Value) -> Result<NewCard, Vec<(String, String)>> {
    let mut c = Check { errors: vec![] };
    if !body.is_object() {
        return Err(vec![("body".into(), "must be a JSON object".into())]);
    }
    known_fields(
        &mut c,
        body,
        "",
        &[
            "card_id",
            "cardholder_id",
            "cardholder",
            "product",
            "form_factor",
            "controls",
            "funding",
        ],
    );
    let card_id = c.string(body, "card_id", true, 64);
    id_like(&mut c, "card_id", &card_id);
    let cardholder_id = c.string(body, "cardholder_id", true, 128);
    id_like(&mut c, "cardholder_id", &cardholder_id);
    let cardholder = person(&mut c, body, "cardholder", false);
    let product = c.string(body, "product", false, 64);
    id_like(&mut c, "product", &product);
    let form_factor = match c.string(body, "form_factor", false, 10).as_deref() {
        None | Some("virtual") => Some(CardFormFactor::Virtual),
        Some("physical") => Some(CardFormFactor::Physical),
        Some(_) => {
            c.fail("form_factor", "must be virtual or physical");
            None
        }
    };
    let funding = match pointer(body, "funding") {
        None | Some(Value::Null) => None,
        Some(_) => money_at(&mut c, body, "funding"),
    };
    let currency = funding.as_ref().map(|m| m.currency.clone());
    let controls = match pointer(body, "controls") {
        None | Some(Value::Null) => None,
        Some(Value::Object(_)) => {
            known_fields(
                &mut c,
                body,
                "controls",
                &[
                    "per_transaction",
                    "daily",
                    "monthly",
                    "allowed_mccs",
                    "blocked_mccs",
                    "allowed_countries",
                ],
            );
            let mcc = |s: &str| s.len() == 4 && s.chars().all(|ch| ch.is_ascii_digit());
            let country = |s: &str| upper_letters(s, 2..=2);
            Some(SpendControls {
                per_transaction_minor: limit(&mut c, body, "controls.per_transaction", currency.as_deref()),
                daily_minor: limit(&mut c, body, "controls.daily", currency.as_deref()),
                monthly_minor: limit(&mut c, body, "controls.monthly", currency.as_deref()),
                allowed_mccs: codes(
                    &mut c,
                    body,
                    "controls.allowed_mccs",
                    mcc,
                    "must be a 4-digit merchant category code",
                ),
                blocked_mccs: codes(
                    &mut c,
                    body,
                    "controls.blocked_mccs",
                    mcc,
                    "must be a 4-digit merchant category code",
                ),
                allowed_countries: codes(
                    &mut c,
                    body,
                    "controls.allowed_countries",
                    country,
                    "must be an ISO 3166-1 alpha-2 code, e.g. US",
                ),
            })
        }
        Some(_) => {
            c.fail("controls", "must be an object");
            None
        }
    };
    match (card_id, cardholder_id, form_factor) {
        (Some(card_id), Some(cardholder_id), Some(form_factor)) if c.errors.is_empty() => Ok(NewCard {
            card_id,
            cardholder_id,
            cardholder,
            product,
            form_factor,
            controls,
            funding,
        }),
        _ => Err(c.errors),
    }
}

/// An open-banking consent as `POST /v1/openbanking/consents` accepts it.
pub struct NewConsent {
    pub consent_id: String,
    pub customer_id: String,
    pub institution_id: Option<String>,
    pub redirect_uri: String,
}

fn redirect(c: &mut Check, body: &Value) -> Option<String> {
    let r = c.string(body, "redirect_uri", true, 512);
    if let Some(u) = &r
        && !(u.starts_with("https://") || u.starts_with("http://localhost") || u.starts_with("http://127.0.0.1"))
    {
        c.fail("redirect_uri", "must be an https URL (http only for localhost)");
    }
    r
}

pub fn consent(body: &Value) -> Result<NewConsent, Vec<(String, String)>> {
    let mut c = Check { errors: vec![] };
    if !body.is_object() {
        return Err(vec![("body".into(), "must be a JSON object".into())]);
    }
    known_fields(
        &mut c,
        body,
        "",
        &["consent_id", "customer_id", "institution_id", "redirect_uri"],
    );
    let consent_id = c.string(body, "consent_id", true, 64);
    id_like(&mut c, "consent_id", &consent_id);
    let customer_id = c.string(body, "customer_id", true, 128);
    id_like(&mut c, "customer_id", &customer_id);
    let institution_id = c.string(body, "institution_id", false, 64);
    id_like(&mut c, "institution_id", &institution_id);
    let redirect_uri = redirect(&mut c, body);
    match (consent_id, customer_id, redirect_uri) {
        (Some(consent_id), Some(customer_id), Some(redirect_uri)) if c.errors.is_empty() => Ok(NewConsent {
            consent_id,
            customer_id,
            institution_id,
            redirect_uri,
        }),
        _ => Err(c.errors),
    }
}

/// A pay-by-bank payment as `POST /v1/openbanking/payments` accepts it.
pub struct NewBankPayment {
    pub payment_id: String,
    pub customer_id: String,
    pub amount: Money,
    pub beneficiary: Beneficiary,
    pub reference: String,
    pub redirect_uri: String,
}

pub fn bank_payment(body: &Value) -> Result<NewBankPayment, Vec<(String, String)>> {
    let mut c = Check { errors: vec![] };
    if !body.is_object() {
        return Err(vec![("body".into(), "must be a JSON object".into())]);
    }
    known_fields(
        &mut c,
        body,
        "",
        &[
            "payment_id",
            "customer_id",
            "amount",
            "beneficiary",
            "reference",
            "redirect_uri",
        ],
    );
    let payment_id = c.string(body, "payment_id", true, 64);
    id_like(&mut c, "payment_id", &payment_id);
    let customer_id = c.string(body, "customer_id", true, 128);
    id_like(&mut c, "customer_id", &customer_id);
    let amount = amount(&mut c, body);
    if let Some(m) = &amount
        && !["GBP", "EUR"].contains(&m.currency.as_str())
    {
        c.fail("amount.currency", "pay-by-bank pays GBP or EUR");
    }
    let (name, account) = beneficiary(&mut c, body);
    if let Some(a) = &account
        && !matches!(a.scheme, AccountScheme::Iban | AccountScheme::SortCodeAccount)
    {
        c.fail(
            "beneficiary.account.scheme",
            "pay-by-bank pays an iban or a sort_code_account",
        );
    }
    let reference = c.string(body, "reference", true, 140);
    let redirect_uri = redirect(&mut c, body);
    match (payment_id, customer_id, amount, name, account, reference, redirect_uri) {
        (
            Some(payment_id),
            Some(customer_id),
            Some(amount),
            Some(name),
            Some(account),
            Some(reference),
            Some(redirect_uri),
        ) if c.errors.is_empty() => Ok(NewBankPayment {
            payment_id,
            customer_id,
            amount,
            beneficiary: Beneficiary {
                name,
                account,
                address: None,
            },
            reference,
            redirect_uri,
        }),
        _ => Err(c.errors),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{CardFormFactor, card, onboarding, payout};

    #[test]
    fn a_payout_amount_follows_its_currency_and_the_account_its_scheme() {
        let base = json!({"payout_id": "po-1", "customer_id": "c-1",
            "amount": {"currency": "EUR", "value": "150.25"},
            "beneficiary": {"name": "Grace Hopper", "account": {"scheme": "iban", "value": "DE89 3704 0044 0532 0130 00"}}});
        let ok = payout(&base).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(ok.amount.amount_minor, 15025);
        assert_eq!(ok.beneficiary.account.value, "DE89370400440532013000");
        let mut jpy = base.clone();
        jpy["amount"] = json!({"currency": "JPY", "value": "1500.5"});
        let errors = payout(&jpy).err().unwrap_or_default();
        assert!(
            errors
                .iter()
                .any(|(f, m)| f == "amount.value" && m.contains("0 decimal places")),
            "{errors:?}"
        );
        let mut kwd = base.clone();
        kwd["amount"] = json!({"currency": "KWD", "minor_units": 1250});
        assert_eq!(payout(&kwd).map(|p| p.amount.amount_minor).ok(), Some(1250));
        let mut float = base.clone();
        float["amount"] = json!({"currency": "EUR", "value": 150.25});
        assert!(payout(&float).is_err(), "a float amount is refused");
        let mut bad_iban = base.clone();
        bad_iban["beneficiary"]["account"]["value"] = json!("DE89370400440532013001");
        let errors = payout(&bad_iban).err().unwrap_or_default();
        assert!(
            errors
                .iter()
                .any(|(f, m)| f == "beneficiary.account" && m.contains("mod 97")),
            "{errors:?}"
        );
        assert!(
            !format!("{errors:?}").contains("0532013001"),
            "the account is never echoed"
        );
        let mut ach = base.clone();
        ach["beneficiary"]["account"] =
            json!({"scheme": "ach_routing_account", "value": "000123456789", "bank_code": "021000021"});
        ach["amount"] = json!({"currency": "USD", "value": "10"});
        assert!(payout(&ach).is_ok());
        ach["beneficiary"]["account"]["bank_code"] = json!("021000022");
        assert!(payout(&ach).is_err(), "ABA checksum");
    }

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

    #[test]
    fn a_card_request_is_checked_field_by_field() {
        let ok = json!({"card_id": "card-1", "cardholder_id": "cust-9",
            "cardholder": {"given_name": "Grace", "family_name": "Hopper"},
            "form_factor": "physical", "funding": {"currency": "USD", "value": "500.00"},
            "controls": {"per_transaction": {"currency": "USD", "value": "100"}, "blocked_mccs": ["7995"],
                "allowed_countries": ["US", "CA"]}});
        let c = card(&ok).unwrap();
        assert_eq!(c.form_factor, CardFormFactor::Physical);
        assert_eq!(c.funding.unwrap().amount_minor, 50_000);
        let controls = c.controls.unwrap();
        assert_eq!(controls.per_transaction_minor, Some(10_000));
        assert_eq!(controls.blocked_mccs, ["7995"]);
        assert_eq!(c.cardholder.unwrap().family_name, "Hopper");
        let bad = json!({"card_id": "card 1", "cardholder_id": "c", "form_factor": "plastic",
            "pan": "not accepted", "funding": {"currency": "USD", "value": "10"},
            "controls": {"daily": {"currency": "EUR", "value": "5"}, "blocked_mccs": ["79"], "allowed_countries": ["usa"]},
            "cardholder": {"given_name": "Grace"}});
        let errors = card(&bad).err().unwrap();
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        for f in [
            "card_id",
            "form_factor",
            "pan",
            "controls.daily.currency",
            "controls.blocked_mccs.0",
            "controls.allowed_countries.0",
            "cardholder.family_name",
        ] {
            assert!(fields.contains(&f), "{f} in {fields:?}");
        }
        assert!(
            card(&json!({"card_id": "c-2", "cardholder_id": "x"})).is_ok(),
            "virtual, unfunded, no controls"
        );
    }
}
