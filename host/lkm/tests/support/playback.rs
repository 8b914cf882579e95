//! A platform set up for browser playback: Hawk credentials, a key pair and a
//! registered grant key; grants signed as the server signs them, and a page's
//! browser-decrypt requests.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::{Method, Response};
use serde_json::{Value, json};
use tapeseal_keys::grant::{self, Claims, GrantSigner};
use tapeseal_keys::hawk;
use tapeseal_keys::lkm::{Client, Endpoint, Trust};
use tapeseal_lkm::Config;

use super::{BROWSER_DECRYPT, DECRYPT, GRANT_ISSUER, Lkm, error_of, random_dek, wrap};

/// The platform's Hawk id, and so its grants' issuer.
pub const ISSUER: &str = "tapeseal-server";
/// The player page's origin, as in the demo.
pub const ORIGIN: &str = "http://127.0.0.1:8750";

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// An LKM, the platform's credentials and key pair, and its registered grant key.
pub struct Playback {
    pub lkm: Lkm,
    pub creds: hawk::Credentials,
    pub auth_key: String,
    pub pair: Value,
    pub signer: GrantSigner,
}

impl Playback {
    pub async fn start() -> Self {
        Self::start_config(|_| {}).await
    }

    pub async fn start_config(edit: impl FnOnce(&mut Config)) -> Self {
        let lkm = Lkm::start_config(edit).await;
        let (creds, auth_key) = lkm.issue(ISSUER).await;
        let pair = lkm.keypair(&creds).await;
        let (signer, _) = GrantSigner::generate().expect("grant key");
        let answer = register(&lkm, &creds, signer.public_key()).await;
        assert_eq!(answer.status(), 200);
        Self {
            lkm,
            creds,
            auth_key,
            pair,
            signer,
        }
    }

    pub fn keypair_id(&self) -> &str {
        self.pair["id"].as_str().expect("id")
    }

    /// A DEK and its wrapping for the key pair.
    pub fn wrapped(&self, sha256: bool) -> ([u8; 32], Vec<u8>) {
        let dek = random_dek();
        let public = self.pair["publicKey"].as_str().expect("publicKey");
        (dek, wrap(public, &dek, sha256))
    }

    /// Claims for `wrapped` under this key pair, from now for a minute.
    pub fn claims(&self, wrapped: &[u8], dty: Option<&str>) -> Claims {
        claims_for(self.keypair_id(), wrapped, dty)
    }

    /// A grant signed with the registered key.
    pub fn grant(&self, claims: &Claims) -> String {
        self.signer.sign(claims).expect("sign")
    }

    /// `POST /browser-decrypt` for this key pair, from `origin` if given.
    pub async fn decrypt(&self, grant: &str, wrapped: &[u8], origin: Option<&str>) -> Response {
        browser_decrypt(&self.lkm, grant, self.keypair_id(), wrapped, origin).await
    }

    /// The server's own LKM client, pinning the certificate.
    pub fn client(&self) -> Client {
        let url = format!("{}{DECRYPT}", self.lkm.url);
        let trust = match &self.lkm.fingerprint {
            Some(fingerprint) => Trust::fingerprint(fingerprint).expect("fingerprint"),
            None => Trust::System,
        };
        Client::new(&Endpoint {
            decrypt_url: url,
            hawk_id: ISSUER.into(),
            hawk_key: zeroize::Zeroizing::new(self.auth_key.clone()),
            trust,
            timeout: Duration::from_secs(30),
        })
        .expect("client")
    }
}

pub fn claims_for(keypair_id: &str, wrapped: &[u8], dty: Option<&str>) -> Claims {
    let now = now_secs();
    Claims {
        iss: ISSUER.into(),
        org: "acme".into(),
        rec: "rec-7".into(),
        kp: keypair_id.into(),
        wdk: grant::wrapped_dek_hash(wrapped),
        dty: dty.map(str::to_string),
        sub: "agent-42".into(),
        iat: now,
        exp: now + 60,
        jti: grant::new_grant_id().expect("grant id"),
    }
}

/// `PUT /grant-issuer` signed with Hawk.
pub async fn register(lkm: &Lkm, creds: &hawk::Credentials, public_key: &[u8]) -> Response {
    lkm.signed(creds, Method::PUT, GRANT_ISSUER)
        .json(&json!({ "publicKey": B64.encode(public_key) }))
        .send()
        .await
        .expect("send")
}

/// `GET /grant-issuer` signed with Hawk.
pub async fn read_issuer(lkm: &Lkm, creds: &hawk::Credentials) -> Response {
    lkm.signed(creds, Method::GET, GRANT_ISSUER)
        .send()
        .await
        .expect("send")
}

/// `POST /browser-decrypt`, from `origin` if given, without any credentials.
pub async fn browser_decrypt(
    lkm: &Lkm,
    grant: &str,
    keypair_id: &str,
    wrapped: &[u8],
    origin: Option<&str>,
) -> Response {
    let mut request = lkm.request(Method::POST, BROWSER_DECRYPT).json(&json!({
        "grant": grant,
        "keypairId": keypair_id,
        "body": B64.encode(wrapped),
    }));
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    request.send().await.expect("send")
}

/// The DEK of a 200 decrypt answer.
pub async fn dek_of(answer: Response) -> Vec<u8> {
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.expect("json");
    B64.decode(body["body"].as_str().expect("body"))
        .expect("base64")
}

/// The `code` of a refused grant, checking that the message does not repeat it.
pub async fn refusal(answer: Response, status: u16, grant: &str) -> String {
    let (code, message) = error_of(answer, status).await;
    let signature = grant.rsplit('.').next().expect("signature");
    assert!(!message.contains(signature), "{message}");
    code
}

pub fn header<'a>(answer: &'a Response, name: &str) -> Option<&'a str> {
    answer.headers().get(name).and_then(|v| v.to_str().ok())
}
