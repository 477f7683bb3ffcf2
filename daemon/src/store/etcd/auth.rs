//! Accounts, API tokens, the session signing key and the audit log in etcd
//! ([`AuthStore`] of cluster mode), so every node (and the web leader after
//! a failover) sees the same ones (DESIGN §4, §5).
//!
//! Key layout under the prefix:
//! - `account/<user>`: the account as JSON (argon2id hash inside); its
//!   revision is the key's `mod_revision`, so a replace compares it
//!   (optimistic concurrency: a write from an older read is refused);
//! - `token/<id>`: an API token (only the SHA-256 of its secret);
//! - `session/key` (and `session/<name>` for other shared secrets): written
//!   create-if-absent, so every node signs and checks cookies with one key;
//! - `audit/<inverted time>-<nonce>`: one entry; the time part is
//!   `u64::MAX - nanoseconds` as 20 digits, so ascending key order is newest
//!   first and a page is one range read with a limit (etcd sorts descending
//!   only after reading the whole range). An entry is written in the same
//!   transaction as the change it describes. Its API id is
//!   `<YYYYMMDDTHHMMSS.nnnnnnnnnZ>-<nonce>` (time-ordered, mapped back to
//!   the key for cursors).
//!
//! Audit entries are bounded: one entry's JSON is at most
//! [`AUDIT_MAX_BYTES`] (larger before/after values are replaced by a
//! summary), and the web leader deletes entries older than
//! [`AUDIT_MAX_AGE`] or beyond the newest [`AUDIT_KEEP`] ([`EtcdAuth::retain`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cronsun_proto::auth::{AuditEntry, AuditPage, AuditQuery};
use etcd_client::{Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp};
use jiff::Timestamp;
use rand::RngExt;
use serde_json::Value;
use tokio::sync::watch;
use tracing::{info, warn};

use super::keys::{instant_key, parse_instant_key, Keys};
use super::{gets, rev, Etcd};
use crate::store::auth::journal;
use crate::store::{Account, AccountWrite, AuthStore, Result, StoreError, StoredToken};

/// Largest JSON of one audit entry (etcd requests are limited to 1.5 MiB).
pub const AUDIT_MAX_BYTES: usize = 64 * 1024;
/// Audit entries kept at most (the newest).
pub const AUDIT_KEEP: usize = 20_000;
/// Audit entries older than this are deleted.
pub const AUDIT_MAX_AGE: Duration = Duration::from_secs(180 * 24 * 3600);
/// How often the web leader applies audit retention.
pub const AUDIT_RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// Entries per audit page when the query names no limit.
const DEFAULT_AUDIT_PAGE: u32 = 100;
/// Keys read per range request while filtering the audit log.
const AUDIT_SCAN: i64 = 500;
/// Name of the session signing key among the shared secrets
/// (`crate::api::auth::session::KEY_NAME`), stored as `session/key`.
const SESSION_KEY_NAME: &str = "session-key";

fn backend(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("{what}: {e}"))
}

impl Keys {
    pub fn accounts(&self) -> String {
        self.key(&["account/"])
    }
    pub fn account(&self, user: &str) -> String {
        self.key(&["account/", user])
    }
    pub fn tokens(&self) -> String {
        self.key(&["token/"])
    }
    pub fn token(&self, id: &str) -> String {
        self.key(&["token/", id])
    }
    /// A shared secret: the session signing key is `session/key`.
    pub fn secret(&self, name: &str) -> String {
        let name = if name == SESSION_KEY_NAME {
            "key"
        } else {
            name
        };
        self.key(&["session/", name])
    }
    pub fn audits(&self) -> String {
        self.key(&["audit/"])
    }
    /// The key of the entry with API id `id`, if `id` is one.
    pub fn audit(&self, id: &str) -> Option<String> {
        Some(self.key(&["audit/", &audit_suffix(id)?]))
    }
}

/// The first key after every key starting with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1; // prefixes end in '/'
    }
    end
}

/// `u64::MAX - ns` as 20 digits: byte order is reverse time order.
fn inverted(t: Timestamp) -> String {
    let ns = u64::try_from(t.as_nanosecond().max(0)).unwrap_or(u64::MAX);
    format!("{:020}", u64::MAX - ns)
}

/// An entry's API id: its time and a random nonce.
pub fn audit_id(at: Timestamp, nonce: &str) -> String {
    format!("{}-{nonce}", instant_key(at))
}

/// The key suffix (after `audit/`) of API id `id`.
fn audit_suffix(id: &str) -> Option<String> {
    let (time, nonce) = id.split_once('-')?;
    if nonce.is_empty() || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(format!("{}-{nonce}", inverted(parse_instant_key(time)?)))
}

/// The API id of a key suffix (inverse of [`audit_suffix`]).
fn id_of_suffix(suffix: &str) -> Option<String> {
    let (inv, nonce) = suffix.split_once('-')?;
    let inv: u64 = inv.parse().ok().filter(|_| inv.len() == 20)?;
    let at = Timestamp::from_nanosecond(i128::from(u64::MAX - inv)).ok()?;
    Some(audit_id(at, nonce))
}

/// A summary standing in for a before/after value too large to keep.
fn summary(v: &Value) -> Value {
    let mut s = serde_json::json!({ "truncated": true });
    if let Value::Object(o) = v {
        s["keys"] = Value::from(o.keys().cloned().collect::<Vec<_>>());
    }
    s
}

/// An entry's stored JSON (without its id), at most [`AUDIT_MAX_BYTES`]:
/// larger before/after values are replaced by a summary naming their keys
/// (for a batch: the job ids).
pub fn encode_entry(entry: &AuditEntry) -> Result<String> {
    let mut e = entry.clone();
    e.id = String::new();
    let body = serde_json::to_string(&e).map_err(|er| backend("encode audit entry", er))?;
    if body.len() <= AUDIT_MAX_BYTES {
        return Ok(body);
    }
    e.before = e.before.as_ref().map(summary);
    e.after = e.after.as_ref().map(summary);
    serde_json::to_string(&e).map_err(|er| backend("encode audit entry", er))
}

/// Sets `revision: 0` (a job whose revision was not known when the entry
/// was written: it is the revision of the entry's own transaction) at the
/// top level or one level down (a batch by job id).
fn fill_revisions(v: &mut Value, revision: u64) {
    let fill = |o: &mut serde_json::Map<String, Value>| {
        if o.get("revision") == Some(&Value::from(0)) {
            o.insert("revision".into(), Value::from(revision));
            true
        } else {
            false
        }
    };
    if let Value::Object(o) = v {
        if !fill(o) {
            for inner in o.values_mut() {
                if let Value::Object(i) = inner {
                    fill(i);
                }
            }
        }
    }
}

/// The entry stored at `kv` (its id from the key), or why not.
fn decode_entry(keys: &Keys, kv: &KeyValue) -> Result<AuditEntry> {
    let key = String::from_utf8_lossy(kv.key()).into_owned();
    let id = keys
        .id_in("audit/", kv.key())
        .and_then(id_of_suffix)
        .ok_or_else(|| StoreError::Backend(format!("audit key {key} is not an entry's key")))?;
    let mut e: AuditEntry = serde_json::from_slice(kv.value())
        .map_err(|er| backend(&format!("stored audit entry {key} is unreadable"), er))?;
    e.id = id;
    if let Some(after) = e.after.as_mut() {
        fill_revisions(after, u64::try_from(kv.create_revision()).unwrap_or(0));
    }
    Ok(e)
}

/// The put of a new audit entry (for the caller's transaction).
pub fn audit_put(keys: &Keys, entry: &AuditEntry) -> Result<TxnOp> {
    let mut nonce = [0u8; 4];
    rand::rng().fill(&mut nonce[..]);
    let id = audit_id(entry.at, &hex::encode(nonce));
    let key = keys
        .audit(&id)
        .ok_or_else(|| StoreError::Backend(format!("no audit key for id {id:?}")))?;
    Ok(TxnOp::put(key, encode_entry(entry)?, None))
}

fn matches(q: &AuditQuery, e: &AuditEntry) -> bool {
    q.actor.as_ref().is_none_or(|a| *a == e.actor)
        && q.action.as_ref().is_none_or(|a| *a == e.action)
        && q.target.as_ref().is_none_or(|t| *t == e.target)
}

/// The key range `[start, end)` a query reads (newest first).
fn audit_range(keys: &Keys, q: &AuditQuery) -> Result<(Vec<u8>, Vec<u8>)> {
    let base = keys.audits();
    let mut start = base.clone().into_bytes();
    let mut end = prefix_end(&base);
    // at < until: keys after every key of the instant `until` ('.' > '-').
    if let Some(t) = q.until {
        start = start.max(format!("{base}{}.", inverted(t)).into_bytes());
    }
    // at >= since: keys up to and including the instant `since`.
    if let Some(t) = q.since {
        end = end.min(format!("{base}{}.", inverted(t)).into_bytes());
    }
    if let Some(c) = &q.cursor {
        let mut after = keys.audit(c).ok_or(StoreError::BadCursor)?.into_bytes();
        after.push(0);
        start = start.max(after);
    }
    Ok((start, end))
}

/// The coordination port's accounts, tokens, secrets and audit log on etcd.
pub struct EtcdAuth {
    etcd: Etcd,
    keys: Keys,
}

impl EtcdAuth {
    pub fn new(etcd: Etcd, keys: Keys) -> EtcdAuth {
        EtcdAuth { etcd, keys }
    }

    async fn get(&self, what: &str, key: String) -> Result<Option<KeyValue>> {
        let mut kv = self.etcd.client.kv_client();
        let resp = self.etcd.call(what, kv.get(key, None)).await?;
        Ok(resp.kvs().first().cloned())
    }

    async fn list(&self, what: &str, prefix: String) -> Result<Vec<KeyValue>> {
        let mut kv = self.etcd.client.kv_client();
        let resp = self
            .etcd
            .call(what, kv.get(prefix, Some(GetOptions::new().with_prefix())))
            .await?;
        Ok(resp.kvs().to_vec())
    }

    /// Runs a transaction of `compares` → `ops` plus the audit entry;
    /// returns whether it applied, and journals the entry when it did.
    async fn txn(
        &self,
        what: &str,
        compares: Vec<Compare>,
        mut ops: Vec<TxnOp>,
        audit: Option<&AuditEntry>,
        otherwise: Vec<TxnOp>,
    ) -> Result<etcd_client::TxnResponse> {
        if let Some(e) = audit {
            ops.push(audit_put(&self.keys, e)?);
        }
        let mut kv = self.etcd.client.kv_client();
        let t = Txn::new().when(compares).and_then(ops).or_else(otherwise);
        let resp = self.etcd.call(what, kv.txn(t)).await?;
        if resp.succeeded() {
            audit.into_iter().for_each(journal);
        }
        Ok(resp)
    }

    /// Deletes audit entries older than `max_age` before `now`, then all
    /// but the newest `keep` (at least 1); returns how many. Two range
    /// deletes and two reads (the second of at most `keep` keys, no values).
    pub async fn retain(&self, keep: usize, max_age: Duration, now: Timestamp) -> Result<u64> {
        let base = self.keys.audits();
        let mut kv = self.etcd.client.kv_client();
        let mut deleted = 0;
        let cutoff = jiff::SignedDuration::try_from(max_age)
            .ok()
            .and_then(|a| now.checked_sub(a).ok());
        if let Some(cutoff) = cutoff {
            // Entries at or before the cutoff: keys from its inverted time on.
            let start = format!("{base}{}", inverted(cutoff));
            let resp = self
                .etcd
                .call(
                    "delete old audit entries",
                    kv.delete(
                        start,
                        Some(etcd_client::DeleteOptions::new().with_range(prefix_end(&base))),
                    ),
                )
                .await?;
            deleted += u64::try_from(resp.deleted()).unwrap_or(0);
        }
        // The newest `keep` keys; everything after the last one goes (a
        // limit of 0 would mean no limit to etcd: keep at least one).
        let keep = i64::try_from(keep.max(1)).unwrap_or(i64::MAX);
        let resp = self
            .etcd
            .call(
                "count audit entries",
                kv.get(
                    base.as_str(),
                    Some(GetOptions::new().with_prefix().with_count_only()),
                ),
            )
            .await?;
        if resp.count() <= keep {
            return Ok(deleted);
        }
        let resp = self
            .etcd
            .call(
                "read audit keys",
                kv.get(
                    base.as_str(),
                    Some(
                        GetOptions::new()
                            .with_prefix()
                            .with_keys_only()
                            .with_limit(keep),
                    ),
                ),
            )
            .await?;
        let Some(last) = resp.kvs().last() else {
            return Ok(deleted);
        };
        let mut from = last.key().to_vec();
        from.push(0);
        let resp = self
            .etcd
            .call(
                "delete audit entries beyond the newest",
                kv.delete(
                    from,
                    Some(etcd_client::DeleteOptions::new().with_range(prefix_end(&base))),
                ),
            )
            .await?;
        Ok(deleted + u64::try_from(resp.deleted()).unwrap_or(0))
    }

    /// Applies audit retention every [`AUDIT_RETENTION_EVERY`] while
    /// `is_leader` says this node is the web leader (a leader-only duty).
    pub async fn retention_loop(
        self: Arc<Self>,
        is_leader: impl Fn() -> bool + Send + 'static,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            if is_leader() {
                match self
                    .retain(AUDIT_KEEP, AUDIT_MAX_AGE, Timestamp::now())
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => info!(deleted = n, "audit retention removed old entries from etcd"),
                    Err(e) => warn!("audit retention failed: {e}"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(AUDIT_RETENTION_EVERY) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, kv: &KeyValue) -> Result<T> {
    serde_json::from_slice(kv.value()).map_err(|e| {
        backend(
            &format!(
                "stored {what} {} is unreadable",
                String::from_utf8_lossy(kv.key())
            ),
            e,
        )
    })
}

fn account_of(kv: &KeyValue) -> Result<Account> {
    let mut a: Account = decode("account", kv)?;
    a.revision = u64::try_from(kv.mod_revision()).unwrap_or(0);
    Ok(a)
}

fn encode<T: serde::Serialize>(what: &str, v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| backend(&format!("encode {what}"), e))
}

#[async_trait]
impl AuthStore for EtcdAuth {
    async fn accounts(&self) -> Result<Vec<Account>> {
        self.list("list accounts", self.keys.accounts())
            .await?
            .iter()
            .map(account_of)
            .collect()
    }

    async fn account(&self, user: &str) -> Result<Option<Account>> {
        self.get("read account", self.keys.account(user))
            .await?
            .as_ref()
            .map(account_of)
            .transpose()
    }

    /// Create: if absent. Replace: if present and, when the account names
    /// a revision, still at it.
    async fn put_account(
        &self,
        account: Account,
        how: AccountWrite,
        audit: Option<AuditEntry>,
    ) -> Result<()> {
        let key = self.keys.account(&account.user);
        let compare = match how {
            AccountWrite::Create => Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
            AccountWrite::Replace if account.revision != 0 => {
                Compare::mod_revision(key.as_str(), CompareOp::Equal, rev(account.revision))
            }
            AccountWrite::Replace => Compare::create_revision(key.as_str(), CompareOp::Greater, 0),
        };
        let body = encode(
            "account",
            &Account {
                revision: 0, // the key's mod_revision is the revision
                ..account.clone()
            },
        )?;
        let resp = self
            .txn(
                "write account",
                vec![compare],
                vec![TxnOp::put(key.as_str(), body, None)],
                audit.as_ref(),
                vec![TxnOp::get(key.as_str(), None)],
            )
            .await?;
        if resp.succeeded() {
            return Ok(());
        }
        let what = format!("account {:?}", account.user);
        match (how, gets(&resp).into_iter().flatten().next()) {
            (AccountWrite::Create, _) => Err(StoreError::Exists(what)),
            (AccountWrite::Replace, None) => Err(StoreError::NotFound(what)),
            (AccountWrite::Replace, Some(kv)) => Err(StoreError::Stale {
                what,
                current: u64::try_from(kv.mod_revision()).unwrap_or(0),
            }),
        }
    }

    async fn delete_account(&self, user: &str, audit: Option<AuditEntry>) -> Result<()> {
        let key = self.keys.account(user);
        let resp = self
            .txn(
                "delete account",
                vec![Compare::create_revision(
                    key.as_str(),
                    CompareOp::Greater,
                    0,
                )],
                vec![TxnOp::delete(key.as_str(), None)],
                audit.as_ref(),
                vec![],
            )
            .await?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!("account {user:?}")))
        }
    }

    async fn tokens(&self) -> Result<Vec<StoredToken>> {
        self.list("list tokens", self.keys.tokens())
            .await?
            .iter()
            .map(|kv| decode("token", kv))
            .collect()
    }

    async fn token(&self, id: &str) -> Result<Option<StoredToken>> {
        self.get("read token", self.keys.token(id))
            .await?
            .as_ref()
            .map(|kv| decode("token", kv))
            .transpose()
    }

    async fn put_token(&self, token: StoredToken, audit: Option<AuditEntry>) -> Result<()> {
        let body = encode("token", &token)?;
        self.txn(
            "write token",
            vec![],
            vec![TxnOp::put(self.keys.token(&token.id), body, None)],
            audit.as_ref(),
            vec![],
        )
        .await?;
        Ok(())
    }

    async fn append_audit(&self, entry: AuditEntry) -> Result<()> {
        self.txn("append audit entry", vec![], vec![], Some(&entry), vec![])
            .await?;
        Ok(())
    }

    /// Newest first: range reads of [`AUDIT_SCAN`] keys from the query's
    /// start, filtered here, until the page (plus one, for the cursor) is
    /// full or the range is exhausted. Bounded by retention.
    async fn audit(&self, q: &AuditQuery) -> Result<AuditPage> {
        let limit = q.limit.unwrap_or(DEFAULT_AUDIT_PAGE).clamp(1, 1000) as usize;
        let (mut start, end) = audit_range(&self.keys, q)?;
        let mut entries = Vec::new();
        let mut kv = self.etcd.client.kv_client();
        let max_reads = AUDIT_KEEP / AUDIT_SCAN as usize + 2;
        for _ in 0..max_reads {
            if start >= end || entries.len() > limit {
                break;
            }
            let want = if q.actor.is_none() && q.action.is_none() && q.target.is_none() {
                (limit + 1 - entries.len()) as i64
            } else {
                AUDIT_SCAN
            };
            let resp = self
                .etcd
                .call(
                    "read audit entries",
                    kv.get(
                        start.clone(),
                        Some(GetOptions::new().with_range(end.clone()).with_limit(want)),
                    ),
                )
                .await?;
            for item in resp.kvs() {
                match decode_entry(&self.keys, item) {
                    Ok(e) if matches(q, &e) && entries.len() <= limit => entries.push(e),
                    Ok(_) => {}
                    Err(e) => warn!("skipping an audit entry: {e}"),
                }
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => break,
            }
        }
        Ok(AuditPage::from_overfetch(entries, limit))
    }

    /// Read first (a node whose etcd role may only read `session/` gets
    /// the key once any node created it), then create-if-absent.
    async fn shared_secret(&self, name: &str, candidate: &str) -> Result<String> {
        let key = self.keys.secret(name);
        if let Some(kv) = self.get("read secret", key.clone()).await? {
            return Ok(String::from_utf8_lossy(kv.value()).into_owned());
        }
        let resp = self
            .txn(
                "store secret",
                vec![Compare::create_revision(key.as_str(), CompareOp::Equal, 0)],
                vec![TxnOp::put(key.as_str(), candidate, None)],
                None,
                vec![TxnOp::get(key.as_str(), None)],
            )
            .await?;
        if resp.succeeded() {
            return Ok(candidate.to_string());
        }
        gets(&resp)
            .into_iter()
            .flatten()
            .next()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
            .ok_or_else(|| StoreError::Backend(format!("secret {key} vanished")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cronsun_proto::auth::Via;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn entry(at: &str) -> AuditEntry {
        AuditEntry {
            id: "ignored".into(),
            at: ts(at),
            actor: "alice".into(),
            via: Via::Token,
            from: "127.0.0.1".into(),
            action: "job.update".into(),
            target: "j".into(),
            before: None,
            after: None,
        }
    }

    #[test]
    fn key_layout() {
        let k = Keys::new("/c/");
        assert_eq!(k.account("bob"), "/c/account/bob");
        assert_eq!(k.token("ab12"), "/c/token/ab12");
        assert_eq!(k.secret(SESSION_KEY_NAME), "/c/session/key");
        assert_eq!(k.secret("other"), "/c/session/other");
        assert_eq!(k.audits(), "/c/audit/");
        assert_eq!(prefix_end("/c/audit/"), b"/c/audit0".to_vec());
        let id = audit_id(ts("2026-03-25T03:00:00.5Z"), "0a0b0c0d");
        assert_eq!(id, "20260325T030000.500000000Z-0a0b0c0d");
        let key = k.audit(&id).expect("key");
        assert!(key.starts_with("/c/audit/"), "{key}");
        let suffix = k.id_in("audit/", key.as_bytes()).expect("suffix");
        assert_eq!(suffix.len(), 20 + 1 + 8);
        assert_eq!(id_of_suffix(suffix), Some(id));
        // Not ids: cursors from elsewhere are refused, not misread.
        for bad in [
            "",
            "12",
            "x-ab",
            "20260325T030000.500000000Z-",
            "20260325T030000.500000000Z-zz",
        ] {
            assert_eq!(k.audit(bad), None, "{bad:?}");
        }
        assert_eq!(id_of_suffix("123-ab"), None);
    }

    #[test]
    fn audit_keys_order_newest_first() {
        let k = Keys::new("/c/");
        let older = k
            .audit(&audit_id(ts("2026-01-01T00:00:00Z"), "ff"))
            .expect("k");
        let newer = k
            .audit(&audit_id(ts("2026-01-01T00:00:00.000000001Z"), "00"))
            .expect("k");
        assert!(newer < older);
        // Until/since bounds: an entry exactly at `until` is outside,
        // one exactly at `since` inside.
        let at = ts("2026-01-01T00:00:00Z");
        let q = AuditQuery {
            since: Some(at),
            until: Some(at + jiff::SignedDuration::from_secs(1)),
            ..Default::default()
        };
        let (start, end) = audit_range(&k, &q).expect("range");
        let inside =
            |key: &str| start.as_slice() <= key.as_bytes() && key.as_bytes() < end.as_slice();
        assert!(inside(&older), "an entry at since is in");
        let at_until = k
            .audit(&audit_id(at + jiff::SignedDuration::from_secs(1), "00"))
            .expect("k");
        assert!(!inside(&at_until), "an entry at until is out");
        let before = k
            .audit(&audit_id(at - jiff::SignedDuration::from_nanos(1), "ff"))
            .expect("k");
        assert!(!inside(&before));
        // A cursor starts after its own entry.
        let cursor = audit_id(ts("2026-01-01T00:00:00.000000001Z"), "00");
        let (start, _) = audit_range(
            &k,
            &AuditQuery {
                cursor: Some(cursor),
                ..Default::default()
            },
        )
        .expect("range");
        assert!(start.as_slice() > newer.as_bytes());
        assert!(start.as_slice() <= older.as_bytes());
        assert!(matches!(
            audit_range(
                &k,
                &AuditQuery {
                    cursor: Some("7".into()),
                    ..Default::default()
                }
            ),
            Err(StoreError::BadCursor)
        ));
    }

    #[test]
    fn entries_are_small_and_keep_what_fits() {
        let mut e = entry("2026-01-01T00:00:00Z");
        e.after = Some(serde_json::json!({"id": "j", "revision": 0}));
        let body = encode_entry(&e).expect("encode");
        let back: AuditEntry = serde_json::from_str(&body).expect("decode");
        assert_eq!(back.id, "", "the id comes from the key");
        assert_eq!(back.after, e.after);
        let big: serde_json::Map<String, Value> = (0..100)
            .map(|i| (format!("job{i}"), Value::from("x".repeat(1000))))
            .collect();
        e.before = Some(Value::Object(big));
        let body = encode_entry(&e).expect("encode");
        assert!(body.len() <= AUDIT_MAX_BYTES, "{}", body.len());
        let back: AuditEntry = serde_json::from_str(&body).expect("decode");
        let before = back.before.expect("summary");
        assert_eq!(before["truncated"], true);
        assert_eq!(before["keys"].as_array().map(Vec::len), Some(100));
    }

    #[test]
    fn job_revisions_are_filled_from_the_transaction() {
        let mut one = serde_json::json!({"id": "a", "revision": 0});
        fill_revisions(&mut one, 42);
        assert_eq!(one["revision"], 42);
        let mut batch = serde_json::json!({"a": {"revision": 0}, "b": {"revision": 7}});
        fill_revisions(&mut batch, 42);
        assert_eq!(batch["a"]["revision"], 42);
        assert_eq!(batch["b"]["revision"], 7, "a known revision stays");
        let mut account = serde_json::json!({"user": "bob"});
        fill_revisions(&mut account, 42);
        assert_eq!(account, serde_json::json!({"user": "bob"}));
    }

    #[test]
    fn filters() {
        let e = entry("2026-01-01T00:00:00Z");
        assert!(matches(&AuditQuery::default(), &e));
        let q = AuditQuery {
            action: Some("job.update".into()),
            actor: Some("alice".into()),
            ..Default::default()
        };
        assert!(matches(&q, &e));
        let q = AuditQuery {
            target: Some("other".into()),
            ..Default::default()
        };
        assert!(!matches(&q, &e));
    }
}
