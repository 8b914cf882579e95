//! The browser pages (playback and Encryption Keys admin): static files from the
//! configured directory, served at `/` with a strict Content-Security-Policy. The
//! pages hold no secret; they call the API with the token the user signs in with.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::Shared;
use super::error::ApiError;

/// Scripts only from here (and wasm compiled from here); network to this server and
/// to the organisation's LKM (any http(s) origin: it differs per organisation);
/// audio from here (the service worker answers it); nothing framed.
const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
                   connect-src 'self' http: https:; media-src 'self' blob:; \
                   img-src 'self' data:; style-src 'self'; object-src 'none'; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The media type of a page file, by extension; other files are not served.
fn content_type(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    })
}

/// The file under the pages directory that `path` names: `/` is `index.html`;
/// segments are plain names (no `..`, no hidden files, no escapes).
fn relative(path: &str) -> Option<String> {
    let path = path.strip_prefix('/')?;
    if path.is_empty() {
        return Some("index.html".into());
    }
    let ok = path.split('/').all(|segment| {
        !segment.is_empty()
            && !segment.starts_with('.')
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    });
    ok.then(|| path.to_string())
}

/// Serves a page file, or the API's 404 for anything else.
pub async fn page(State(state): State<Shared>, method: Method, uri: Uri) -> Response {
    let not_found = || ApiError::not_found("route").into_response();
    let Some(dir) = &state.config.www.dir else {
        return not_found();
    };
    if (method != Method::GET && method != Method::HEAD) || uri.path().starts_with("/v1/") {
        return not_found();
    }
    let Some(name) = relative(uri.path()) else {
        return not_found();
    };
    let Some(kind) = content_type(&name) else {
        return not_found();
    };
    let bytes = match tokio::fs::read(dir.join(&name)).await {
        Ok(bytes) => bytes,
        Err(_) => return not_found(),
    };
    let mut response = if method == Method::HEAD {
        let mut r = Response::new(Body::empty());
        if let Ok(len) = HeaderValue::from_str(&bytes.len().to_string()) {
            r.headers_mut().insert(header::CONTENT_LENGTH, len);
        }
        r
    } else {
        Response::new(Body::from(bytes))
    };
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_under_the_directory_are_served() {
        assert_eq!(relative("/").as_deref(), Some("index.html"));
        assert_eq!(relative("/admin.html").as_deref(), Some("admin.html"));
        assert_eq!(
            relative("/pkg/tapeseal_bg.wasm").as_deref(),
            Some("pkg/tapeseal_bg.wasm")
        );
        for bad in [
            "/../secret.html",
            "/pkg/../../etc/passwd",
            "/.hidden.js",
            "/a//b.js",
            "/%2e%2e/x.js",
            "/a\\b.js",
            "relative.js",
        ] {
            assert_eq!(relative(bad), None, "{bad}");
        }
        assert_eq!(
            content_type("sw.js"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            content_type("pkg/tapeseal_bg.wasm"),
            Some("application/wasm")
        );
        assert_eq!(content_type("catalogue.sqlite3"), None);
        assert_eq!(content_type("README"), None);
    }
}
