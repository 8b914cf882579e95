//! Test support for tapeseal's AWS parts: a real [moto](https://docs.getmoto.org)
//! server standing in for KMS, S3 and IAM, with two accounts, users whose access can
//! be revoked and restored, KMS clients acting as them, and the S3 calls export
//! tests check buckets with.
//!
//! moto enforces IAM here: it runs with `INITIAL_NO_AUTH_ACTION_COUNT`, so that only
//! the set-up requests that make each account's admin go unauthenticated; every
//! later request must carry a valid SigV4 signature of a key moto issued and be
//! allowed by its user's policies. moto evaluates KMS permissions against the
//! resource `*` (a policy naming a key ARN never matches) and ignores conditions, so
//! the policies here grant `kms:*` on `*`.
//!
//! The API is async. The KMS clients run on tokio, so a blocking test makes a
//! runtime and keeps it for as long as it uses them:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tapeseal_testkit::{Account, Moto};
//!
//! let runtime = tokio::runtime::Runtime::new()?;
//! let dir = std::env::temp_dir().join("moto-logs");
//! let moto = runtime.block_on(Moto::start(&dir));
//! let key = runtime.block_on(moto.create_key(Account::A));
//! let user = runtime.block_on(moto.user(Account::A, "recorder"));
//! let kms = moto.kms(&user);
//! let out = runtime.block_on(
//!     kms.encrypt()
//!         .key_id(&key)
//!         .plaintext(aws_sdk_kms::primitives::Blob::new(b"dek".to_vec()))
//!         .send(),
//! )?;
//! # Ok(()) }
//! ```
//!
//! Where `moto_server` comes from: `TAPESEAL_MOTO_SERVER` if set, else the virtual
//! environment `cargo xtask moto` (or `cargo xtask ci`) installs into
//! `target/tools/moto`, else `PATH`.
//!
//! [`Postgres`] is a throwaway PostgreSQL cluster on 127.0.0.1 for the tests of the
//! PostgreSQL catalogue: Debian's server binaries, a fresh `initdb` under the
//! directory a test names, `trust` authentication on loopback only, one database per
//! test if they like ([`Postgres::create_database`]), stopped and removed when
//! dropped.

#![deny(missing_docs)]
// Test support: a set-up step that fails should stop the test loudly, with a message
// saying which step and why.
#![allow(clippy::panic)]

mod iam;
mod postgres;
mod s3;

pub use postgres::Postgres;
pub use s3::ObjectHead;

use std::fmt;
use std::fs::{self, File};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::types::{KeySpec, KeyUsageType};

use iam::Signer;

/// Each account's admin is made by these many unauthenticated requests: CreateUser,
/// PutUserPolicy and CreateAccessKey.
const SETUP_REQUESTS_PER_ACCOUNT: usize = 3;
/// How long moto may take to listen (its first start imports every service).
const START_TIMEOUT: Duration = Duration::from_secs(30);
const ADMIN_POLICY: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
const KMS_POLICY: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#;
/// The name of the inline policy [`Moto::user`] gives, [`Moto::revoke`] deletes and
/// [`Moto::restore`] puts back.
const KMS_POLICY_NAME: &str = "kms";
const NOT_FOUND: &str = "moto_server not found: `cargo xtask ci` (or `cargo xtask moto`) installs it (pip install 'moto[server]')";

/// One of the two AWS accounts of a [`Moto`]; KMS keys belong to one account (and
/// region), and the other's users cannot see them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Account {
    /// `123456789012`, moto's default account.
    A,
    /// `222222222222`.
    B,
}

impl Account {
    /// Both accounts.
    pub const ALL: [Account; 2] = [Account::A, Account::B];

    /// The 12-digit account id.
    pub fn id(self) -> &'static str {
        match self {
            Account::A => "123456789012",
            Account::B => "222222222222",
        }
    }

    fn index(self) -> usize {
        match self {
            Account::A => 0,
            Account::B => 1,
        }
    }
}

/// An IAM user of a moto account and its access key. Its `Debug` leaves the secret out.
#[derive(Clone)]
pub struct AwsUser {
    /// The account the user belongs to; every request signed with its key lands there.
    pub account: Account,
    /// The IAM user name.
    pub name: String,
    /// The access key id (`AKIA…`).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

impl fmt::Debug for AwsUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsUser")
            .field("account", &self.account)
            .field("name", &self.name)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .finish()
    }
}

impl AwsUser {
    fn signer(&self) -> Signer<'_> {
        Signer {
            access_key_id: &self.access_key_id,
            secret_access_key: &self.secret_access_key,
            account_header: None,
        }
    }
}

/// A running `moto_server` on 127.0.0.1 with IAM enforced and an admin in each
/// [`Account`]. Dropping it kills the server.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    endpoint: String,
    /// The admins of [`Account::A`] and [`Account::B`], in that order.
    admins: [AwsUser; 2],
    log: PathBuf,
    http: reqwest::Client,
}

impl Moto {
    /// The region of every client and key.
    pub const REGION: &str = "us-east-1";

    /// Starts `moto_server` on a free port, writing its output to a log file in
    /// `log_dir` (created if missing), and makes the admin of each account.
    ///
    /// Panics if the program cannot be found or run, or does not listen within 30 s.
    pub async fn start(log_dir: &Path) -> Moto {
        fs::create_dir_all(log_dir).unwrap_or_else(|e| {
            panic!("creating the moto log directory {}: {e}", log_dir.display())
        });
        let port = free_port();
        let log = log_dir.join(format!("moto-{port}.log"));
        let out = File::create(&log)
            .unwrap_or_else(|e| panic!("creating the moto log {}: {e}", log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("sharing the moto log {}: {e}", log.display()));
        let program = program();
        let unauthenticated = SETUP_REQUESTS_PER_ACCOUNT * Account::ALL.len();
        let mut child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", unauthenticated.to_string())
            // It would put every request in one account, whatever its key.
            .env_remove("MOTO_ACCOUNT_ID")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{NOT_FOUND}; running {}: {e}", program.display()));
        wait_listening(&mut child, port, &log).await;

        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let mut admins = Vec::new();
        for account in Account::ALL {
            admins.push(setup_admin(&http, &endpoint, account).await);
        }
        let admins: [AwsUser; 2] = admins
            .try_into()
            .unwrap_or_else(|_| panic!("one admin per account"));
        let moto = Moto {
            child,
            endpoint,
            admins,
            log,
            http,
        };
        // Whatever follows must be signed: check that moto stopped counting here.
        moto.check_enforced().await;
        moto
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The file moto's output goes to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The admin of `account` (IAM user `admin`, allowed everything).
    pub fn admin(&self, account: Account) -> &AwsUser {
        &self.admins[account.index()]
    }

    /// A KMS client acting as `user`, built from explicit settings (nothing from the
    /// environment or `~/.aws`). It needs a tokio runtime to run.
    pub fn kms(&self, user: &AwsUser) -> aws_sdk_kms::Client {
        let config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(Self::REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new(
                &user.access_key_id,
                &user.secret_access_key,
                None,
                None,
                "moto",
            ))
            .build();
        aws_sdk_kms::Client::from_conf(config)
    }

    /// A KMS client acting as the admin of `account`.
    pub fn admin_kms(&self, account: Account) -> aws_sdk_kms::Client {
        self.kms(self.admin(account))
    }

    /// Creates a symmetric encryption key (`SYMMETRIC_DEFAULT`) in `account` and
    /// returns its ARN.
    pub async fn create_key(&self, account: Account) -> String {
        let out = self
            .admin_kms(account)
            .create_key()
            .key_spec(KeySpec::SymmetricDefault)
            .key_usage(KeyUsageType::EncryptDecrypt)
            .send()
            .await
            .unwrap_or_else(|e| panic!("KMS CreateKey in account {}: {e:?}", account.id()));
        out.key_metadata()
            .and_then(|m| m.arn())
            .unwrap_or_else(|| panic!("CreateKey answered no key ARN: {out:?}"))
            .to_string()
    }

    /// Points the alias `alias` (`alias/` is prepended if missing) of `account` at
    /// `key_arn`, and returns the alias ARN,
    /// `arn:aws:kms:us-east-1:<account id>:alias/<name>`.
    pub async fn create_alias(&self, account: Account, alias: &str, key_arn: &str) -> String {
        let name = if alias.starts_with("alias/") {
            alias.to_string()
        } else {
            format!("alias/{alias}")
        };
        self.admin_kms(account)
            .create_alias()
            .alias_name(&name)
            .target_key_id(key_arn)
            .send()
            .await
            .unwrap_or_else(|e| panic!("KMS CreateAlias {name} -> {key_arn}: {e:?}"));
        format!("arn:aws:kms:{}:{}:{name}", Self::REGION, account.id())
    }

    /// Creates the IAM user `name` in `account` with an access key and the inline
    /// policy `kms`, which allows every KMS action on every key of the account.
    pub async fn user(&self, account: Account, name: &str) -> AwsUser {
        self.iam(account, &[("Action", "CreateUser"), ("UserName", name)])
            .await;
        let xml = self
            .iam(
                account,
                &[("Action", "CreateAccessKey"), ("UserName", name)],
            )
            .await;
        let (access_key_id, secret_access_key) = access_key(&xml);
        let user = AwsUser {
            account,
            name: name.to_string(),
            access_key_id,
            secret_access_key,
        };
        self.restore(&user).await;
        user
    }

    /// Deletes the user's `kms` policy: its KMS calls are refused from now on (moto
    /// answers HTTP 403, see [`is_access_denied`]).
    pub async fn revoke(&self, user: &AwsUser) {
        self.iam(
            user.account,
            &[
                ("Action", "DeleteUserPolicy"),
                ("UserName", &user.name),
                ("PolicyName", KMS_POLICY_NAME),
            ],
        )
        .await;
    }

    /// Puts the user's `kms` policy (back): its KMS calls are allowed again.
    pub async fn restore(&self, user: &AwsUser) {
        self.iam(
            user.account,
            &[
                ("Action", "PutUserPolicy"),
                ("UserName", &user.name),
                ("PolicyName", KMS_POLICY_NAME),
                ("PolicyDocument", KMS_POLICY),
            ],
        )
        .await;
    }

    /// An IAM call as the admin of `account`.
    async fn iam(&self, account: Account, params: &[(&str, &str)]) -> String {
        iam::call(
            &self.http,
            &self.endpoint,
            self.admin(account).signer(),
            params,
        )
        .await
    }

    /// Panics unless moto refuses an unsigned request now that set-up is over.
    async fn check_enforced(&self) {
        let response = self
            .http
            .post(format!("{}/", self.endpoint))
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=nobody/20240101/us-east-1/iam/aws4_request, \
                 SignedHeaders=host, Signature=00",
            )
            .body("Action=ListUsers&Version=2010-05-08")
            .send()
            .await
            .unwrap_or_else(|e| panic!("moto at {}: {e}", self.endpoint));
        let status = response.status().as_u16();
        if status != 403 {
            panic!(
                "moto accepted a request with a forged signature after set-up (HTTP {status}): \
                 it does not enforce IAM as the tests expect; log: {}",
                self.log.display()
            );
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // Already dead is fine; nothing else can go wrong that a test could act on.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a KMS call was refused for want of permission: moto answers HTTP 403 with
/// an XML body the JSON protocol cannot parse (so the SDK reports a response error
/// without an error code), where AWS answers 400 `AccessDeniedException`.
pub fn is_access_denied<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    err.code() == Some("AccessDeniedException")
        || err
            .raw_response()
            .is_some_and(|r| r.status().as_u16() == 403)
}

/// Makes the admin of `account` with the unauthenticated requests moto allows.
async fn setup_admin(http: &reqwest::Client, endpoint: &str, account: Account) -> AwsUser {
    // Account A is moto's default; B is reached by header until its admin has a key.
    let signer = Signer {
        access_key_id: "tapeseal-setup",
        secret_access_key: "tapeseal-setup",
        account_header: (account != Account::A).then(|| account.id()),
    };
    let name = "admin";
    let requests: [&[(&str, &str)]; SETUP_REQUESTS_PER_ACCOUNT] = [
        &[("Action", "CreateUser"), ("UserName", name)],
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", name),
            ("PolicyName", "all"),
            ("PolicyDocument", ADMIN_POLICY),
        ],
        &[("Action", "CreateAccessKey"), ("UserName", name)],
    ];
    let mut xml = String::new();
    for params in requests {
        xml = iam::call(http, endpoint, signer, params).await;
    }
    let (access_key_id, secret_access_key) = access_key(&xml);
    AwsUser {
        account,
        name: name.to_string(),
        access_key_id,
        secret_access_key,
    }
}

/// The access key id and secret of a CreateAccessKey answer.
fn access_key(xml: &str) -> (String, String) {
    let field = |tag| {
        iam::xml_field(xml, tag)
            .unwrap_or_else(|| panic!("no {tag} in the CreateAccessKey answer: {xml}"))
            .to_string()
    };
    (field("AccessKeyId"), field("SecretAccessKey"))
}

/// `TAPESEAL_MOTO_SERVER`, else the xtask's virtual environment, else `PATH`.
fn program() -> PathBuf {
    if let Some(path) = std::env::var_os("TAPESEAL_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = root.join("target/tools/moto/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    PathBuf::from("moto_server")
}

/// A port of 127.0.0.1 that nothing listens on now.
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("binding 127.0.0.1:0 to find a free port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("the free port's address: {e}"))
        .port()
}

/// Waits until moto accepts TCP connections. A plain connect, not an HTTP request:
/// moto would count a request among the unauthenticated ones.
async fn wait_listening(child: &mut Child, port: u16, log: &Path) {
    let started = Instant::now();
    loop {
        if tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .is_ok()
        {
            return;
        }
        let exited = child.try_wait().ok().flatten();
        if let Some(status) = exited {
            let output = fs::read_to_string(log).unwrap_or_default();
            panic!(
                "moto_server exited with {status} before listening on port {port} \
                 (log {}):\n{output}\n{NOT_FOUND}",
                log.display()
            );
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "moto_server did not listen on port {port} within {} s; its output is in {}",
                START_TIMEOUT.as_secs(),
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
