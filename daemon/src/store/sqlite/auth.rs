//! Accounts, API tokens, the audit log and shared secrets in the SQLite
//! store ([`AuthStore`]), and audited job writes
//! ([`crate::store::CoordStore::apply_audited`]): every mutation and its
//! audit entry run in one writer request, hence one transaction.

use async_trait::async_trait;
use cronsun_proto::auth::{AuditEntry, AuditPage, AuditQuery};
use cronsun_proto::Job;
use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, ToSql};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::schema::backend;
use super::{jobs, to_ns, SqliteStore};
use crate::store::auth::fill_after;
pub(super) use crate::store::auth::journal;
use crate::store::{
    Account, AccountWrite, AuthStore, CoordOp, JobEvent, Result, StoreError, StoredToken,
};

/// Schema migration 3: the tables of this module.
pub(super) const MIGRATION: &str = r#"
    CREATE TABLE accounts (
        user TEXT PRIMARY KEY,
        body TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE api_tokens (
        id   TEXT PRIMARY KEY,
        body TEXT NOT NULL
    ) WITHOUT ROWID;
    -- Append-only; ids increase, so `id` orders entries newest first.
    CREATE TABLE audit (
        id     INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ns  INTEGER NOT NULL,
        actor  TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        body   TEXT NOT NULL
    );
    CREATE INDEX audit_by_actor  ON audit (actor, id);
    CREATE INDEX audit_by_target ON audit (target, id);
    CREATE TABLE shared_secrets (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
"#;

/// Entries per audit page when the query names no limit.
const DEFAULT_AUDIT_PAGE: u32 = 100;

fn encode<T: Serialize>(what: &str, v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("encode {what}: {e}")))
}

fn decode<T: DeserializeOwned>(what: &str, body: &str) -> Result<T> {
    serde_json::from_str(body)
        .map_err(|e| StoreError::Backend(format!("stored {what} is unreadable: {e}")))
}

/// Appends an audit entry in the caller's transaction; the store assigns its id.
fn insert_audit(conn: &Connection, mut e: AuditEntry) -> Result<()> {
    let at = to_ns(e.at)?;
    e.id = String::new();
    let body = encode("audit entry", &e)?;
    conn.prepare_cached(
        "INSERT INTO audit (at_ns, actor, action, target, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| s.execute(params![at, e.actor, e.action, e.target, body]))
    .map_err(backend("append audit entry"))?;
    Ok(())
}

fn get_body(conn: &Connection, sql: &str, key: &str, what: &'static str) -> Result<Option<String>> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
        .map_err(backend(what))
}

fn all_bodies(conn: &Connection, sql: &str, what: &'static str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(sql).map_err(backend(what))?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(backend(what))?;
    rows.map(|r| r.map_err(backend(what))).collect()
}

fn put_account(conn: &Connection, a: &Account, how: AccountWrite) -> Result<()> {
    let stored: Option<Account> = get_body(
        conn,
        "SELECT body FROM accounts WHERE user = ?1",
        &a.user,
        "read account",
    )?
    .map(|b| decode("account", &b))
    .transpose()?;
    let current = match (how, &stored) {
        (AccountWrite::Create, Some(_)) => {
            return Err(StoreError::Exists(format!("account {:?}", a.user)))
        }
        (AccountWrite::Replace, None) => {
            return Err(StoreError::NotFound(format!("account {:?}", a.user)))
        }
        (_, s) => s.as_ref().map_or(0, |s| s.revision),
    };
    if a.revision != 0 && a.revision != current {
        return Err(StoreError::Stale {
            what: format!("account {:?}", a.user),
            current,
        });
    }
    let body = encode(
        "account",
        &Account {
            revision: current + 1,
            ..a.clone()
        },
    )?;
    conn.prepare_cached(
        "INSERT INTO accounts (user, body) VALUES (?1, ?2)
         ON CONFLICT(user) DO UPDATE SET body = excluded.body",
    )
    .and_then(|mut s| s.execute([&a.user, &body]))
    .map_err(backend("write account"))?;
    Ok(())
}

fn audit_page(conn: &Connection, q: &AuditQuery) -> Result<AuditPage> {
    let limit = q.limit.unwrap_or(DEFAULT_AUDIT_PAGE).clamp(1, 1000);
    let mut sql = String::from("SELECT id, body FROM audit WHERE 1 = 1");
    let mut args: Vec<Box<dyn ToSql>> = Vec::new();
    let mut push = |cond: &str, v: Box<dyn ToSql>| {
        args.push(v);
        sql.push_str(&format!(" AND {cond} ?{}", args.len()));
    };
    if let Some(a) = &q.actor {
        push("actor =", Box::new(a.clone()));
    }
    if let Some(a) = &q.action {
        push("action =", Box::new(a.clone()));
    }
    if let Some(t) = &q.target {
        push("target =", Box::new(t.clone()));
    }
    if let Some(t) = q.since {
        push("at_ns >=", Box::new(to_ns(t)?));
    }
    if let Some(t) = q.until {
        push("at_ns <", Box::new(to_ns(t)?));
    }
    if let Some(c) = &q.cursor {
        let before: i64 = c.parse().map_err(|_| StoreError::BadCursor)?;
        push("id <", Box::new(before));
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", limit + 1));
    let mut stmt = conn.prepare(&sql).map_err(backend("search audit"))?;
    let refs: Vec<&dyn ToSql> = args.iter().map(|b| b.as_ref()).collect();
    let rows = stmt
        .query_map(refs.as_slice(), |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(backend("search audit"))?;
    let mut entries = Vec::new();
    for row in rows {
        let (id, body) = row.map_err(backend("search audit"))?;
        let mut e: AuditEntry = decode("audit entry", &body)?;
        e.id = id.to_string();
        entries.push(e);
    }
    Ok(AuditPage::from_overfetch(entries, limit as usize))
}

/// The job part of [`crate::store::CoordStore::apply_audited`].
pub(super) fn apply_ops(
    conn: &Connection,
    ops: Vec<CoordOp>,
    mut audit: AuditEntry,
    now: Timestamp,
) -> Result<(Vec<Job>, Vec<JobEvent>)> {
    let mut stored = Vec::new();
    let mut events = Vec::new();
    for op in ops {
        match op {
            CoordOp::PutJob(job, expect) => {
                let job = jobs::put_job(conn, *job, expect, now)?;
                events.push(JobEvent::Put(Box::new(job.clone())));
                stored.push(job);
            }
            CoordOp::DeleteJob(id, expect) => {
                jobs::delete_job(conn, &id, expect)?;
                events.push(JobEvent::Deleted(id));
            }
            CoordOp::SetWatermark(id, t) => jobs::set_watermark(conn, &id, t)?,
            CoordOp::SetGlobalPause(p) => jobs::set_global_pause(conn, &p)?,
        }
    }
    fill_after(&mut audit, &stored);
    insert_audit(conn, audit)?;
    Ok((stored, events))
}

impl SqliteStore {
    /// Runs `f` and appends `audit` (if any) in one writer transaction.
    async fn write_audited<T, F>(&self, audit: Option<AuditEntry>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let logged = audit.clone();
        let out = self
            .writer
            .run(move |c| {
                let out = f(c)?;
                if let Some(a) = audit {
                    insert_audit(c, a)?;
                }
                Ok((out, vec![]))
            })
            .await?;
        if let Some(e) = &logged {
            journal(e);
        }
        Ok(out)
    }
}

#[async_trait]
impl AuthStore for SqliteStore {
    async fn accounts(&self) -> Result<Vec<Account>> {
        self.read(|c| {
            all_bodies(
                c,
                "SELECT body FROM accounts ORDER BY user",
                "list accounts",
            )?
            .iter()
            .map(|b| decode("account", b))
            .collect()
        })
        .await
    }

    async fn account(&self, user: &str) -> Result<Option<Account>> {
        let user = user.to_owned();
        self.read(move |c| {
            get_body(
                c,
                "SELECT body FROM accounts WHERE user = ?1",
                &user,
                "read account",
            )?
            .map(|b| decode("account", &b))
            .transpose()
        })
        .await
    }

    async fn put_account(
        &self,
        account: Account,
        how: AccountWrite,
        audit: Option<AuditEntry>,
    ) -> Result<()> {
        self.write_audited(audit, move |c| put_account(c, &account, how))
            .await
    }

    async fn delete_account(&self, user: &str, audit: Option<AuditEntry>) -> Result<()> {
        let user = user.to_owned();
        self.write_audited(audit, move |c| {
            let n = c
                .prepare_cached("DELETE FROM accounts WHERE user = ?1")
                .and_then(|mut s| s.execute([&user]))
                .map_err(backend("delete account"))?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("account {user:?}")));
            }
            Ok(())
        })
        .await
    }

    async fn tokens(&self) -> Result<Vec<StoredToken>> {
        self.read(|c| {
            all_bodies(c, "SELECT body FROM api_tokens ORDER BY id", "list tokens")?
                .iter()
                .map(|b| decode("token", b))
                .collect()
        })
        .await
    }

    async fn token(&self, id: &str) -> Result<Option<StoredToken>> {
        let id = id.to_owned();
        self.read(move |c| {
            get_body(
                c,
                "SELECT body FROM api_tokens WHERE id = ?1",
                &id,
                "read token",
            )?
            .map(|b| decode("token", &b))
            .transpose()
        })
        .await
    }

    async fn put_token(&self, token: StoredToken, audit: Option<AuditEntry>) -> Result<()> {
        self.write_audited(audit, move |c| {
            let body = encode("token", &token)?;
            c.prepare_cached(
                "INSERT INTO api_tokens (id, body) VALUES (?1, ?2)
                 ON CONFLICT(id) DO UPDATE SET body = excluded.body",
            )
            .and_then(|mut s| s.execute([&token.id, &body]))
            .map_err(backend("write token"))?;
            Ok(())
        })
        .await
    }

    async fn append_audit(&self, entry: AuditEntry) -> Result<()> {
        self.write_audited(Some(entry), |_| Ok(())).await
    }

    async fn audit(&self, q: &AuditQuery) -> Result<AuditPage> {
        let q = q.clone();
        self.read(move |c| audit_page(c, &q)).await
    }

    async fn shared_secret(&self, name: &str, candidate: &str) -> Result<String> {
        let (name, candidate) = (name.to_owned(), candidate.to_owned());
        self.writer
            .run(move |c| {
                c.prepare_cached(
                    "INSERT INTO shared_secrets (name, value) VALUES (?1, ?2)
                     ON CONFLICT(name) DO NOTHING",
                )
                .and_then(|mut s| s.execute([&name, &candidate]))
                .map_err(backend("store secret"))?;
                let v = get_body(
                    c,
                    "SELECT value FROM shared_secrets WHERE name = ?1",
                    &name,
                    "read secret",
                )?
                .ok_or_else(|| StoreError::Backend(format!("secret {name:?} vanished")))?;
                Ok((v, vec![]))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CoordStore, Expect};
    use cronsun_proto::auth::{Permissions, Role, Via};

    fn entry(action: &str, target: &str) -> AuditEntry {
        AuditEntry {
            id: String::new(),
            at: Timestamp::from_second(1_800_000_000).expect("ts"),
            actor: "alice".into(),
            via: Via::Token,
            from: "127.0.0.1".into(),
            action: action.into(),
            target: target.into(),
            before: None,
            after: None,
        }
    }

    fn job(id: &str, secret: &str) -> Job {
        serde_json::from_value(serde_json::json!({
            "id": id, "command": ["true"], "rules": [{"schedule": "@hourly"}],
            "env": {"TOKEN": {"value": secret, "secret": true}, "PLAIN": "p"}
        }))
        .expect("job")
    }

    fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SqliteStore::open(&dir.path().join("c.db")).expect("open");
        (dir, s)
    }

    #[tokio::test]
    async fn job_write_and_audit_commit_together() {
        let (_d, s) = open();
        let now = Timestamp::from_second(1_800_000_000).expect("ts");
        let stored = s
            .apply_audited(
                vec![CoordOp::PutJob(
                    Box::new(job("a", "s3cret")),
                    Expect::Absent,
                )],
                entry("job.create", "a"),
                now,
            )
            .await
            .expect("create");
        assert_eq!(stored.len(), 1);
        // A refused write (exists) leaves no entry.
        let again = s
            .apply_audited(
                vec![CoordOp::PutJob(Box::new(job("a", "x")), Expect::Absent)],
                entry("job.create", "a"),
                now,
            )
            .await;
        assert!(matches!(again, Err(StoreError::Exists(_))), "{again:?}");
        let page = s.audit(&AuditQuery::default()).await.expect("audit");
        assert_eq!(page.entries.len(), 1, "{page:?}");
        let after = page.entries[0].after.clone().expect("after");
        let text = after.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert_eq!(after["env"]["TOKEN"], serde_json::json!({"secret": true}));
    }

    #[tokio::test]
    async fn audit_filters_and_pages() {
        let (_d, s) = open();
        for i in 0..5 {
            s.append_audit(entry("run.kill", &format!("r{i}")))
                .await
                .expect("append");
        }
        s.append_audit(entry("job.run", "j")).await.expect("append");
        let q = AuditQuery {
            action: Some("run.kill".into()),
            limit: Some(3),
            ..Default::default()
        };
        let p1 = s.audit(&q).await.expect("p1");
        assert_eq!(p1.entries.len(), 3);
        assert_eq!(p1.entries[0].target, "r4", "newest first");
        let p2 = s
            .audit(&AuditQuery {
                cursor: p1.next_cursor.clone(),
                ..q.clone()
            })
            .await
            .expect("p2");
        assert_eq!(p2.entries.len(), 2);
        assert!(p2.next_cursor.is_none());
        let bad = s
            .audit(&AuditQuery {
                cursor: Some("x".into()),
                ..Default::default()
            })
            .await;
        assert!(matches!(bad, Err(StoreError::BadCursor)));
    }

    #[tokio::test]
    async fn accounts_tokens_and_secrets() {
        let (_d, s) = open();
        let a = Account {
            user: "bob".into(),
            password_hash: "h".into(),
            role: Role::Viewer,
            groups: vec![],
            permissions: Permissions::default(),
            created_at: Timestamp::UNIX_EPOCH,
            disabled: false,
            generation: 1,
            revision: 0,
        };
        s.put_account(
            a.clone(),
            AccountWrite::Create,
            Some(entry("account.create", "bob")),
        )
        .await
        .expect("create");
        let dup = s.put_account(a.clone(), AccountWrite::Create, None).await;
        assert!(matches!(dup, Err(StoreError::Exists(_))));
        let ghost = Account {
            user: "ghost".into(),
            ..a.clone()
        };
        let missing = s.put_account(ghost, AccountWrite::Replace, None).await;
        assert!(matches!(missing, Err(StoreError::NotFound(_))));
        let stored = s.account("bob").await.expect("get").expect("bob");
        assert_eq!(stored.revision, 1);
        assert_eq!(
            stored,
            Account {
                revision: 1,
                ..a.clone()
            }
        );
        // A write from an older read is refused; one from the current read is not.
        s.put_account(stored.clone(), AccountWrite::Replace, None)
            .await
            .expect("replace at the current revision");
        let stale = s.put_account(stored, AccountWrite::Replace, None).await;
        assert!(
            matches!(stale, Err(StoreError::Stale { current: 2, .. })),
            "{stale:?}"
        );
        assert!(matches!(
            s.delete_account("nobody", None).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(
            s.audit(&AuditQuery::default())
                .await
                .expect("audit")
                .entries
                .len(),
            1,
            "failed writes leave no entry"
        );
        assert_eq!(s.shared_secret("k", "one").await.expect("k"), "one");
        assert_eq!(s.shared_secret("k", "two").await.expect("k"), "one");
    }
}
