//! HTTP Range for content and envelopes: parsing one `bytes=` range, the 416
//! refusal, and the headers every content response carries.

use std::ops::Range;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ApiResult};

/// What a Range header asks of a resource of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable Range header: the whole resource.
    Full,
    /// One satisfiable range (end exclusive).
    Partial(Range<u64>),
    /// A range that lies outside the resource.
    Unsatisfiable,
}

/// Parses a single-range `bytes=` Range header. Multiple ranges and syntax the
/// server does not understand are ignored, as RFC 9110 allows, and the whole
/// resource is served.
pub fn parse_range(value: Option<&HeaderValue>, len: u64) -> RangeRequest {
    let Some(spec) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, true) => RangeRequest::Full,
        (true, false) => match parse(last) {
            Some(0) => RangeRequest::Unsatisfiable,
            Some(n) if len > 0 => RangeRequest::Partial(len.saturating_sub(n)..len),
            Some(_) => RangeRequest::Unsatisfiable,
            None => RangeRequest::Full,
        },
        (false, open_end) => {
            let Some(start) = parse(first) else {
                return RangeRequest::Full;
            };
            let end = if open_end {
                len
            } else {
                match parse(last) {
                    Some(last) if last >= start => last.saturating_add(1).min(len),
                    _ => return RangeRequest::Full,
                }
            };
            if start >= len {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial(start..end)
            }
        }
    }
}

pub(crate) fn unsatisfiable(len: u64) -> Response {
    let mut response = ApiError::new(
        tapeseal_core::ErrorCode::RangeNotSatisfiable,
        format!("the range lies outside the {len} bytes of the content"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
        response.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    response
}

/// The range a request asks for (`None`: all of it), or the 416 refusal.
#[allow(clippy::result_large_err)]
pub(crate) fn requested(headers: &HeaderMap, len: u64) -> Result<Option<Range<u64>>, Response> {
    match parse_range(headers.get(header::RANGE), len) {
        RangeRequest::Full => Ok(None),
        RangeRequest::Partial(r) => Ok(Some(r)),
        RangeRequest::Unsatisfiable => Err(unsatisfiable(len)),
    }
}

/// A response for `range` of a `len`-byte resource whose bytes `body` streams.
pub(crate) fn ranged_response(
    content_type: &str,
    range: Option<Range<u64>>,
    len: u64,
    body: Body,
) -> ApiResult<Response> {
    let (status, length) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
        None => (StatusCode::OK, len),
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, length)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, "no-store")
        // Content is the uploader's, typed as the uploader said: never let a browser
        // sniff it into something else or run it as a page of this origin.
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox",
        );
    if renders_as_active_content(content_type) {
        // HTML, SVG, XML and the like are never rendered by a browser from here:
        // they are downloads, typed as plain bytes.
        builder = builder
            .header(header::CONTENT_DISPOSITION, "attachment")
            .header(header::CONTENT_TYPE, "application/octet-stream");
    } else {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    if let Some(r) = &range {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{len}", r.start, r.end.saturating_sub(1)),
        );
    }
    builder.body(body).map_err(|e| ApiError::internal(&e))
}

/// Whether a browser would run or render `content_type` as a document of this
/// origin: HTML, XHTML, SVG, XML, JavaScript and the like.
pub(crate) fn renders_as_active_content(content_type: &str) -> bool {
    let essence = tapeseal_export::layout::essence(content_type);
    matches!(
        essence.as_str(),
        "text/html"
            | "application/xhtml+xml"
            | "image/svg+xml"
            | "text/xml"
            | "application/xml"
            | "text/xsl"
            | "application/javascript"
            | "text/javascript"
            | "application/ecmascript"
            | "text/ecmascript"
            | "application/pdf"
            | "multipart/x-mixed-replace"
    ) || essence.ends_with("+xml")
        || essence.is_empty()
}

#[cfg(test)]
mod tests {
    #[test]
    fn active_content_is_recognised() {
        for t in [
            "text/html",
            "Text/HTML; charset=utf-8",
            "image/svg+xml",
            "application/xml",
            "application/atom+xml",
        ] {
            assert!(super::renders_as_active_content(t), "{t}");
        }
        for t in [
            "audio/wav",
            "text/plain",
            "message/rfc822",
            "application/json",
            "audio/mpeg",
        ] {
            assert!(!super::renders_as_active_content(t), "{t}");
        }
    }
}
