//! Stateless session cookies: `<payload>.<mac>` where the payload names the
//! user, the account generation, the expiry and a nonce, and the MAC is
//! HMAC-SHA256 under a key shared through the store. Validating a cookie
//! needs no store write; revocation is by bumping the account's generation
//! (password, role or status change). The CSRF token is an HMAC of the
//! cookie's nonce, so it is tied to the session and needs no state either.

use serde::{Deserialize, Serialize};

use super::crypto;

/// Cookie name (contract).
pub const COOKIE: &str = "cronsun_session";
/// Name of the signing key in the store's shared secrets.
pub const KEY_NAME: &str = "session-key";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User name.
    pub u: String,
    /// Account generation when the session began.
    pub g: u64,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Random per login; the CSRF token derives from it.
    pub n: String,
}

/// The session signing key. Clones share it: a cluster node that started
/// while etcd was unreachable signs with a temporary key and swaps in the
/// cluster's key when it can read it ([`SessionKey::replace`]).
#[derive(Clone)]
pub struct SessionKey(std::sync::Arc<std::sync::RwLock<Vec<u8>>>);

impl SessionKey {
    pub fn new(key: &[u8]) -> SessionKey {
        SessionKey(std::sync::Arc::new(std::sync::RwLock::new(key.to_vec())))
    }

    /// Makes every clone use `other`'s key from now on.
    pub fn replace(&self, other: &SessionKey) {
        let key = other.bytes();
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = key;
    }

    fn bytes(&self) -> Vec<u8> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn seal(&self, c: &Claims) -> String {
        let payload = crypto::b64(&serde_json::to_vec(c).unwrap_or_default());
        let mac = crypto::hmac(&self.bytes(), &[b"session", payload.as_bytes()]);
        format!("{payload}.{}", crypto::b64(&mac))
    }

    /// The claims of a cookie this key signed, expired or not.
    pub fn open(&self, cookie: &str) -> Option<Claims> {
        let (payload, mac) = cookie.split_once('.')?;
        let want = crypto::hmac(&self.bytes(), &[b"session", payload.as_bytes()]);
        if !crypto::same(&crypto::unb64(mac)?, &want) {
            return None;
        }
        serde_json::from_slice(&crypto::unb64(payload)?).ok()
    }

    pub fn csrf(&self, c: &Claims) -> String {
        crypto::b64(&crypto::hmac(&self.bytes(), &[b"csrf", c.n.as_bytes()]))
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// `Set-Cookie` for a new session (`Secure` when served over TLS).
pub fn set_cookie(value: &str, max_age_secs: u64, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", 0, secure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            u: "alice".into(),
            g: 3,
            exp: 1_900_000_000,
            n: "nonce".into(),
        }
    }

    #[test]
    fn sealed_cookies_open_only_with_their_key() {
        let k = SessionKey::new(b"key one");
        let c = k.seal(&claims());
        assert_eq!(k.open(&c), Some(claims()));
        assert_eq!(SessionKey::new(b"key two").open(&c), None);
        let (p, m) = c.split_once('.').expect("dot");
        let forged = format!(
            "{}.{m}",
            crypto::b64(br#"{"u":"root","g":3,"exp":1,"n":"x"}"#)
        );
        assert_eq!(k.open(&forged), None);
        assert_eq!(k.open(p), None);
        assert_eq!(k.open("garbage"), None);
    }

    #[test]
    fn a_replaced_key_applies_to_every_clone() {
        let temporary = SessionKey::new(b"temporary");
        let in_use = temporary.clone();
        let cluster = SessionKey::new(b"the cluster's");
        let from_another_node = cluster.seal(&claims());
        assert_eq!(in_use.open(&from_another_node), None);
        temporary.replace(&cluster);
        assert_eq!(in_use.open(&from_another_node), Some(claims()));
    }

    #[test]
    fn csrf_depends_on_the_session() {
        let k = SessionKey::new(b"k");
        let other = Claims {
            n: "other".into(),
            ..claims()
        };
        assert_ne!(k.csrf(&claims()), k.csrf(&other));
    }

    #[test]
    fn cookie_parsing_and_attributes() {
        assert_eq!(
            cookie_value("a=1; cronsun_session=xyz.abc; b=2", COOKIE),
            Some("xyz.abc")
        );
        assert_eq!(cookie_value("a=1", COOKIE), None);
        let s = set_cookie("v", 60, true);
        assert!(s.contains("HttpOnly") && s.contains("SameSite=Strict") && s.ends_with("Secure"));
        assert!(!set_cookie("v", 60, false).contains("Secure"));
    }
}
