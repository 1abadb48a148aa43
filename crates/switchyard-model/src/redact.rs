//! Error texts without the values that caused them.
//!
//! Decoding and encoding errors from Avro and JSON libraries quote the offending value (`Value
//! String("…") does not match schema`, `invalid type: string "…"`), and that value can be a name, a
//! date of birth or an account number. Such texts reach logs and the `dlq_detail` header, so they are
//! redacted where they are made: every quoted string becomes `"…"`, every number of two or more digits
//! becomes `#`, and the text is capped. What is left still says what went wrong and where.

/// Longest redacted text kept.
const MAX_CHARS: usize = 300;

/// `msg` with quoted strings and digit runs blanked, at most [`MAX_CHARS`] characters.
pub fn redact_values(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(MAX_CHARS));
    let mut chars = msg.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // Skip to the closing quote, honouring backslash escapes.
                while let Some(q) = chars.next() {
                    match q {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                out.push_str("\"…\"");
            }
            // A number, not part of a name (`u32`, `v1`).
            '0'..='9'
                if chars.peek().is_some_and(char::is_ascii_digit)
                    && !out.chars().last().is_some_and(|p| p.is_alphanumeric() || p == '_') =>
            {
                while chars.peek().is_some_and(char::is_ascii_digit) {
                    chars.next();
                }
                out.push('#');
            }
            _ => out.push(c),
        }
        if out.chars().count() >= MAX_CHARS {
            out.push('…');
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_values;

    #[test]
    fn quoted_values_and_numbers_go_and_the_shape_of_the_error_stays() {
        let avro = r#"Value Record([("given_name", String("Ada \"Countess\" Lovelace")), ("dob", String("1815-12-10"))]) does not match schema"#;
        let r = redact_values(avro);
        assert!(
            !r.contains("Ada") && !r.contains("Lovelace") && !r.contains("1815"),
            "{r}"
        );
        assert!(r.starts_with("Value Record([(\"…\", String(\"…\"))"), "{r}");
        assert!(r.ends_with("does not match schema"), "{r}");
        assert_eq!(
            redact_values("invalid type: string \"GB82WEST12345698765432\", expected u32 at line 1 column 40"),
            "invalid type: string \"…\", expected u32 at line 1 column #"
        );
        assert_eq!(redact_values("Bytes([71, 66, 56, 2])"), "Bytes([#, #, #, 2])");
    }

    #[test]
    fn long_texts_are_capped() {
        let r = redact_values(&"x".repeat(1000));
        assert_eq!(r.chars().count(), 301);
    }
}
