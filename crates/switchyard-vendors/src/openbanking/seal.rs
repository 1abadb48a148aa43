//! The providers' tokens at rest: AES-256-GCM with a key from configuration (a secret reference),
//! a fresh nonce per sealing, and the consent's key as associated data (a sealed connection moved
//! to another consent does not open).

use super::Connection;
use crate::signing;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

pub struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    /// From 32 bytes, base64.
    pub fn new(key_b64: &str) -> Result<Self, String> {
        let raw = signing::unb64(key_b64.trim()).ok_or("tokens.key: not base64")?;
        let key = UnboundKey::new(&AES_256_GCM, &raw).map_err(|_| "tokens.key: must be 32 bytes (AES-256)")?;
        Ok(Sealer {
            key: LessSafeKey::new(key),
        })
    }

    pub fn seal(&self, consent_key: &str, c: &Connection) -> Result<String, String> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|e| e.to_string())?;
        let mut data = serde_json::to_vec(c).map_err(|e| e.to_string())?;
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(consent_key.as_bytes()),
                &mut data,
            )
            .map_err(|e| e.to_string())?;
        Ok(signing::b64(&[&nonce[..], &data].concat()))
    }

    pub fn open(&self, consent_key: &str, sealed: &str) -> Result<Connection, String> {
        let raw = signing::unb64(sealed).ok_or("sealed tokens: not base64")?;
        if raw.len() < NONCE_LEN {
            return Err("sealed tokens: too short".into());
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let mut data = rest.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|e| e.to_string())?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(consent_key.as_bytes()), &mut data)
            .map_err(|_| "sealed tokens do not open with this key and consent")?;
        serde_json::from_slice(plain).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn conn() -> Connection {
        Connection {
            access_token: "at-secret-123".into(),
            refresh_token: Some("rt-secret-456".into()),
            access_expires_at_ms: Some(1),
            consent_expires_at_ms: None,
            provider_reference: Some("item-1".into()),
            scopes: vec!["transactions".into()],
        }
    }

    #[test]
    fn tokens_open_only_with_their_key_and_consent() {
        let s = Sealer::new(&signing::b64(&[7u8; 32])).unwrap();
        let sealed = s.seal("obc.1.t.c-1", &conn()).unwrap();
        assert!(!sealed.contains("secret"), "no token in the clear");
        assert_ne!(
            sealed,
            s.seal("obc.1.t.c-1", &conn()).unwrap(),
            "a fresh nonce each time"
        );
        assert_eq!(s.open("obc.1.t.c-1", &sealed).unwrap().access_token, "at-secret-123");
        assert!(s.open("obc.1.t.c-2", &sealed).is_err(), "another consent's");
        let other = Sealer::new(&signing::b64(&[8u8; 32])).unwrap();
        assert!(other.open("obc.1.t.c-1", &sealed).is_err(), "another key");
        assert!(Sealer::new(&signing::b64(&[7u8; 16])).is_err(), "AES-256 only");
    }
}
