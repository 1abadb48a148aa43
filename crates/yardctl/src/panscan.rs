//! `yardctl pan-scan`: no card number anywhere in the mesh. Card data stays at the card processors
//! (PCI DSS scope stays there); the mesh holds their tokens only. The scan reads every model topic and
//! its dead-letter topic, every table of every service's database, every service's log and every
//! span the tracing backend keeps, and fails on any PAN-shaped number: 13 to 19 digits standing
//! alone (no digit or letter touching either end, spaces or dashes allowed between groups), starting
//! as a payment card does (2 to 6) and passing the Luhn check.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use switchyard_model::topics;

use crate::demo::Env;

/// The PAN-shaped numbers in `text`, as found (digits only). Digits may be grouped the way cards
/// are printed (groups of four, the last shorter, or 4-6-5 and 4-6-4), with single spaces or dashes;
/// other groupings (a date, numbers side by side) are read group by group.
pub fn pans(text: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let n = text.len();
    let mut i = 0;
    while i < n {
        // The digits after a decimal point are a fraction (2.5712152120000002), not a number alone.
        let fraction = i >= 2 && matches!(text[i - 1], b'.' | b',') && text[i - 2].is_ascii_digit();
        let starts = text[i].is_ascii_digit() && (i == 0 || !text[i - 1].is_ascii_alphanumeric()) && !fraction;
        if !starts {
            i += 1;
            continue;
        }
        // Groups of digits, with single spaces or dashes between them.
        let (mut groups, mut j) = (vec![String::new()], i);
        while j < n {
            let c = text[j];
            if c.is_ascii_digit() {
                if let Some(g) = groups.last_mut() {
                    g.push(c as char);
                }
                j += 1;
            } else if (c == b' ' || c == b'-') && j + 1 < n && text[j + 1].is_ascii_digit() {
                groups.push(String::new());
                j += 1;
            } else {
                break;
            }
        }
        let touches = j < n
            && (text[j].is_ascii_alphanumeric()
                || (matches!(text[j], b'.' | b',') && j + 1 < n && text[j + 1].is_ascii_digit()));
        let lengths: Vec<usize> = groups.iter().map(String::len).collect();
        let card_grouping = lengths.len() > 1
            && (matches!(lengths.as_slice(), [4, 6, 5] | [4, 6, 4])
                || (lengths[..lengths.len() - 1].iter().all(|l| *l == 4)
                    && (1..=4).contains(&lengths[lengths.len() - 1])));
        if card_grouping {
            let joined = groups.concat();
            if !touches && is_pan(&joined) {
                out.push(joined);
            }
        } else {
            // Each group alone: the last may touch a letter, the others end at their separator.
            let last = groups.len() - 1;
            for (k, g) in groups.iter().enumerate() {
                if !(k == last && touches) && is_pan(g) {
                    out.push(g.clone());
                }
            }
        }
        i = j.max(i + 1);
    }
    out
}

/// 13 to 19 digits, a payment card's leading digit, and a valid Luhn check digit.
pub fn is_pan(digits: &str) -> bool {
    (13..=19).contains(&digits.len()) && matches!(digits.as_bytes()[0], b'2'..=b'6') && luhn(digits)
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A finding: where, and the number with all but its last four digits hidden.
struct Found {
    place: String,
    masked: String,
}

fn mask(pan: &str) -> String {
    format!("{}{}", "*".repeat(pan.len() - 4), &pan[pan.len() - 4..])
}

/// `text` with trace and span ids blanked: W3C `traceparent` values and a tracing backend's
/// `"traceID"` / `"spanID"` fields are hex, and one now and then is all digits.
fn without_trace_ids(text: &[u8]) -> Vec<u8> {
    let mut t = text.to_vec();
    let hex = |b: u8| b.is_ascii_hexdigit();
    let mut i = 0;
    while i + 55 <= t.len() {
        // 00-<32 hex>-<16 hex>-<2 hex>
        let w3c = t[i] == b'0'
            && t[i + 1] == b'0'
            && t[i + 2] == b'-'
            && t[i + 3..i + 35].iter().all(|b| hex(*b))
            && t[i + 35] == b'-'
            && t[i + 36..i + 52].iter().all(|b| hex(*b))
            && t[i + 52] == b'-'
            && t[i + 53..i + 55].iter().all(|b| hex(*b));
        if w3c {
            t[i..i + 55].fill(b'x');
            i += 55;
        } else {
            i += 1;
        }
    }
    for key in [&b"\"traceID\":\""[..], &b"\"spanID\":\""[..]] {
        let mut from = 0;
        while let Some(at) = t[from..].windows(key.len()).position(|w| w == key) {
            let mut k = from + at + key.len();
            while k < t.len() && hex(t[k]) {
                t[k] = b'x';
                k += 1;
            }
            from = k;
        }
    }
    t
}

fn note(found: &mut Vec<Found>, place: &str, text: &[u8]) {
    for p in pans(&without_trace_ids(text)) {
        found.push(Found {
            place: place.to_string(),
            masked: mask(&p),
        });
    }
}

pub async fn run() -> anyhow::Result<ExitCode> {
    let env = Env::load()?;
    let kafka = env.var("KAFKA_BOOTSTRAP_SERVERS")?.to_string();
    let mut found = Vec::new();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();

    // Every model topic and its dead-letter topic, whole.
    let mut names = topics::all_topics();
    names.extend(topics::all_topics().iter().map(|t| topics::dlq(t)));
    let messages = crate::dlq::read(&kafka, &names, None)?;
    for m in &messages {
        note(&mut found, &m.topic, m.payload.as_deref().unwrap_or_default());
        if let Some(k) = &m.key {
            note(&mut found, &format!("{} key", m.topic), k.as_bytes());
        }
        for (name, value) in &m.headers {
            note(&mut found, &format!("{} header {name}", m.topic), value.as_bytes());
        }
    }
    counts.insert("messages", messages.len());

    // Every table of every service's database, row by row as text.
    let mut rows = 0;
    for (var, url) in env.vars().filter(|(k, _)| k.ends_with("_DATABASE_URL")) {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .with_context(|| var.to_string())?;
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT quote_ident(table_name) FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
        )
        .fetch_all(&pool)
        .await?;
        for table in tables {
            // Its text-like columns, apart (a number in one column never runs into the next): binary ones (an outbox's Avro payload) are read on the topics,
            // and their hex rendering is full of digit runs that mean nothing.
            let columns: Vec<String> = sqlx::query_scalar(
                "SELECT quote_ident(column_name) || '::text' FROM information_schema.columns \
                 WHERE table_schema = 'public' AND quote_ident(table_name) = $1 AND data_type <> 'bytea' \
                 ORDER BY ordinal_position",
            )
            .bind(&table)
            .fetch_all(&pool)
            .await?;
            if columns.is_empty() {
                continue;
            }
            // Names from the catalog, quoted by the database itself.
            let sql = format!("SELECT concat_ws(' | ', {}) FROM {table}", columns.join(", "));
            let texts: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(&pool).await?;
            rows += texts.len();
            let place = format!("{} table {table}", var.trim_end_matches("_DATABASE_URL").to_lowercase());
            for t in &texts {
                note(&mut found, &place, t.as_bytes());
            }
        }
        pool.close().await;
    }
    counts.insert("rows", rows);

    // Every service's log.
    let logs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../local-stack/data/logs");
    let mut lines = 0;
    for entry in std::fs::read_dir(&logs).with_context(|| format!("{}", logs.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read(&path)?;
            lines += text.iter().filter(|b| **b == b'\n').count();
            note(&mut found, &format!("log {}", path.display()), &text);
        }
    }
    counts.insert("log lines", lines);

    // Every span the tracing backend keeps for the mesh's services.
    let mut spans = 0;
    let traces = env
        .traces(&[("limit", "2000".to_string()), ("lookback", "2h".to_string())])
        .await?;
    for t in traces.iter().flatten() {
        spans += t["spans"].as_array().map_or(0, Vec::len);
        note(&mut found, "a trace", t.to_string().as_bytes());
    }
    counts.insert("spans", spans);

    let mut by_place = std::collections::BTreeMap::<&str, Vec<&str>>::new();
    for f in &found {
        by_place.entry(&f.place).or_default().push(&f.masked);
    }
    for (place, pans) in &by_place {
        println!(
            "  PAN  {place}: {} ({})",
            pans.len(),
            pans.iter().take(3).copied().collect::<Vec<_>>().join(", ")
        );
    }
    println!(
        "pan-scan: {} PAN-shaped numbers in {} messages, {} rows, {} log lines and {} spans",
        found.len(),
        counts["messages"],
        counts["rows"],
        counts["log lines"],
        counts["spans"]
    );
    Ok(if found.is_empty() && counts["messages"] > 0 && counts["rows"] > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_are_found_however_they_are_written() {
        for (text, pan) in [
            ("pan=4111111111111111;", "4111111111111111"),
            ("{\"n\":\"5555 5555 5555 4444\"}", "5555555555554444"),
            ("card 3782-822463-10005 used", "378282246310005"),
            ("6011111111111117", "6011111111111117"),
            ("2223003122003222 end", "2223003122003222"),
        ] {
            assert_eq!(pans(text.as_bytes()), [pan], "{text}");
        }
    }

    #[test]
    fn numbers_that_are_not_card_numbers_are_left_alone() {
        for text in [
            // Luhn fails.
            "4111111111111112",
            // Epoch milliseconds, micros, nanos (a 1 does not start a card number).
            "1795701671359 1795701671359000 1795701671359000123",
            // An IBAN's digits touch its letters; a token's digits touch its own.
            "DE89370400440532013000 GB29NWBK60161331926819 4111111111111111x",
            // Fractions and decimals.
            "2.5712152120000002 4111111111111111.25 0,4111111111111111",
            // A date and time, numbers side by side.
            "2026-11-26 13:21:59 2026-11-25 2104 5533 42 2610 2026-11-26 2611",
            // Too short, too long.
            "411111111111 41111111111111111111",
            // A flow id and a UUID.
            "8.tenant-a.4111 01a2183d-c1c0-7242-a044-d8074a6ac6f2",
        ] {
            assert!(pans(text.as_bytes()).is_empty(), "{text}: {:?}", pans(text.as_bytes()));
        }
    }

    #[test]
    fn trace_and_span_ids_are_not_card_numbers() {
        let text = br#"traceparent: 00-4529603128926040c0ffee00000000aa-4529603128926040-01 {"traceID":"000000004529603128926040","spanID":"4529603128926040"} 4111111111111111"#;
        assert!(pans(text).len() > 1, "the ids alone look like card numbers");
        let pans_left = pans(&without_trace_ids(text));
        assert_eq!(pans_left, ["4111111111111111"]);
    }

    #[test]
    fn a_finding_shows_the_last_four_digits_only() {
        assert_eq!(mask("4111111111111111"), "************1111");
    }
}
