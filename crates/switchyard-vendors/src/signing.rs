//! HMAC helpers (aws-lc, constant-time verification) and secrets with rotation.

use aws_lc_rs::{constant_time, hmac};
use base64::Engine;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Sha1,
    Sha256,
    Sha512,
}

impl Alg {
    fn of(self) -> hmac::Algorithm {
        match self {
            Alg::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Alg::Sha256 => hmac::HMAC_SHA256,
            Alg::Sha512 => hmac::HMAC_SHA512,
        }
    }
}

pub fn hmac(alg: Alg, key: &[u8], msg: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(alg.of(), key), msg).as_ref().to_vec()
}

/// Verifies an RSA PKCS#1 v1.5 SHA-256 signature with a public key in RSAPublicKey DER.
pub fn rsa_sha256_verify(public_key_der: &[u8], msg: &[u8], signature: &[u8]) -> bool {
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256, public_key_der)
        .verify(msg, signature)
        .is_ok()
}

/// Signs with RSA PKCS#1 v1.5 SHA-256 (a PKCS#8 DER private key): what a vendor does; simulators only.
pub fn rsa_sha256_sign(private_key_pkcs8: &[u8], msg: &[u8]) -> Result<Vec<u8>, String> {
    let key = aws_lc_rs::rsa::KeyPair::from_pkcs8(private_key_pkcs8).map_err(|e| e.to_string())?;
    let mut sig = vec![0u8; key.public_modulus_len()];
    key.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        msg,
        &mut sig,
    )
    .map_err(|e| e.to_string())?;
    Ok(sig)
}

/// Elliptic-curve signatures as JWS uses them (ES256: P-256 with SHA-256; ES512: P-521 with
/// SHA-512), the signature as the fixed-width `r || s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Es {
    Es256,
    Es512,
}

impl Es {
    /// Bytes of one coordinate.
    pub fn coordinate_len(self) -> usize {
        match self {
            Es::Es256 => 32,
            Es::Es512 => 66,
        }
    }
}

/// Verifies `signature` (`r || s`) over `msg` with the public key `point` (uncompressed SEC1:
/// `0x04 || x || y`).
pub fn es_verify(alg: Es, point: &[u8], msg: &[u8], signature: &[u8]) -> bool {
    let a = match alg {
        Es::Es256 => &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        Es::Es512 => &aws_lc_rs::signature::ECDSA_P521_SHA512_FIXED,
    };
    aws_lc_rs::signature::UnparsedPublicKey::new(a, point)
        .verify(msg, signature)
        .is_ok()
}

/// Signs `msg` with a PKCS#8 DER EC private key; the signature (`r || s`) and the public point.
pub fn es_sign(alg: Es, private_key_pkcs8: &[u8], msg: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    use aws_lc_rs::signature::KeyPair;
    let a = match alg {
        Es::Es256 => &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        Es::Es512 => &aws_lc_rs::signature::ECDSA_P521_SHA512_FIXED_SIGNING,
    };
    let key = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(a, private_key_pkcs8).map_err(|e| e.to_string())?;
    let sig = key
        .sign(&aws_lc_rs::rand::SystemRandom::new(), msg)
        .map_err(|e| e.to_string())?;
    Ok((sig.as_ref().to_vec(), key.public_key().as_ref().to_vec()))
}

/// A new EC private key (PKCS#8 DER): simulators and tests only.
pub fn es_generate(alg: Es) -> Result<Vec<u8>, String> {
    let a = match alg {
        Es::Es256 => &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        Es::Es512 => &aws_lc_rs::signature::ECDSA_P521_SHA512_FIXED_SIGNING,
    };
    aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(a, &aws_lc_rs::rand::SystemRandom::new())
        .map(|d| d.as_ref().to_vec())
        .map_err(|e| e.to_string())
}

/// A JWK's public point (`x`, `y` base64url) as uncompressed SEC1.
pub fn jwk_point(alg: Es, x: &str, y: &str) -> Option<Vec<u8>> {
    let (x, y) = (unb64url(x)?, unb64url(y)?);
    let n = alg.coordinate_len();
    (x.len() == n && y.len() == n).then(|| [&[4u8][..], &x, &y].concat())
}

/// The `x` and `y` of an uncompressed SEC1 point, base64url (for a JWK).
pub fn point_xy(point: &[u8]) -> Option<(String, String)> {
    let rest = point.strip_prefix(&[4u8])?;
    (rest.len() % 2 == 0).then(|| {
        let (x, y) = rest.split_at(rest.len() / 2);
        (b64url(x), b64url(y))
    })
}

pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

/// The SHA-256 digest of `bytes`, in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// Constant-time equality.
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// A webhook secret with rotation: the current one and, during a rotation, the previous one.
#[derive(Clone, Default)]
pub struct SecretPair {
    current: Vec<u8>,
    previous: Option<Vec<u8>>,
}

impl std::fmt::Debug for SecretPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretPair([REDACTED], previous: {})", self.previous.is_some())
    }
}

impl SecretPair {
    /// An empty current secret is a configuration error: it would accept anything signed with "".
    pub fn new(current: &str, previous: Option<&str>) -> Result<Self, String> {
        if current.is_empty() {
            return Err("webhook secret is empty".to_string());
        }
        Ok(SecretPair {
            current: current.as_bytes().to_vec(),
            previous: previous.filter(|p| !p.is_empty()).map(|p| p.as_bytes().to_vec()),
        })
    }

    pub fn current(&self) -> &[u8] {
        &self.current
    }

    /// True if `check` accepts the current or the previous secret.
    pub fn any(&self, mut check: impl FnMut(&[u8]) -> bool) -> bool {
        check(&self.current) || self.previous.as_deref().is_some_and(check)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_a_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hmac_sha256_matches_a_known_vector() {
        // RFC 4231 test case 2.
        let mac = hmac(Alg::Sha256, b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(unhex(&hex(&mac)), Some(mac));
    }

    #[test]
    fn rotation_accepts_previous_secret_and_refuses_empty() {
        let pair = SecretPair::new("new", Some("old")).expect("pair");
        assert!(pair.any(|k| k == b"old"));
        assert!(pair.any(|k| k == b"new"));
        assert!(!pair.any(|k| k == b"other"));
        assert!(SecretPair::new("", None).is_err());
        assert!(!format!("{pair:?}").contains("new"));
    }
}
