//! moto's S3, through signed REST calls (path-style URLs): a bucket to export to or
//! keep recordings in (versioned, if a test asks), and what tests check of it: its
//! objects' keys, bytes, and the server-side encryption S3 reports for each, and the
//! multipart uploads left unfinished in it.

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SigningSettings, UriPathNormalizationMode,
};

use crate::iam::{self, encode, sign_request};
use crate::{Account, Moto};

/// What `HEAD` tells of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    /// Its size.
    pub len: u64,
    /// `x-amz-server-side-encryption`: `AES256` or `aws:kms`.
    pub sse: Option<String>,
    /// `x-amz-server-side-encryption-aws-kms-key-id`, for SSE-KMS.
    pub sse_kms_key_id: Option<String>,
}

impl Moto {
    /// One signed S3 request as the admin of `account`; panics unless moto answers
    /// 2xx. Returns the response headers and body.
    async fn s3(
        &self,
        account: Account,
        method: &str,
        path: &str,
        query: &str,
    ) -> (reqwest::header::HeaderMap, Vec<u8>) {
        self.s3_with_body(account, method, path, query, Vec::new())
            .await
    }

    /// [`Moto::s3`] with a request body.
    async fn s3_with_body(
        &self,
        account: Account,
        method: &str,
        path: &str,
        query: &str,
        body: Vec<u8>,
    ) -> (reqwest::header::HeaderMap, Vec<u8>) {
        let url = if query.is_empty() {
            format!("{}{path}", self.endpoint)
        } else {
            format!("{}{path}?{query}", self.endpoint)
        };
        let host = self
            .endpoint
            .strip_prefix("http://")
            .unwrap_or(&self.endpoint);
        // S3's rules: the payload hash in a header, the path encoded once as sent.
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let signed = sign_request(
            self.admin(account).signer(),
            "s3",
            method,
            &url,
            &[("host", host)],
            &body,
            settings,
        );
        let method_value = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut request = self.http.request(method_value, &url).body(body);
        for (name, value) in signed {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("S3 {method} {path}: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("S3 answer").to_vec();
        if !status.is_success() {
            panic!(
                "S3 {method} {path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        (headers, body)
    }

    /// Creates a bucket in `account`.
    pub async fn create_bucket(&self, account: Account, bucket: &str) {
        self.s3(account, "PUT", &format!("/{bucket}"), "").await;
    }

    /// Turns versioning on for a bucket: an object replaced keeps its old version,
    /// readable by its version id.
    pub async fn enable_versioning(&self, account: Account, bucket: &str) {
        let body = "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                    <Status>Enabled</Status></VersioningConfiguration>";
        self.s3_with_body(
            account,
            "PUT",
            &format!("/{bucket}"),
            "versioning=",
            body.as_bytes().to_vec(),
        )
        .await;
    }

    /// The keys of the multipart uploads begun and neither completed nor aborted in
    /// a bucket (`ListMultipartUploads`, its first 1,000), sorted.
    pub async fn list_multipart_uploads(&self, account: Account, bucket: &str) -> Vec<String> {
        let (_, body) = self
            .s3(account, "GET", &format!("/{bucket}"), "uploads=")
            .await;
        let xml = String::from_utf8(body).expect("XML");
        let mut keys = Vec::new();
        let mut rest = xml.as_str();
        while let Some(at) = rest.find("<Upload>") {
            rest = &rest[at + "<Upload>".len()..];
            let end = rest.find("</Upload>").expect("closing tag");
            let key = iam::xml_field(&rest[..end], "Key").expect("an upload's key");
            keys.push(unescape(key));
            rest = &rest[end..];
        }
        keys.sort();
        keys
    }

    /// Every object key under `prefix`, sorted (all pages).
    pub async fn list_objects(&self, account: Account, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = format!("list-type=2&prefix={}", encode(prefix));
            if let Some(t) = &token {
                query.push_str(&format!("&continuation-token={}", encode(t)));
            }
            let (_, body) = self.s3(account, "GET", &format!("/{bucket}"), &query).await;
            let xml = String::from_utf8(body).expect("XML");
            let mut rest = xml.as_str();
            while let Some(key) = iam::xml_field(rest, "Key") {
                keys.push(unescape(key));
                let at = rest.find("</Key>").expect("closing tag") + "</Key>".len();
                rest = &rest[at..];
            }
            token = iam::xml_field(&xml, "NextContinuationToken").map(unescape);
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }

    /// An object's bytes.
    pub async fn get_object(&self, account: Account, bucket: &str, key: &str) -> Vec<u8> {
        let path = format!("/{bucket}/{}", encode_path(key));
        self.s3(account, "GET", &path, "").await.1
    }

    /// What S3 reports of an object: its size and server-side encryption.
    pub async fn head_object(&self, account: Account, bucket: &str, key: &str) -> ObjectHead {
        let path = format!("/{bucket}/{}", encode_path(key));
        let (headers, _) = self.s3(account, "HEAD", &path, "").await;
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        ObjectHead {
            len: text("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0),
            sse: text("x-amz-server-side-encryption"),
            sse_kms_key_id: text("x-amz-server-side-encryption-aws-kms-key-id"),
        }
    }
}

/// [`encode`] for each `/`-separated segment of an object key.
fn encode_path(key: &str) -> String {
    key.split('/').map(encode).collect::<Vec<_>>().join("/")
}

/// The five XML entities.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}
