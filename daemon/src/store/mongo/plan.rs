//! The query shapes this store sends to MongoDB, and the two checks that an
//! index serves each one (DESIGN §4: "every query the UI makes is served by
//! an index"):
//!
//! - [`index_for`], static: an index of [`super::connect::indexes`] (or
//!   `_id`) whose leading keys are equality fields of the query, followed by
//!   the sort keys (same or all-reversed directions) and the range fields —
//!   the equality/sort/range rule MongoDB's planner needs to avoid a scan;
//! - [`verdict`], from the server's own `explain`: MongoDB reports a plan
//!   tree whose stages are `COLLSCAN` (a scan) or `IXSCAN`/`IDHACK`/
//!   `EXPRESS_*` (an index); FerretDB reports the backend's SQL plan
//!   (`queryPlanner.Plan`: SQLite `SCAN t` vs `SEARCH t USING INDEX i`,
//!   PostgreSQL `Seq Scan` vs `Index Scan`).

use mongodb::bson::{doc, Bson, Document};
use mongodb::Database;

use cronsun_proto::api::RunQuery;
use cronsun_proto::RunStatus;
use jiff::Timestamp;

use super::connect::indexes;
use super::query::{search_filter, search_sort, stats_filter};
use crate::store::sqlite::cursor::Cursor;

/// One query the store makes.
#[derive(Clone, Debug)]
pub struct Shape {
    pub name: String,
    pub collection: &'static str,
    pub filter: Document,
    pub sort: Option<Document>,
}

fn shape(name: &str, collection: &'static str, filter: Document, sort: Option<Document>) -> Shape {
    Shape {
        name: name.into(),
        collection,
        filter,
        sort,
    }
}

/// Sets one combination of search filters.
type SetFilter = fn(&mut RunQuery);

/// Every query shape of the API's reads (search by each filter, with and
/// without a time range and a cursor; detail; latest; statistics) and of
/// the shipper and retention.
pub fn shapes() -> Vec<Shape> {
    let at = Timestamp::from_second(1_780_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
    let cursor = Cursor {
        scheduled_ms: at.as_millisecond(),
        record_id: "j~x#1".into(),
    }
    .encode();
    let mut out = Vec::new();
    let filters: [(&str, SetFilter); 6] = [
        ("all", |_| {}),
        ("job", |q| q.job = Some("j".into())),
        ("node", |q| q.node = Some("n".into())),
        ("status", |q| q.status = Some(RunStatus::Failed)),
        ("job+status", |q| {
            q.job = Some("j".into());
            q.status = Some(RunStatus::Failed);
        }),
        ("node+status", |q| {
            q.node = Some("n".into());
            q.status = Some(RunStatus::Failed);
        }),
    ];
    for (name, set) in filters {
        for (variant, since, page) in [
            ("", false, false),
            (" since/until", true, false),
            (" next page", false, true),
        ] {
            let mut q = RunQuery::default();
            set(&mut q);
            if since {
                q.since = Some(at);
                q.until = Some(at);
            }
            if page {
                q.cursor = Some(cursor.clone());
            }
            if let Ok(f) = search_filter(&q) {
                out.push(shape(
                    &format!("search {name}{variant}"),
                    "runs",
                    f,
                    Some(search_sort()),
                ));
            }
        }
    }
    out.push(shape(
        "get by record id",
        "runs",
        doc! {"_id": "j~x#1"},
        None,
    ));
    out.push(shape(
        "get by run id (latest attempt)",
        "runs",
        doc! {"run_id": "j~x"},
        Some(doc! {"run_id": 1, "attempt": -1}),
    ));
    out.push(shape(
        "shipper: stored seqs",
        "runs",
        super::docs::ids_in(&["j~x#1".into(), "j~y#1".into()]),
        None,
    ));
    out.push(shape(
        "latest per job",
        "latest",
        doc! {},
        Some(doc! {"_id": 1}),
    ));
    for (name, job) in [("stats of a job", Some("j")), ("stats of all jobs", None)] {
        let (f, s) = stats_filter(job, "2026-01-01", "2026-01-14");
        out.push(shape(name, "stats_daily", f, Some(s)));
    }
    let date = super::docs::date(at);
    let not_running = doc! {"$ne": "running"};
    out.push(shape(
        "retention by expire_at",
        "runs",
        doc! {"expire_at": {"$lt": date}, "status": not_running.clone()},
        None,
    ));
    out.push(shape(
        "retention by age",
        "runs",
        doc! {"scheduled_at": {"$lt": date}, "status": not_running.clone()},
        None,
    ));
    out.push(shape(
        "retention by count: first doomed",
        "runs",
        doc! {"job_id": "j"},
        Some(search_sort()),
    ));
    out.push(shape(
        "retention by count: delete batch",
        "runs",
        doc! {"job_id": "j", "scheduled_at": {"$lte": date},
        "$or": [{"scheduled_at": {"$lt": date}}, {"scheduled_at": date, "_id": {"$lte": "j~x#1"}}],
        "status": not_running},
        None,
    ));
    out
}

fn is_operator_doc(v: &Bson) -> bool {
    matches!(v, Bson::Document(d) if d.keys().next().is_some_and(|k| k.starts_with('$')))
}

/// Fields compared for equality, and fields with a range (or `$in`, `$ne`).
fn fields(filter: &Document) -> (Vec<String>, Vec<String>) {
    let (mut eq, mut range) = (Vec::new(), Vec::new());
    for (k, v) in filter {
        if k == "$or" {
            // The cursor's tie-break: on the sort keys, which the range covers.
            continue;
        }
        if is_operator_doc(v) {
            let only_ne = matches!(v, Bson::Document(d) if d.keys().all(|k| k == "$ne"));
            if !only_ne {
                range.push(k.clone());
            }
        } else {
            eq.push(k.clone());
        }
    }
    (eq, range)
}

fn direction(v: &Bson) -> i64 {
    match v {
        Bson::Int32(i) => i64::from(*i),
        Bson::Int64(i) => *i,
        _ => 1,
    }
}

/// The name of an index that serves `s` by the equality/sort/range rule, if any.
pub fn index_for(s: &Shape) -> Option<String> {
    let (eq, range) = fields(&s.filter);
    let id_index = doc! {"_id": 1};
    let mut candidates: Vec<(String, Document)> = vec![("_id_".into(), id_index)];
    for (coll, m) in indexes() {
        if coll == s.collection {
            let name = m
                .options
                .as_ref()
                .and_then(|o| o.name.clone())
                .unwrap_or_default();
            candidates.push((name, m.keys));
        }
    }
    let mut best: Option<(usize, String)> = None;
    for (lead, name) in candidates.into_iter().filter_map(|(name, keys)| {
        let keys: Vec<(String, i64)> = keys
            .iter()
            .map(|(k, v)| (k.clone(), direction(v)))
            .collect();
        // Leading equality fields (all of them in the query).
        let lead = keys.iter().take_while(|(k, _)| eq.contains(k)).count();
        let rest = &keys[lead..];
        let sort: Vec<(String, i64)> = s
            .sort
            .as_ref()
            .map(|d| d.iter().map(|(k, v)| (k.clone(), direction(v))).collect())
            .unwrap_or_default();
        // The sort keys that are not already fixed by an equality.
        let sort: Vec<&(String, i64)> = sort.iter().filter(|(k, _)| !eq.contains(k)).collect();
        let sort_ok = sort.len() <= rest.len() && {
            let same = sort.iter().zip(rest).all(|(a, b)| a.0 == b.0 && a.1 == b.1);
            let reversed = sort
                .iter()
                .zip(rest)
                .all(|(a, b)| a.0 == b.0 && a.1 == -b.1);
            same || reversed
        };
        let range_ok = range.iter().all(|r| {
            let span = sort.len().max(1);
            rest.iter().take(span).any(|(k, _)| k == r)
        });
        let selective = lead > 0 || !sort.is_empty() || !range.is_empty();
        (sort_ok && range_ok && selective).then_some((lead, name))
    }) {
        if best.as_ref().is_none_or(|(l, _)| lead > *l) {
            best = Some((lead, name));
        }
    }
    best.map(|(_, name)| name)
}

/// What the server's explain says about one query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Served by this index (as the server names it).
    Index(String),
    /// Every document (or row) is read: the detail the server gave.
    Scan(String),
    /// The explain output has neither shape (the raw reply).
    Unknown(String),
}

/// Runs `explain` (queryPlanner) of a `find` of `s` with `limit`.
pub async fn explain(db: &Database, s: &Shape, limit: i64) -> Result<Document, String> {
    let mut find = doc! {"find": s.collection, "filter": s.filter.clone(), "limit": limit};
    if let Some(sort) = &s.sort {
        find.insert("sort", sort.clone());
    }
    db.run_command(doc! {"explain": find, "verbosity": "queryPlanner"})
        .await
        .map_err(|e| format!("explain {}: {e}", s.name))
}

fn walk(stage: &Document, found: &mut Vec<(String, Option<String>)>) {
    if let Ok(name) = stage.get_str("stage") {
        found.push((
            name.to_owned(),
            stage.get_str("indexName").ok().map(str::to_owned),
        ));
    }
    for key in ["inputStage", "queryPlan", "winningPlan"] {
        if let Ok(d) = stage.get_document(key) {
            walk(d, found);
        }
    }
    if let Ok(a) = stage.get_array("inputStages") {
        for d in a.iter().filter_map(Bson::as_document) {
            walk(d, found);
        }
    }
}

/// Classifies an explain reply (MongoDB or FerretDB; see the module docs).
pub fn verdict(explain: &Document) -> Verdict {
    let Ok(planner) = explain.get_document("queryPlanner") else {
        return Verdict::Unknown(explain.to_string());
    };
    if let Ok(win) = planner.get_document("winningPlan") {
        let mut stages = Vec::new();
        walk(win, &mut stages);
        if let Some((s, _)) = stages.iter().find(|(s, _)| s == "COLLSCAN") {
            return Verdict::Scan(s.clone());
        }
        if let Some((s, ix)) = stages
            .iter()
            .find(|(s, _)| s == "IXSCAN" || s == "IDHACK" || s.starts_with("EXPRESS"))
        {
            return Verdict::Index(ix.clone().unwrap_or_else(|| s.clone()));
        }
        return Verdict::Unknown(win.to_string());
    }
    // FerretDB: the backend's SQL plan, one line (SQLite) or a JSON tree
    // (PostgreSQL) per step.
    let Ok(plan) = planner.get_array("Plan") else {
        return Verdict::Unknown(planner.to_string());
    };
    let text = plan
        .iter()
        .map(|b| match b {
            Bson::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    if let Some(i) = text
        .find("USING INDEX ")
        .or_else(|| text.find("USING COVERING INDEX "))
    {
        let name = text[i..].split_whitespace().nth(2).unwrap_or("?");
        return Verdict::Index(name.trim_matches('"').to_owned());
    }
    if text.contains("Index Scan") || text.contains("Index Only Scan") {
        return Verdict::Index(text);
    }
    if text.contains("SCAN ") || text.contains("Seq Scan") {
        return Verdict::Scan(text);
    }
    Verdict::Unknown(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_has_an_index_by_the_esr_rule() {
        let shapes = shapes();
        assert!(shapes.len() > 20);
        for s in &shapes {
            assert!(index_for(s).is_some(), "no index serves {s:?}");
        }
        let job = shapes
            .iter()
            .find(|s| s.name == "search job")
            .expect("shape");
        assert_eq!(index_for(job).as_deref(), Some("by_job"));
        let page = shapes
            .iter()
            .find(|s| s.name == "search all next page")
            .expect("shape");
        assert_eq!(index_for(page).as_deref(), Some("by_time"));
    }

    #[test]
    fn a_shape_without_index_is_caught() {
        let s = shape(
            "by hostname",
            "runs",
            doc! {"hostname": "h"},
            Some(search_sort()),
        );
        // by_time serves the sort (a scan of the index, filtered): allowed
        // like MongoDB's IXSCAN + FETCH filter; an unsorted equality on an
        // unindexed field is not.
        assert_eq!(index_for(&s).as_deref(), Some("by_time"));
        let s = shape("by hostname", "runs", doc! {"hostname": "h"}, None);
        assert_eq!(index_for(&s), None);
        let s = shape(
            "by argv",
            "runs",
            doc! {"job_id": "j"},
            Some(doc! {"duration_ms": -1}),
        );
        assert_eq!(index_for(&s), None);
    }

    #[test]
    fn verdicts_of_mongodb_and_ferretdb_explains() {
        let mongo_ix = doc! {"queryPlanner": {"winningPlan": {"stage": "LIMIT", "inputStage":
        {"stage": "FETCH", "inputStage": {"stage": "IXSCAN", "indexName": "by_job"}}}}};
        assert_eq!(verdict(&mongo_ix), Verdict::Index("by_job".into()));
        let sbe = doc! {"queryPlanner": {"winningPlan": {"queryPlan": {"stage": "SORT",
        "inputStage": {"stage": "COLLSCAN"}}}}};
        assert_eq!(verdict(&sbe), Verdict::Scan("COLLSCAN".into()));
        let id = doc! {"queryPlanner": {"winningPlan": {"stage": "EXPRESS_IXSCAN"}}};
        assert!(matches!(verdict(&id), Verdict::Index(_)));
        let sqlite_scan =
            doc! {"queryPlanner": {"Plan": ["id=2 parent=0 notused=0 detail=SCAN runs_1a32ed3b"]}};
        assert!(matches!(verdict(&sqlite_scan), Verdict::Scan(_)));
        let sqlite_ix = doc! {"queryPlanner": {"Plan":
        ["id=3 parent=0 notused=0 detail=SEARCH runs_1a USING INDEX runs_1a_by_job (<expr>=?)"]}};
        assert_eq!(verdict(&sqlite_ix), Verdict::Index("runs_1a_by_job".into()));
        let pg = doc! {"queryPlanner": {"Plan": [{"Plan": {"Node Type": "Seq Scan"}}]}};
        assert!(matches!(verdict(&pg), Verdict::Scan(_)));
        assert!(matches!(verdict(&doc! {"ok": 1}), Verdict::Unknown(_)));
    }
}
