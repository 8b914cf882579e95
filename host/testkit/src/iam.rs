//! moto's IAM Query API, signed with SigV4 by hand: the testkit makes five kinds of
//! IAM call, and `aws-sdk-iam` would add minutes to every clean build for them.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

use crate::Moto;

const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";
const VERSION: &str = "2010-05-08";

/// Who signs an IAM call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Signer<'a> {
    pub(crate) access_key_id: &'a str,
    pub(crate) secret_access_key: &'a str,
    /// Sent as `x-moto-account-id`: how a set-up request, whose key moto does not
    /// know yet, reaches an account other than the default one.
    pub(crate) account_header: Option<&'a str>,
}

/// Makes one IAM call and returns the XML answer; panics unless moto answers 2xx.
///
/// Set-up requests are signed too, with a key moto has never seen: moto does not
/// check them while it counts its unauthenticated requests, but it routes a request
/// to a service by the credential scope of its `Authorization` header, and sends an
/// unsigned IAM request to S3.
pub(crate) async fn call(
    http: &reqwest::Client,
    endpoint: &str,
    signer: Signer<'_>,
    params: &[(&str, &str)],
) -> String {
    let action = params
        .iter()
        .find(|(name, _)| *name == "Action")
        .map_or("?", |(_, value)| *value);
    let body = params
        .iter()
        .chain(&[("Version", VERSION)])
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&");
    let url = format!("{endpoint}/");
    let host = endpoint.strip_prefix("http://").unwrap_or(endpoint);

    let mut headers = vec![("content-type", FORM), ("host", host)];
    if let Some(account) = signer.account_header {
        headers.push(("x-moto-account-id", account));
    }
    let signed = sign_request(
        signer,
        "iam",
        "POST",
        &url,
        &headers,
        body.as_bytes(),
        SigningSettings::default(),
    );
    // reqwest sends the same Host header (`127.0.0.1:PORT`) as the one signed.
    let mut request = http.post(&url).header("content-type", FORM).body(body);
    if let Some(account) = signer.account_header {
        request = request.header("x-moto-account-id", account);
    }
    for (name, value) in signed {
        request = request.header(name, value);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("IAM {action} at {endpoint}: {e}"));
    let status = response.status();
    let text = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("IAM {action}: reading the answer: {e}"));
    if !status.is_success() {
        panic!("IAM {action} answered {status}: {text}");
    }
    text
}

/// The headers SigV4 adds to a request (`authorization`, `x-amz-date`, ...) for
/// `service` in moto's region, signed by `signer`.
pub(crate) fn sign_request(
    signer: Signer<'_>,
    service: &str,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    settings: SigningSettings,
) -> Vec<(String, String)> {
    let identity = Credentials::new(
        signer.access_key_id,
        signer.secret_access_key,
        None,
        None,
        "moto",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(Moto::REGION)
        .name(service)
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .expect("SigV4 parameters are complete")
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .expect("the request is signable");
    let (instructions, _signature) = sign(signable, &params).expect("SigV4 signing").into_parts();
    instructions
        .headers()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// The text of the first `<tag>` element of an XML answer (IAM's answers carry the
/// access key's fields once each, and they never need unescaping).
pub(crate) fn xml_field<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{tag}>"))?;
    Some(&xml[start..start + len])
}

/// Form encoding: everything but RFC 3986's unreserved characters is percent-encoded.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{encode, xml_field};

    #[test]
    fn encodes_a_policy_document() {
        assert_eq!(
            encode(r#"{"Action":"kms:*"} a/b+c"#),
            "%7B%22Action%22%3A%22kms%3A%2A%22%7D%20a%2Fb%2Bc"
        );
    }

    #[test]
    fn finds_a_field() {
        let xml = "<A><AccessKeyId>AKIA1</AccessKeyId><SecretAccessKey>s/+</SecretAccessKey></A>";
        assert_eq!(xml_field(xml, "AccessKeyId"), Some("AKIA1"));
        assert_eq!(xml_field(xml, "SecretAccessKey"), Some("s/+"));
        assert_eq!(xml_field(xml, "Missing"), None);
    }
}
