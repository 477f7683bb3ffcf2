//! Password hashing with argon2id (the `argon2` crate's defaults: 19 MiB,
//! 2 passes), run on the blocking pool so logins never stall the runtime.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Shortest accepted password.
pub const MIN_LEN: usize = 8;
/// Longest accepted password (hashing cost grows with length).
pub const MAX_LEN: usize = 1024;

/// Why a new password is refused.
pub fn check_new(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(format!("must be at least {MIN_LEN} characters"));
    }
    if password.len() > MAX_LEN {
        return Err(format!("must be at most {MAX_LEN} bytes"));
    }
    Ok(())
}

fn hash_blocking(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    rand::RngExt::fill(&mut rand::rng(), &mut salt[..]);
    let salt = SaltString::encode_b64(&salt).map_err(|e| format!("salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hash password: {e}"))
}

fn verify_blocking(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// The PHC string of `password` (argon2id, random salt).
pub async fn hash(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|e| format!("hash password: {e}"))?
}

/// Whether `password` matches `phc`. With no stored hash (unknown user) a
/// dummy hash is checked, so both cases take the same time.
pub async fn verify(password: String, phc: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || match phc {
        Some(p) => verify_blocking(&password, &p),
        None => {
            let _ = verify_blocking(&password, dummy());
            false
        }
    })
    .await
    .unwrap_or(false)
}

fn dummy() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_blocking("not a password").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash("correct horse".into()).await.expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse".into(), Some(h.clone())).await);
        assert!(!verify("wrong horse".into(), Some(h)).await);
        assert!(!verify("x".into(), None).await);
        assert!(!verify("x".into(), Some("garbage".into())).await);
        assert!(check_new("short").is_err());
        assert!(check_new("long enough").is_ok());
    }
}
