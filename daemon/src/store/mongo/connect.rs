//! The MongoDB client from the `[mongodb]` section, and index creation.

use mongodb::bson::{doc, Document};
use mongodb::options::{ClientOptions, IndexOptions, Tls, TlsOptions};
use mongodb::{Client, Database, IndexModel};

use crate::config::MongoSection;

/// A client for `cfg` (no network traffic yet). Errors name the key.
pub async fn client(cfg: &MongoSection) -> Result<Client, String> {
    let mut o = ClientOptions::parse(&cfg.uri)
        .await
        .map_err(|e| format!("mongodb.uri {}: {e}", cfg.redacted_uri()))?;
    o.app_name = Some("cronsund".into());
    o.connect_timeout = Some(cfg.connect_timeout.0);
    o.server_selection_timeout = Some(cfg.server_selection_timeout.0);
    o.max_pool_size = Some(cfg.max_pool_size);
    let files_given = cfg.tls_ca_file.is_some() || cfg.tls_cert_key_file.is_some();
    match cfg.tls {
        Some(false) if files_given => {
            return Err("mongodb.tls is false but tls_ca_file or tls_cert_key_file is set".into())
        }
        Some(false) => o.tls = Some(Tls::Disabled),
        Some(true) | None if files_given || cfg.tls == Some(true) => {
            let mut t = match o.tls.take() {
                Some(Tls::Enabled(t)) => t,
                _ => TlsOptions::default(),
            };
            if cfg.tls_ca_file.is_some() {
                t.ca_file_path = cfg.tls_ca_file.clone();
            }
            if cfg.tls_cert_key_file.is_some() {
                t.cert_key_file_path = cfg.tls_cert_key_file.clone();
            }
            o.tls = Some(Tls::Enabled(t));
        }
        _ => {}
    }
    if let Some(src) = &cfg.auth_source {
        match o.credential.as_mut() {
            Some(c) => c.source = Some(src.clone()),
            None => return Err("mongodb.auth_source is set but mongodb.uri names no user".into()),
        }
    }
    Client::with_options(o).map_err(|e| format!("mongodb: {e}"))
}

fn index(keys: Document, name: &str) -> IndexModel {
    let mut opts = IndexOptions::default();
    opts.name = Some(name.into());
    IndexModel::builder().keys(keys).options(opts).build()
}

/// Every index of DESIGN §4 and of the API's query shapes, by collection.
pub fn indexes() -> Vec<(&'static str, IndexModel)> {
    vec![
        // Search shapes: equalities + order by (scheduled_at, _id) desc.
        (
            "runs",
            index(doc! {"scheduled_at": -1, "_id": -1}, "by_time"),
        ),
        (
            "runs",
            index(doc! {"job_id": 1, "scheduled_at": -1, "_id": -1}, "by_job"),
        ),
        (
            "runs",
            index(
                doc! {"node_id": 1, "scheduled_at": -1, "_id": -1},
                "by_node",
            ),
        ),
        (
            "runs",
            index(
                doc! {"status": 1, "scheduled_at": -1, "_id": -1},
                "by_status",
            ),
        ),
        (
            "runs",
            index(
                doc! {"job_id": 1, "status": 1, "scheduled_at": -1, "_id": -1},
                "by_job_status",
            ),
        ),
        (
            "runs",
            index(
                doc! {"node_id": 1, "status": 1, "scheduled_at": -1, "_id": -1},
                "by_node_status",
            ),
        ),
        // DESIGN §4's operator-facing indexes.
        (
            "runs",
            index(doc! {"node_id": 1, "started_at": 1}, "by_node_started"),
        ),
        (
            "runs",
            index(doc! {"status": 1, "started_at": 1}, "by_status_started"),
        ),
        ("runs", index(doc! {"expire_at": 1}, "by_expiry")),
        // Detail by bare run id (latest attempt).
        ("runs", index(doc! {"run_id": 1, "attempt": -1}, "by_run")),
        (
            "stats_daily",
            index(doc! {"job_id": 1, "day": 1}, "by_job_day"),
        ),
        ("stats_daily", index(doc! {"day": 1, "job_id": 1}, "by_day")),
    ]
}

/// Creates the collections' indexes (idempotent: an index that exists with
/// the same definition is left alone) and the `latest` and `audit`
/// collections.
///
/// One `createIndexes` command per index: FerretDB 1.24.2 panics (and
/// drops the connection) on a `createIndexes` naming two or more indexes
/// that already exist (`validateIndexesForCreation` deletes from the
/// filtered list by the unfiltered index: "slice bounds out of range"), so
/// a batch command would fail on every start after the first.
pub(super) async fn ensure_indexes(db: &Database) -> Result<(), mongodb::error::Error> {
    for (coll, model) in indexes() {
        db.collection::<Document>(coll).create_index(model).await?;
    }
    // Created explicitly (not by a first write) so operators see them; no
    // listCollections first: FerretDB 1.24 can fail on it (see ARCHITECTURE).
    for c in ["latest", "audit"] {
        match db.create_collection(c).await {
            Ok(()) => {}
            // NamespaceExists.
            Err(e) if matches!(*e.kind, mongodb::error::ErrorKind::Command(ref c) if c.code == 48) =>
                {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `ping`, to tell "unreachable" and "refused" apart at start; the error
/// says which, for the log line that names the server.
pub(super) async fn ping(db: &Database) -> Result<(), String> {
    db.run_command(doc! {"ping": 1})
        .await
        .map(drop)
        .map_err(|e| describe(&e))
}

fn describe(e: &mongodb::error::Error) -> String {
    use mongodb::error::ErrorKind;
    match &*e.kind {
        ErrorKind::Authentication { message, .. } => format!(
            "the server refused the credentials (check the user and password in mongodb.uri \
             and mongodb.auth_source): {message}{}",
            std::error::Error::source(e)
                .map(|s| format!(" ({s})"))
                .unwrap_or_default()
        ),
        ErrorKind::ServerSelection { .. } => format!("unreachable: {e}"),
        _ => e.to_string(),
    }
}
