//! The web UI (issue 6): the static single-page app in the repository's
//! `ui/` folder, embedded into the binary at build time (`rust-embed`, also
//! in debug builds: the confined agent may not read the source tree). Served under `/ui/` with no authentication (the assets hold no
//! data; every API call the app makes is authenticated), `/` redirects to
//! `/ui/`, and any path under `/ui/` that is not a file and does not look
//! like one serves `index.html` so deep links work.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::Embed;

#[derive(Embed)]
#[folder = "../ui/"]
struct Assets;

/// Scripts, styles, images and connections only from this origin; no inline
/// scripts or styles, no plugins, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; \
frame-ancestors 'none'";

/// File name endings that are assets: a miss on one is a 404, not the app.
const ASSET_ENDINGS: &[&str] = &[
    ".js", ".css", ".json", ".svg", ".png", ".ico", ".map", ".txt", ".woff2",
];

/// The UI's routes; the caller merges them outside the API's auth layer.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/ui/") }))
        .route("/ui", get(|| async { Redirect::temporary("/ui/") }))
        .route(
            "/ui/",
            get(|h: HeaderMap| async move { serve("index.html", &h) }),
        )
        .route(
            "/ui/{*path}",
            get(|Path(path): Path<String>, h: HeaderMap| async move { serve(&path, &h) }),
        )
}

fn serve(path: &str, req: &HeaderMap) -> Response {
    let (name, file) = match Assets::get(path) {
        Some(f) => (path, f),
        None if looks_like_asset(path) => return not_found(path),
        None => match Assets::get("index.html") {
            Some(f) => ("index.html", f),
            None => return not_found("index.html"),
        },
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = file.data.into_owned().into_response();
        set(&mut r, header::CONTENT_TYPE, content_type(name));
        r
    };
    set(&mut resp, header::ETAG, &etag);
    // No build step means no content-hashed names: always revalidate (cheap with the ETag).
    set(&mut resp, header::CACHE_CONTROL, "no-cache");
    security_headers(&mut resp);
    resp
}

fn looks_like_asset(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or(path);
    ASSET_ENDINGS.iter().any(|e| last.ends_with(e))
}

fn not_found(path: &str) -> Response {
    let mut r = (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("no such UI file: {path}\n"),
    )
        .into_response();
    security_headers(&mut r);
    r
}

fn security_headers(r: &mut Response) {
    set(r, header::CONTENT_SECURITY_POLICY, CSP);
    set(r, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(r, header::REFERRER_POLICY, "no-referrer");
    set(r, header::X_FRAME_OPTIONS, "DENY");
}

fn set(r: &mut Response, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

/// Content type by file name ending (the few kinds the UI ships).
fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or("");
    match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" | "map" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_links_are_not_assets_but_missing_scripts_are() {
        assert!(!looks_like_asset("jobs/backup"));
        assert!(!looks_like_asset("runs/a~20261125T101500Z%231"));
        assert!(looks_like_asset("js/nope.js"));
        assert!(looks_like_asset("style.css"));
    }

    #[test]
    fn content_types_are_exact() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("js/app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("style.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("x.bin"), "application/octet-stream");
    }

    #[test]
    fn every_ui_file_is_embedded_with_a_known_type() {
        let names: Vec<_> = Assets::iter().collect();
        assert!(names.iter().any(|n| n == "index.html"), "{names:?}");
        for n in names {
            assert_ne!(content_type(&n), "application/octet-stream", "{n}");
        }
    }

    #[test]
    fn index_has_no_inline_script() {
        let f = Assets::get("index.html").expect("index.html embedded");
        let html = String::from_utf8_lossy(&f.data);
        for tag in html.split("<script").skip(1) {
            assert!(tag.contains("src="), "inline script in index.html: {tag}");
        }
        assert!(
            !html.contains(" style="),
            "inline style attribute in index.html"
        );
        assert!(
            !html.contains("<style"),
            "inline style element in index.html"
        );
    }
}
