//! The authentication part of the coordination port (DESIGN §5): accounts,
//! API tokens, the audit log and shared secrets. [`AuthStore`] is separate
//! from [`super::CoordStore`] so each backend (SQLite standalone, etcd in a
//! cluster: [`super::etcd::EtcdAuth`]) implements it on its own; job writes carry their audit entry through
//! [`super::CoordStore::apply_audited`] so both commit together.

use async_trait::async_trait;
use cronsun_proto::auth::{AuditEntry, AuditPage, AuditQuery, Permissions, Role};
use cronsun_proto::Job;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::Result;

/// A local account as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub user: String,
    /// PHC string (argon2id).
    pub password_hash: String,
    pub role: Role,
    pub groups: Vec<String>,
    pub permissions: Permissions,
    pub created_at: Timestamp,
    pub disabled: bool,
    /// Bumped by every password, role or status change: sessions signed with
    /// an older generation are refused (revocation without session state).
    pub generation: u64,
    /// The stored version, set by reads (etcd: the key's `mod_revision`;
    /// SQLite: a counter). A [`AccountWrite::Replace`] of an account read
    /// at revision r fails with [`super::StoreError::Stale`] when the stored
    /// one is no longer r (optimistic concurrency); 0 replaces whatever is
    /// stored. Not part of the stored body in etcd.
    #[serde(default)]
    pub revision: u64,
}

/// An API token as stored: only the SHA-256 of its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    pub id: String,
    pub name: String,
    /// Hex SHA-256 of the secret part.
    pub secret_sha256: String,
    pub role: Role,
    pub groups: Vec<String>,
    pub permissions: Permissions,
    pub created_by: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked: bool,
    /// Login tokens (`cronsun login`) act as this account with its current
    /// role, and end when its generation moves (password or rights change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default)]
    pub generation: u64,
}

/// How an account write relates to what is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountWrite {
    /// The account must not exist (`Exists` otherwise).
    Create,
    /// The account must exist (`NotFound` otherwise).
    Replace,
}

#[async_trait]
pub trait AuthStore: Send + Sync + 'static {
    async fn accounts(&self) -> Result<Vec<Account>>;
    async fn account(&self, user: &str) -> Result<Option<Account>>;
    /// Writes an account and, in the same transaction, its audit entry.
    async fn put_account(
        &self,
        account: Account,
        how: AccountWrite,
        audit: Option<AuditEntry>,
    ) -> Result<()>;
    /// Deletes an account (`NotFound` if absent) with its audit entry.
    async fn delete_account(&self, user: &str, audit: Option<AuditEntry>) -> Result<()>;
    async fn tokens(&self) -> Result<Vec<StoredToken>>;
    async fn token(&self, id: &str) -> Result<Option<StoredToken>>;
    /// Creates or replaces a token (revocation replaces it) with its audit entry.
    async fn put_token(&self, token: StoredToken, audit: Option<AuditEntry>) -> Result<()>;
    /// Appends an entry for an action that changes nothing stored here
    /// (run now, kill). The entry's `id` is assigned by the store.
    async fn append_audit(&self, entry: AuditEntry) -> Result<()>;
    async fn audit(&self, q: &AuditQuery) -> Result<AuditPage>;
    /// The stored secret `name`; stores `candidate` first when there is none
    /// (create-if-absent, so every node of a cluster agrees on one value).
    async fn shared_secret(&self, name: &str, candidate: &str) -> Result<String>;
}

/// One change of [`super::CoordStore::apply_audited`].
#[derive(Clone, Debug)]
pub enum CoordOp {
    PutJob(Box<Job>, super::Expect),
    DeleteJob(String, super::Expect),
    SetWatermark(String, Timestamp),
    SetGlobalPause(cronsun_proto::api::GlobalPause),
}

/// Writes a committed entry to the journal (who, how, from where, what;
/// before/after stay in the store).
pub fn journal(e: &AuditEntry) {
    tracing::info!(
        target: "cronsund::audit",
        actor = %e.actor,
        via = e.via.as_str(),
        from = %e.from,
        action = %e.action,
        target = %e.target,
        "audit"
    );
}

/// Completes an audit entry with the jobs a write stored, when the caller
/// left `after` empty: one job as itself, several as an object by id, with
/// secret env values redacted.
pub fn fill_after(entry: &mut AuditEntry, stored: &[Job]) {
    if entry.after.is_some() || stored.is_empty() {
        return;
    }
    let value = |j: &Job| serde_json::to_value(j.redacted()).unwrap_or_default();
    entry.after = Some(match stored {
        [one] => value(one),
        many => serde_json::Value::Object(many.iter().map(|j| (j.id.clone(), value(j))).collect()),
    });
}
