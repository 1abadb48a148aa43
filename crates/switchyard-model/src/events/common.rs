//! Shared types (`schemas/common`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    pub region: Option<String>,
    pub country: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub given_name: String,
    pub family_name: String,
    /// Days since 1970-01-01 (Avro `date`).
    pub date_of_birth: Option<i32>,
    pub nationality: Option<String>,
    pub address: Option<Address>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

impl Person {
    pub fn full_name(&self) -> String {
        format!("{} {}", self.given_name, self.family_name)
    }

    /// Date of birth as `YYYY-MM-DD`.
    pub fn dob_iso(&self) -> Option<String> {
        let days = self.date_of_birth?;
        let date =
            chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(chrono::Duration::days(i64::from(days)))?;
        Some(date.format("%Y-%m-%d").to_string())
    }

    /// Days since 1970-01-01 of a `YYYY-MM-DD` date.
    pub fn days_from_iso(iso: &str) -> Option<i32> {
        let date = chrono::NaiveDate::parse_from_str(iso, "%Y-%m-%d").ok()?;
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
        i32::try_from((date - epoch).num_days()).ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureClass {
    Transient,
    Permanent,
    ManualRepair,
    ComplianceHold,
    Ambiguous,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub failure_class: FailureClass,
    pub code: String,
    pub message: String,
}

impl Failure {
    pub fn new(failure_class: FailureClass, code: impl Into<String>, message: impl Into<String>) -> Self {
        Failure {
            failure_class,
            code: code.into(),
            message: message.into(),
        }
    }
}
