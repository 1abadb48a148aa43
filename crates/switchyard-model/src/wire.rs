//! The Confluent wire format: magic byte 0, a 4-byte big-endian schema id, then the Avro binary datum.

use thiserror::Error;

pub const MAGIC_BYTE: u8 = 0;
pub const HEADER_LEN: usize = 5;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("payload is empty")]
    Empty,
    #[error("payload of {0} bytes is shorter than the 5-byte Confluent header")]
    TooShort(usize),
    #[error("unknown magic byte {0:#04x} (expected 0x00: not Confluent wire format)")]
    BadMagic(u8),
}

/// Splits a Confluent-framed payload into its schema id and Avro datum.
pub fn split(payload: &[u8]) -> Result<(u32, &[u8]), WireError> {
    match payload {
        [] => Err(WireError::Empty),
        [magic, ..] if *magic != MAGIC_BYTE => Err(WireError::BadMagic(*magic)),
        p if p.len() < HEADER_LEN => Err(WireError::TooShort(p.len())),
        [_, a, b, c, d, datum @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), datum)),
        _ => Err(WireError::TooShort(payload.len())),
    }
}

/// Frames an Avro datum with its schema id.
pub fn frame(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_splits() {
        let framed = frame(0x0102_0304, b"abc");
        assert_eq!(framed, vec![0, 1, 2, 3, 4, b'a', b'b', b'c']);
        assert_eq!(split(&framed), Ok((0x0102_0304, &b"abc"[..])));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(split(b""), Err(WireError::Empty));
        assert_eq!(split(b"{\"json\":1}"), Err(WireError::BadMagic(b'{')));
        assert_eq!(split(&[0, 0, 1]), Err(WireError::TooShort(3)));
    }
}
