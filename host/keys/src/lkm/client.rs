//! The LKM client: asks an organisation's Local Key Manager to decrypt a wrapped DEK
//! over HTTPS, Hawk-authenticated, naming the acting user in `PureCloud-User-Id`.
//! Trust is a CA certificate, a pinned certificate fingerprint, or the system's
//! roots. Failures are typed for the caller: unreachable or overloaded (retried with
//! backoff, then `Unavailable`), too slow (`Timeout`), rejected credentials or an
//! unknown key pair (`Failed`), and a DEK the LKM could not decrypt (`Refused`).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::StatusCode;
use zeroize::Zeroizing;

use super::wire::{
    DecryptRequest, DecryptResponse, DecryptType, ErrorBody, GRANT_ISSUER_PATH, GrantIssuer,
    GrantIssuerRequest, USER_ID_HEADER,
};
use crate::hawk;
use crate::service::KeyServiceError;

/// How tapeseal decides the LKM's certificate is the right one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The web PKI roots of the system.
    System,
    /// Certificates issued by this CA (PEM).
    Ca(String),
    /// Exactly the certificate with this SHA-256 fingerprint (of its DER).
    Fingerprint([u8; 32]),
}

impl Trust {
    /// Parses a fingerprint as hex, with or without `:` separators.
    pub fn fingerprint(text: &str) -> Option<Self> {
        let hex_digits: String = text.chars().filter(|c| *c != ':').collect();
        let bytes = hex::decode(hex_digits.trim()).ok()?;
        bytes.try_into().ok().map(Self::Fingerprint)
    }
}

/// Where an organisation's LKM is and how to talk to it.
#[derive(Clone)]
pub struct Endpoint {
    /// The decrypt URL (`https://host:port/key-management/v1/decrypt`).
    pub decrypt_url: String,
    /// The Hawk id.
    pub hawk_id: String,
    /// The Hawk key.
    pub hawk_key: Zeroizing<String>,
    /// How its certificate is trusted.
    pub trust: Trust,
    /// How long one request may take.
    pub timeout: Duration,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("decrypt_url", &self.decrypt_url)
            .field("hawk_id", &self.hawk_id)
            .field("trust", &self.trust)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// How many times a decrypt is tried when the LKM is unreachable or overloaded.
const ATTEMPTS: u32 = 3;
/// The pause before the second try; it quadruples after each.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// A client for one LKM.
pub struct Client {
    http: reqwest::Client,
    credentials: hawk::Credentials,
    url: reqwest::Url,
    host: String,
    port: u16,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url.as_str())
            .field("hawk_id", &self.credentials.id)
            .finish_non_exhaustive()
    }
}

fn invalid(message: impl Into<String>) -> KeyServiceError {
    KeyServiceError::Failed(message.into())
}

impl Client {
    /// A client for `endpoint`. Only `https` URLs are accepted, and plain `http` to a
    /// loopback address (an LKM on the same host, as in the demo).
    pub fn new(endpoint: &Endpoint) -> Result<Self, KeyServiceError> {
        let url = reqwest::Url::parse(&endpoint.decrypt_url)
            .map_err(|e| invalid(format!("the LKM decrypt URL is not a URL: {e}")))?;
        if url.scheme() != "https" && !(url.scheme() == "http" && is_loopback(&url)) {
            return Err(invalid(
                "the LKM decrypt URL must be https (plain http only to a loopback address)",
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| invalid("the LKM decrypt URL has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let builder = reqwest::Client::builder()
            .timeout(endpoint.timeout)
            .connect_timeout(endpoint.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tapeseal/", env!("CARGO_PKG_VERSION")));
        let builder = match &endpoint.trust {
            Trust::System => builder,
            Trust::Ca(pem) => {
                let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                    .map_err(|e| invalid(format!("the LKM CA certificate is not PEM: {e}")))?;
                if certs.is_empty() {
                    return Err(invalid("the LKM CA certificate is empty"));
                }
                builder.tls_certs_only(certs)
            }
            Trust::Fingerprint(fingerprint) => builder.tls_backend_preconfigured(
                pinned::config(*fingerprint)
                    .map_err(|e| invalid(format!("cannot set up TLS for the LKM: {e}")))?,
            ),
        };
        let http = builder
            .build()
            .map_err(|e| invalid(format!("cannot build the LKM client: {e}")))?;
        let credentials = hawk::credentials(&endpoint.hawk_id, &endpoint.hawk_key)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            http,
            credentials,
            url,
            host,
            port,
            timeout: endpoint.timeout,
        })
    }

    /// Asks the LKM to decrypt `wrapped` with key pair `keypair_id`, on behalf of
    /// `user_id`. Unreachable, overloaded and 5xx answers are retried with backoff.
    pub async fn decrypt(
        &self,
        keypair_id: &str,
        wrapped: &[u8],
        padding: DecryptType,
        user_id: &str,
    ) -> Result<Zeroizing<Vec<u8>>, KeyServiceError> {
        let request = DecryptRequest {
            keypair_id: keypair_id.to_string(),
            body: B64.encode(wrapped),
            decrypt_type: padding.field(),
        };
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.decrypt_once(&request, user_id).await {
                Err(e @ KeyServiceError::Unavailable(_)) if attempt < ATTEMPTS => {
                    tracing::debug!(attempt, error = %e, "retrying the LKM");
                    tokio::time::sleep(backoff).await;
                    backoff *= 4;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Registers `public_key` (raw Ed25519) as the key that verifies this server's
    /// playback grants (`PUT /grant-issuer`). `Ok(None)` when the LKM does not offer
    /// browser decrypt (an LKM that speaks only the Genesys contract answers 404).
    pub async fn register_grant_issuer(
        &self,
        public_key: &[u8],
    ) -> Result<Option<GrantIssuer>, KeyServiceError> {
        let mut url = self.url.clone();
        url.set_path(GRANT_ISSUER_PATH);
        url.set_query(None);
        let request = GrantIssuerRequest {
            public_key: B64.encode(public_key),
        };
        let (status, body) = self
            .send(reqwest::Method::PUT, url, &request, "tapeseal-server")
            .await?;
        match status {
            s if s.is_success() => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|_| invalid("the LKM's grant-issuer answer is not the expected JSON")),
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => Ok(None),
            s => Err(invalid(format!(
                "the LKM did not register the grant key (HTTP {}): {}",
                s.as_u16(),
                reason(&body)
            ))),
        }
    }

    /// Sends one Hawk-authenticated JSON request; returns the status and body.
    async fn send(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
        json: &impl serde::Serialize,
        user_id: &str,
    ) -> Result<(StatusCode, Zeroizing<Vec<u8>>), KeyServiceError> {
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let authorization = hawk::authorization(
            &self.credentials,
            method.as_str(),
            &self.host,
            self.port,
            &path,
        )
        .map_err(|e| KeyServiceError::Internal(e.to_string()))?;
        let sent = self
            .http
            .request(method, url)
            .header(reqwest::header::AUTHORIZATION, authorization)
            .header(USER_ID_HEADER, user_id)
            .json(json)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) if e.is_timeout() => return Err(KeyServiceError::Timeout(self.timeout)),
            Err(e) => {
                return Err(KeyServiceError::Unavailable(format!(
                    "cannot reach the LKM at {}:{}: {}",
                    self.host,
                    self.port,
                    error_chain(&e)
                )));
            }
        };
        let status = response.status();
        match response.bytes().await {
            Ok(body) => Ok((status, Zeroizing::new(body.to_vec()))),
            Err(e) if e.is_timeout() => Err(KeyServiceError::Timeout(self.timeout)),
            Err(e) => Err(KeyServiceError::Unavailable(format!(
                "the LKM's answer was cut off: {e}"
            ))),
        }
    }

    async fn decrypt_once(
        &self,
        request: &DecryptRequest,
        user_id: &str,
    ) -> Result<Zeroizing<Vec<u8>>, KeyServiceError> {
        let (status, body) = self
            .send(reqwest::Method::POST, self.url.clone(), request, user_id)
            .await?;
        if status.is_success() {
            let answer: DecryptResponse = serde_json::from_slice(&body)
                .map_err(|_| invalid("the LKM's decrypt answer is not the expected JSON"))?;
            let answer = Zeroizing::new(answer.body);
            return B64
                .decode(answer.as_bytes())
                .map(Zeroizing::new)
                .map_err(|_| invalid("the LKM's decrypt answer is not base64"));
        }
        let reason = reason(&body);
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => invalid(format!(
                "the LKM rejected tapeseal's Hawk credentials '{}' (HTTP {}): {reason}",
                self.credentials.id,
                status.as_u16()
            )),
            StatusCode::NOT_FOUND => invalid(format!(
                "the LKM has no key pair '{}' (HTTP 404): {reason}",
                request.keypair_id
            )),
            StatusCode::TOO_MANY_REQUESTS => KeyServiceError::Unavailable(format!(
                "the LKM is rate-limiting (HTTP 429): {reason}"
            )),
            s if s.is_server_error() => KeyServiceError::Unavailable(format!(
                "the LKM failed (HTTP {}): {reason}",
                s.as_u16()
            )),
            s => KeyServiceError::Refused(format!(
                "the LKM did not decrypt the DEK with key pair '{}' (HTTP {}): {reason}",
                request.keypair_id,
                s.as_u16()
            )),
        })
    }
}

/// The LKM's error message and code, from its JSON error body.
fn reason(body: &[u8]) -> String {
    serde_json::from_slice::<ErrorBody>(body)
        .map(|b| format!("{} ({})", b.message, b.code))
        .unwrap_or_else(|_| "no error body".into())
}

/// Whether `url` names a loopback host (`localhost`, 127.0.0.0/8, `::1`).
fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An error and its sources, for a log line ("connection refused" is in a source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Certificate pinning: the server's end-entity certificate must have the
/// configured SHA-256 fingerprint; its handshake signature is still verified.
mod pinned {
    use std::sync::Arc;

    use rustls::DigitallySignedStruct;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    #[derive(Debug)]
    struct Pinned {
        fingerprint: [u8; 32],
        algorithms: WebPkiSupportedAlgorithms,
    }

    impl ServerCertVerifier for Pinned {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, end_entity);
            if aws_lc_rs::constant_time::verify_slices_are_equal(digest.as_ref(), &self.fingerprint)
                .is_ok()
            {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(rustls::Error::General(
                    "the LKM's certificate does not have the pinned fingerprint".into(),
                ))
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    }

    /// A rustls client configuration that trusts exactly one certificate.
    pub(super) fn config(fingerprint: [u8; 32]) -> Result<rustls::ClientConfig, rustls::Error> {
        let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = Arc::new(Pinned {
            fingerprint,
            algorithms: provider.signature_verification_algorithms,
        });
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// Clients by organisation, rebuilt when the organisation's LKM settings change.
#[derive(Debug, Default)]
pub struct Clients {
    by_org: std::sync::Mutex<std::collections::HashMap<String, (i64, Arc<Client>)>>,
}

impl Clients {
    /// The client for `org_id` at settings version `version`, built by `make` when
    /// there is none or the settings changed.
    pub fn get(
        &self,
        org_id: &str,
        version: i64,
        make: impl FnOnce() -> Result<Client, KeyServiceError>,
    ) -> Result<Arc<Client>, KeyServiceError> {
        let mut map = self
            .by_org
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((v, client)) = map.get(org_id)
            && *v == version
        {
            return Ok(client.clone());
        }
        let client = Arc::new(make()?);
        map.insert(org_id.to_string(), (version, client.clone()));
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> Endpoint {
        Endpoint {
            decrypt_url: url.into(),
            hawk_id: "tapeseal-test".into(),
            hawk_key: Zeroizing::new("key".into()),
            trust: Trust::System,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn fingerprints_read_with_or_without_colons() {
        let hex: String = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(
            Trust::fingerprint(&hex),
            Some(Trust::Fingerprint([0xab; 32]))
        );
        assert_eq!(
            Trust::fingerprint(&colons),
            Some(Trust::Fingerprint([0xab; 32]))
        );
        assert_eq!(Trust::fingerprint("abcd"), None);
        assert_eq!(Trust::fingerprint(&"zz".repeat(32)), None);
    }

    #[test]
    fn only_https_urls_or_plain_http_to_loopback_make_a_client() {
        for good in [
            "https://127.0.0.1:8760/key-management/v1/decrypt",
            "https://lkm.example.com/key-management/v1/decrypt",
            "http://127.0.0.1:8760/key-management/v1/decrypt",
            "http://[::1]:8760/key-management/v1/decrypt",
            "http://localhost:8760/key-management/v1/decrypt",
        ] {
            assert!(Client::new(&endpoint(good)).is_ok(), "{good}");
        }
        for bad in [
            "http://lkm.example.com/key-management/v1/decrypt",
            "http://10.0.0.1/key-management/v1/decrypt",
            "http://127.0.0.1.example.com/key-management/v1/decrypt",
            "not a url",
            "ftp://lkm/x",
        ] {
            assert!(
                matches!(Client::new(&endpoint(bad)), Err(KeyServiceError::Failed(_))),
                "{bad}"
            );
        }
        let client = Client::new(&endpoint("https://[::1]:9443/kms/decrypt?x=1")).expect("client");
        assert_eq!(
            (client.host.as_str(), client.port, client.url.query()),
            ("::1", 9443, Some("x=1"))
        );
        assert!(!format!("{client:?}").contains("key\""));
    }

    /// A one-connection HTTP server on loopback answering every request with
    /// `status`; returns its base URL.
    async fn answering(status: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = vec![0u8; 8192];
                let _ = socket.read(&mut request).await;
                let body = r#"{"status":0,"code":"x","message":"answered by the test"}"#;
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn an_lkm_without_browser_decrypt_is_told_apart_from_a_refusal() {
        let key = [7u8; 32];
        let client = |base: String| {
            Client::new(&endpoint(&format!("{base}/key-management/v1/decrypt"))).expect("client")
        };
        let genesys_only = client(answering("404 Not Found").await);
        assert!(matches!(
            genesys_only.register_grant_issuer(&key).await,
            Ok(None)
        ));
        let refusing = client(answering("403 Forbidden").await);
        assert!(matches!(
            refusing.register_grant_issuer(&key).await,
            Err(KeyServiceError::Failed(reason)) if reason.contains("answered by the test")
        ));
        let broken = client(answering("200 OK").await);
        assert!(matches!(
            broken.register_grant_issuer(&key).await,
            Err(KeyServiceError::Failed(_))
        ));
    }
}
