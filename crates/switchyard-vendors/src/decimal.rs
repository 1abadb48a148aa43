//! Amounts for vendors that want a decimal number in the major unit.

use crate::VendorError;

/// The major-unit amount as a JSON number whose value is the exact decimal (no float arithmetic: the
/// decimal text is parsed once, and its shortest representation is checked to be the same value).
pub(crate) fn major_amount(amount_minor: i64, currency: &str) -> Result<serde_json::Number, VendorError> {
    let text = switchyard_model::money::decimal(amount_minor, currency)
        .ok_or_else(|| VendorError::Permanent(format!("{currency} is not an ISO 4217 currency")))?;
    let n: serde_json::Number = text
        .parse()
        .map_err(|_| VendorError::Permanent(format!("amount {text} is not a number")))?;
    // "1.00" goes out as 1.0: the same value; what must never happen is a different value.
    let value = |t: &str| -> String {
        match t.split_once('.') {
            Some((i, f)) => {
                let f = f.trim_end_matches('0');
                if f.is_empty() {
                    i.to_string()
                } else {
                    format!("{i}.{f}")
                }
            }
            None => t.to_string(),
        }
    };
    if value(&n.to_string()) != value(&text) {
        return Err(VendorError::Permanent(format!(
            "amount {text} {currency} cannot be sent exactly as a JSON number"
        )));
    }
    Ok(n)
}
