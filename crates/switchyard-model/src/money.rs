//! Amounts: integer minor units of an ISO 4217 currency, and the currency's exponent (how many minor
//! units make a major one: JPY 0, EUR 2, KWD 3). Never a float: a vendor that wants a decimal gets
//! exact decimal text.

/// ISO 4217 currencies whose minor unit is not 2 decimals.
const EXPONENT_0: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF",
    "XPF",
];
const EXPONENT_3: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
const EXPONENT_4: &[&str] = &["CLF", "UYW"];
/// Active ISO 4217 currencies with 2 decimals.
const EXPONENT_2: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BMD", "BND",
    "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CNY", "COP", "CRC", "CUP", "CVE", "CZK",
    "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GTQ", "GYD",
    "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IRR", "JMD", "KES", "KGS", "KHR", "KPW", "KYD", "KZT", "LAK",
    "LBP", "LKR", "LRD", "LSL", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN",
    "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "QAR", "RON",
    "RSD", "RUB", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP",
    "SZL", "THB", "TJS", "TMT", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "USD", "UYU", "UZS", "VES", "WST", "XCD",
    "YER", "ZAR", "ZMW", "ZWG",
];

/// The exponent of an ISO 4217 currency; None for a code that is not one.
pub fn exponent(currency: &str) -> Option<u32> {
    let has = |list: &[&str]| list.contains(&currency);
    if has(EXPONENT_2) {
        Some(2)
    } else if has(EXPONENT_0) {
        Some(0)
    } else if has(EXPONENT_3) {
        Some(3)
    } else if has(EXPONENT_4) {
        Some(4)
    } else {
        None
    }
}

/// The exact decimal text of an amount in minor units (1523 EUR → "15.23", 1500 JPY → "1500",
/// -5 KWD → "-0.005"); None for an unknown currency.
pub fn decimal(amount_minor: i64, currency: &str) -> Option<String> {
    let e = exponent(currency)? as usize;
    let sign = if amount_minor < 0 { "-" } else { "" };
    let digits = amount_minor.unsigned_abs().to_string();
    if e == 0 {
        return Some(format!("{sign}{digits}"));
    }
    let padded = format!("{digits:0>width$}", width = e + 1);
    let (major, minor) = padded.split_at(padded.len() - e);
    Some(format!("{sign}{major}.{minor}"))
}

/// Minor units of a positive decimal amount in `currency` ("150.25" EUR → 15025, "1500" JPY →
/// 1500, "1.250" KWD → 1250); refused with the reason when it has more decimals than the currency's
/// exponent, is not a plain decimal, or does not fit.
pub fn parse_decimal(text: &str, currency: &str) -> Result<i64, String> {
    let e = exponent(currency).ok_or_else(|| format!("{currency} is not an ISO 4217 currency"))? as usize;
    let (major, minor) = text.split_once('.').unwrap_or((text, ""));
    let plain = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if major.is_empty() || !plain(major) || !plain(minor) || (text.contains('.') && minor.is_empty()) {
        return Err("must be a decimal number such as 150.25, without sign, exponent or separators".into());
    }
    if minor.len() > e {
        return Err(format!(
            "{currency} has {e} decimal place{} (ISO 4217): {} given",
            if e == 1 { "" } else { "s" },
            minor.len()
        ));
    }
    let digits = format!("{major}{minor:0<e$}");
    digits.parse::<i64>().map_err(|_| "is too large".to_string())
}

/// Minor units of an amount given in `10^-6` of the major unit (micros, as some vendors count),
/// when it is a whole number of minor units.
pub fn from_micros(micros: i64, currency: &str) -> Option<i64> {
    let e = exponent(currency)?;
    let per_minor = 10i64.checked_pow(6u32.checked_sub(e)?)?;
    (micros % per_minor == 0).then_some(micros / per_minor)
}

/// The amount in micros (`10^-6` of the major unit); None when it does not fit.
pub fn to_micros(amount_minor: i64, currency: &str) -> Option<i64> {
    let e = exponent(currency)?;
    amount_minor.checked_mul(10i64.checked_pow(6u32.checked_sub(e)?)?)
}

#[cfg(test)]
mod parse_tests {
    use super::parse_decimal;

    #[test]
    fn decimals_follow_the_currency_exponent() {
        assert_eq!(parse_decimal("150.25", "EUR"), Ok(15025));
        assert_eq!(parse_decimal("150.2", "EUR"), Ok(15020));
        assert_eq!(parse_decimal("150", "EUR"), Ok(15000));
        assert_eq!(parse_decimal("1500", "JPY"), Ok(1500));
        assert!(parse_decimal("1500.5", "JPY").unwrap_err().contains("0 decimal places"));
        assert_eq!(parse_decimal("1.250", "KWD"), Ok(1250));
        assert!(parse_decimal("1.2505", "KWD").is_err());
        for bad in ["-1", "1e3", "1,000.00", ".5", "5.", "", "abc"] {
            assert!(parse_decimal(bad, "EUR").is_err(), "{bad}");
        }
        assert!(parse_decimal("1", "XYZ").is_err());
        assert!(parse_decimal("99999999999999999999", "EUR").is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponents_follow_iso_4217() {
        assert_eq!(exponent("JPY"), Some(0));
        assert_eq!(exponent("EUR"), Some(2));
        assert_eq!(exponent("KWD"), Some(3));
        assert_eq!(exponent("CLF"), Some(4));
        assert_eq!(exponent("EURO"), None);
        assert_eq!(exponent("eur"), None, "codes are upper case");
    }

    #[test]
    fn decimals_are_exact_text() {
        assert_eq!(decimal(1523, "EUR").as_deref(), Some("15.23"));
        assert_eq!(decimal(5, "EUR").as_deref(), Some("0.05"));
        assert_eq!(decimal(1500, "JPY").as_deref(), Some("1500"));
        assert_eq!(decimal(-5, "KWD").as_deref(), Some("-0.005"));
        assert_eq!(decimal(i64::MAX, "USD").as_deref(), Some("92233720368547758.07"));
        assert_eq!(decimal(1, "XXX"), None);
    }

    #[test]
    fn micros_convert_by_the_currencys_exponent() {
        assert_eq!(to_micros(1523, "USD"), Some(15_230_000));
        assert_eq!(to_micros(1500, "JPY"), Some(1_500_000_000));
        assert_eq!(to_micros(1500, "KWD"), Some(1_500_000));
        assert_eq!(from_micros(15_230_000, "USD"), Some(1523));
        assert_eq!(from_micros(15_230_001, "USD"), None, "not a whole number of cents");
        assert_eq!(to_micros(i64::MAX, "USD"), None);
    }
}
