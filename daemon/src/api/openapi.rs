//! Answers every operation can give, added to the generated OpenAPI
//! document once instead of on each handler: `400` (a query, path or body
//! that does not parse, naming the field), `401` (no or bad credentials),
//! `403` (not allowed), `404` on routes with a path parameter, `422` on
//! routes with a body (validation, naming the field) and `503` (the
//! scheduler or a store is unavailable). All carry [`ApiError`].
//!
//! [`ApiError`]: cronsun_proto::api::ApiError

use utoipa::openapi::path::Operation;
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};
use utoipa::Modify;

/// The `modifiers(...)` entry of [`super::ApiDoc`].
pub struct CommonResponses;

fn error(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ApiError")))
                .build(),
        )
        .build()
}

fn add(op: &mut Operation, has_id: bool) {
    let mut common = vec![
        (
            "400",
            "bad request: a parameter or body that does not parse (the field is named)",
        ),
        ("401", "no credentials, or credentials that are not valid"),
        ("403", "authenticated, but not allowed"),
        ("503", "the scheduler or a store is unavailable"),
    ];
    if has_id {
        common.push(("404", "no such object"));
    }
    if op.request_body.is_some() {
        common.push(("422", "invalid content (the field is named)"));
    }
    for (code, what) in common {
        op.responses
            .responses
            .entry(code.to_string())
            .or_insert_with(|| error(what).into());
    }
}

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let has_id = path.contains('{');
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                add(op, has_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_operation_documents_its_error_answers() {
        let doc: serde_json::Value =
            serde_json::from_str(&super::super::openapi_json()).expect("the document is JSON");
        let paths = doc["paths"].as_object().expect("paths");
        assert!(!paths.is_empty());
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("path item") {
                let responses = op["responses"].as_object().expect("responses");
                for code in ["400", "401", "403", "503"] {
                    assert!(
                        responses.contains_key(code),
                        "{method} {path} does not document {code}"
                    );
                }
                if path.contains('{') {
                    assert!(responses.contains_key("404"), "{method} {path}: 404");
                }
            }
        }
    }
}
