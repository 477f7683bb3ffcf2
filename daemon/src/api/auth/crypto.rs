//! Small cryptographic helpers: random secrets, HMAC-SHA256 and constant-time
//! comparison, all as URL-safe base64 or hex strings.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use rand::RngExt;
use sha2::{Digest, Sha256};

type HmacSha256 = hmac::Hmac<Sha256>;

/// `n` random bytes as URL-safe base64 (no padding).
pub fn random_b64(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill(&mut bytes[..]);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill(&mut bytes[..]);
    hex::encode(bytes)
}

pub fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

pub fn unb64(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// HMAC-SHA256 of `parts` joined by NUL, under `key`.
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length: the error case cannot happen.
    let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(key) else {
        return [0u8; 32];
    };
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            mac.update(&[0]);
        }
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Equality that takes the same time wherever the inputs differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_depends_on_key_and_parts() {
        let a = hmac(b"k", &[b"a", b"b"]);
        assert_ne!(a, hmac(b"k2", &[b"a", b"b"]));
        assert_ne!(a, hmac(b"k", &[b"ab"]));
        assert!(same(&a, &hmac(b"k", &[b"a", b"b"])));
        assert_eq!(random_hex(8).len(), 16);
        assert!(unb64(&b64(b"xyz")).is_some_and(|v| v == b"xyz"));
    }
}
