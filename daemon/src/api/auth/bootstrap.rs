//! First start (DESIGN §5): the session signing key and the `admin`
//! account, whose random password goes to `<state_dir>/initial-admin-password`
//! (mode 0600). The journal gets the path, never the password; the file is
//! written only when the account is created, so later starts leave it alone.

use std::path::{Path, PathBuf};

use cronsun_proto::auth::{AuditEntry, AuditQuery, Permissions, Role, Via};
use jiff::Timestamp;

use super::{crypto, password, session};
use crate::store::{Account, AccountWrite, AuthStore, StoreError};

/// File holding the first admin password.
pub const PASSWORD_FILE: &str = "initial-admin-password";
/// Name of the first account.
pub const ADMIN_USER: &str = "admin";

/// The session key shared through the store (created at first start).
pub async fn session_key(store: &dyn AuthStore) -> anyhow::Result<session::SessionKey> {
    let candidate = crypto::random_b64(32);
    let key = store
        .shared_secret(session::KEY_NAME, &candidate)
        .await
        .map_err(|e| anyhow::anyhow!("cannot load the session key: {e}"))?;
    Ok(session::SessionKey::new(key.as_bytes()))
}

/// The session key and the first admin account. With `node` (cluster
/// mode) the account's creation is audited as done by that node, and a
/// node that finds it created says which node did.
pub async fn bootstrap(
    store: &dyn AuthStore,
    state_dir: &Path,
    node: Option<&str>,
) -> anyhow::Result<session::SessionKey> {
    let key = session_key(store).await?;
    let audit = node.map(|n| bootstrap_entry(n, Timestamp::now()));
    match ensure_admin(store, state_dir, audit).await? {
        Some(path) => {
            tracing::info!(path = %path.display(), "created account admin; its password is in this file (mode 0600)");
        }
        None if node.is_some() => {
            let by = bootstrapped_by(store)
                .await
                .unwrap_or_else(|| "another node".into());
            tracing::info!(bootstrapped_by = %by, "the cluster has its accounts; account admin's {PASSWORD_FILE} is in the state dir of the node that created it");
        }
        None => {}
    }
    Ok(key)
}

/// [`bootstrap`]; a cluster node (`node`) that cannot reach etcd yet gets
/// a temporary session key instead and a task (returned) that retries every
/// 2 s until it swaps in the cluster's key, or `stop`.
pub async fn bootstrap_or_later(
    store: std::sync::Arc<dyn AuthStore>,
    state_dir: &Path,
    node: Option<&str>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(session::SessionKey, Vec<tokio::task::JoinHandle<()>>)> {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(2);
    let e = match (bootstrap(store.as_ref(), state_dir, node).await, node) {
        (Ok(key), _) => return Ok((key, Vec::new())),
        (Err(e), None) => return Err(e),
        (Err(e), Some(_)) => e,
    };
    tracing::warn!(
        "{e}; retrying in the background (until then, sessions are signed with a temporary key)"
    );
    let key = session::SessionKey::new(crypto::random_b64(32).as_bytes());
    let (shared, state_dir, node) = (
        key.clone(),
        state_dir.to_path_buf(),
        node.map(str::to_string),
    );
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            match bootstrap(store.as_ref(), &state_dir, node.as_deref()).await {
                Ok(k) => {
                    shared.replace(&k);
                    tracing::info!("loaded the cluster's session key");
                    return;
                }
                Err(e) => tracing::warn!("{e}; retrying"),
            }
        }
    });
    Ok((key, vec![task]))
}

/// Audit action of the first admin account's creation by a cluster node.
pub const BOOTSTRAP_ACTION: &str = "account.bootstrap";

/// The audit entry of a cluster node creating the first admin account
/// (`from` names the node, so the others can say which one did).
pub fn bootstrap_entry(node: &str, at: Timestamp) -> AuditEntry {
    AuditEntry {
        id: String::new(),
        at,
        actor: "cronsund".into(),
        via: Via::Socket,
        from: node.into(),
        action: BOOTSTRAP_ACTION.into(),
        target: ADMIN_USER.into(),
        before: None,
        after: None,
    }
}

/// The node named by the newest bootstrap audit entry, if any is kept.
pub async fn bootstrapped_by(store: &dyn AuthStore) -> Option<String> {
    let q = AuditQuery {
        action: Some(BOOTSTRAP_ACTION.into()),
        limit: Some(1),
        ..Default::default()
    };
    let page = store.audit(&q).await.ok()?;
    page.entries.into_iter().next().map(|e| e.from)
}

/// Creates `admin` with a random password when the store has no account
/// yet (with `audit`, if given, in the same write); returns the password
/// file's path when it did. In a cluster the creation is create-if-absent:
/// exactly one node writes the file.
pub async fn ensure_admin(
    store: &dyn AuthStore,
    state_dir: &Path,
    audit: Option<AuditEntry>,
) -> anyhow::Result<Option<PathBuf>> {
    if !store
        .accounts()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read accounts: {e}"))?
        .is_empty()
    {
        return Ok(None);
    }
    let secret = crypto::random_b64(18);
    let hash = password::hash(secret.clone())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let account = Account {
        user: ADMIN_USER.into(),
        password_hash: hash,
        role: Role::Admin,
        groups: vec![],
        permissions: Permissions {
            read_output: true,
            privileged_run_as: true,
        },
        created_at: Timestamp::now(),
        disabled: false,
        generation: 1,
        revision: 0,
    };
    match store
        .put_account(account, AccountWrite::Create, audit)
        .await
    {
        Ok(()) => {}
        // Another node of a cluster won the bootstrap.
        Err(StoreError::Exists(_)) => return Ok(None),
        Err(e) => return Err(anyhow::anyhow!("cannot create the admin account: {e}")),
    }
    let path = state_dir.join(PASSWORD_FILE);
    // Readable only by its owner; a stale file is replaced.
    crate::node::replace_file(&path, format!("{secret}\n").as_bytes(), 0o600)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[tokio::test]
    async fn admin_is_created_once_with_a_private_password_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::SqliteStore::open(&dir.path().join("c.db")).expect("open");
        let path = ensure_admin(&store, dir.path(), None)
            .await
            .expect("bootstrap")
            .expect("created");
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let pw = std::fs::read_to_string(&path).expect("read");
        let admin = store
            .account(ADMIN_USER)
            .await
            .expect("get")
            .expect("admin");
        assert!(password::verify(pw.trim().to_string(), Some(admin.password_hash)).await);
        assert_eq!(
            ensure_admin(&store, dir.path(), None).await.expect("again"),
            None
        );
        assert_eq!(std::fs::read_to_string(&path).expect("read"), pw);
        let k1 = session_key(&store).await.expect("key");
        let k2 = session_key(&store).await.expect("key");
        let c = session::Claims {
            u: "a".into(),
            g: 1,
            exp: 1,
            n: "n".into(),
        };
        assert_eq!(k2.open(&k1.seal(&c)), Some(c));
    }
}

#[cfg(test)]
mod later_tests {
    use super::*;
    use crate::store::{Account, AccountWrite, Result, SqliteStore, StoredToken};
    use async_trait::async_trait;
    use cronsun_proto::auth::AuditPage;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// A store whose secrets are unreachable until `up` (etcd at start).
    struct Unreachable {
        inner: SqliteStore,
        up: AtomicBool,
    }

    #[async_trait]
    impl AuthStore for Unreachable {
        async fn accounts(&self) -> Result<Vec<Account>> {
            self.inner.accounts().await
        }
        async fn account(&self, user: &str) -> Result<Option<Account>> {
            self.inner.account(user).await
        }
        async fn put_account(
            &self,
            a: Account,
            how: AccountWrite,
            audit: Option<AuditEntry>,
        ) -> Result<()> {
            self.inner.put_account(a, how, audit).await
        }
        async fn delete_account(&self, user: &str, audit: Option<AuditEntry>) -> Result<()> {
            self.inner.delete_account(user, audit).await
        }
        async fn tokens(&self) -> Result<Vec<StoredToken>> {
            self.inner.tokens().await
        }
        async fn token(&self, id: &str) -> Result<Option<StoredToken>> {
            self.inner.token(id).await
        }
        async fn put_token(&self, t: StoredToken, audit: Option<AuditEntry>) -> Result<()> {
            self.inner.put_token(t, audit).await
        }
        async fn append_audit(&self, e: AuditEntry) -> Result<()> {
            self.inner.append_audit(e).await
        }
        async fn audit(&self, q: &AuditQuery) -> Result<AuditPage> {
            self.inner.audit(q).await
        }
        async fn shared_secret(&self, name: &str, candidate: &str) -> Result<String> {
            if !self.up.load(Ordering::SeqCst) {
                return Err(StoreError::Backend("etcd: no answer".into()));
            }
            self.inner.shared_secret(name, candidate).await
        }
    }

    #[tokio::test]
    async fn a_cluster_node_swaps_in_the_cluster_key_when_the_store_answers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = SqliteStore::open(&dir.path().join("c.db")).expect("open");
        let cluster = session_key(&inner).await.expect("the cluster's key");
        let store = Arc::new(Unreachable {
            inner,
            up: AtomicBool::new(false),
        });
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        // Standalone, an unreachable store is fatal.
        assert!(
            bootstrap_or_later(store.clone(), dir.path(), None, stop.clone())
                .await
                .is_err()
        );
        let (key, tasks) = bootstrap_or_later(store.clone(), dir.path(), Some("n1"), stop)
            .await
            .expect("a temporary key");
        let c = session::Claims {
            u: "a".into(),
            g: 1,
            exp: 1,
            n: "n".into(),
        };
        let cookie = cluster.seal(&c);
        assert_eq!(key.open(&cookie), None, "a temporary key");
        store.up.store(true, Ordering::SeqCst);
        for t in tasks {
            tokio::time::timeout(std::time::Duration::from_secs(10), t)
                .await
                .expect("the retry ends once the store answers")
                .expect("task");
        }
        assert_eq!(key.open(&cookie), Some(c), "the cluster's key, swapped in");
        assert!(store
            .inner
            .account(ADMIN_USER)
            .await
            .expect("get")
            .is_some());
        let _ = stop_tx.send(true);
    }
}
