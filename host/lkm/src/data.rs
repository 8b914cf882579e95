//! The LKM's data directory and what lives in it: the store, the master key that
//! seals its private keys and Hawk keys, the generated admin token, and the
//! self-signed certificate. The CLI's offline commands and the server agree on it.

use std::path::{Path, PathBuf};

use tapeseal_keys::MasterKey;
use tapeseal_store::durable::{create_private_dir, write_private_file};
use zeroize::Zeroizing;

use crate::error::{LkmError, Result};
use crate::store::Store;

/// A data directory (nothing is created until asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Its path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The SQLite store.
    pub fn store_path(&self) -> PathBuf {
        self.root.join("lkm.sqlite3")
    }

    /// The master key file (32 bytes, mode 0600).
    pub fn master_key_path(&self) -> PathBuf {
        self.root.join("lkm-master.key")
    }

    /// The generated admin token (mode 0600).
    pub fn admin_token_path(&self) -> PathBuf {
        self.root.join("admin.token")
    }

    /// The self-signed certificate (PEM).
    pub fn cert_path(&self) -> PathBuf {
        self.root.join("tls-cert.pem")
    }

    /// The self-signed certificate's private key (PEM, mode 0600).
    pub fn cert_key_path(&self) -> PathBuf {
        self.root.join("tls-key.pem")
    }

    /// Opens the store, creating the directory (owner-only) and store when `create`;
    /// otherwise a missing store is an error.
    pub fn open_store(&self, create: bool) -> Result<Store> {
        let path = self.store_path();
        if create {
            create_private_dir(&self.root).map_err(|e| LkmError::io("create", &self.root, e))?;
        } else if !path.exists() {
            return Err(LkmError::NoStore(path));
        }
        Store::open(&path)
    }

    /// The master key, created on first use. A missing key file while the store
    /// holds sealed data is an error, never a new key that could not open it.
    pub fn master_key(&self, store: &Store) -> Result<MasterKey> {
        let may_create = !store.has_sealed_data()?;
        Ok(MasterKey::load_or_create(
            &self.master_key_path(),
            may_create,
        )?)
    }

    /// The admin token from `env` (a variable name) if given, else from
    /// `admin.token`, generated on first use. Also says where it came from.
    pub fn admin_token(&self, env: Option<&str>) -> Result<(AdminToken, TokenSource)> {
        if let Some(var) = env {
            let value = std::env::var(var).map_err(|_| {
                LkmError::Config(format!("the admin token variable {var} is not set"))
            })?;
            return Ok((AdminToken::new(value)?, TokenSource::Env(var.to_string())));
        }
        let path = self.admin_token_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((
                AdminToken::new(text.trim().to_string())?,
                TokenSource::File(path),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret = crate::ids::new_secret()?;
                write_private_file(&path, secret.as_bytes())
                    .map_err(|e| LkmError::io("create", &path, e))?;
                Ok((
                    AdminToken::new(secret.to_string())?,
                    TokenSource::Created(path),
                ))
            }
            Err(e) => Err(LkmError::io("read", &path, e)),
        }
    }
}

/// Where the admin token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// An environment variable.
    Env(String),
    /// The token file, as it already was.
    File(PathBuf),
    /// The token file, just generated.
    Created(PathBuf),
}

/// The admin bearer token: issues Hawk credentials, manages key pairs and the log.
pub struct AdminToken(Zeroizing<String>);

/// Admin tokens shorter than this are refused.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

impl AdminToken {
    /// A token of at least [`MIN_ADMIN_TOKEN_LEN`] characters.
    pub fn new(token: String) -> Result<Self> {
        let token = Zeroizing::new(token);
        if token.len() < MIN_ADMIN_TOKEN_LEN {
            return Err(LkmError::Config(format!(
                "the admin token must have at least {MIN_ADMIN_TOKEN_LEN} characters"
            )));
        }
        Ok(Self(token))
    }

    /// Whether `presented` is the token (constant time in its content).
    pub fn matches(&self, presented: &str) -> bool {
        let want = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.0.as_bytes());
        let got = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, presented.as_bytes());
        aws_lc_rs::constant_time::verify_slices_are_equal(want.as_ref(), got.as_ref()).is_ok()
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_token_is_generated_once_and_kept_private() {
        let dir = tempfile::tempdir().expect("dir");
        let data = DataDir::new(dir.path());
        let (token, source) = data.admin_token(None).expect("create");
        assert_eq!(source, TokenSource::Created(data.admin_token_path()));
        let text = std::fs::read_to_string(data.admin_token_path()).expect("read");
        assert!(token.matches(&text) && !token.matches("something else entirely"));
        assert!(!format!("{token:?}").contains(&text));
        let (again, source) = data.admin_token(None).expect("reuse");
        assert_eq!(source, TokenSource::File(data.admin_token_path()));
        assert!(again.matches(&text));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(data.admin_token_path()).expect("meta");
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        }
        assert!(AdminToken::new("short".into()).is_err());
    }

    #[test]
    fn no_new_master_key_once_secrets_are_sealed() {
        let dir = tempfile::tempdir().expect("dir");
        let data = DataDir::new(dir.path().join("lkm"));
        assert!(data.open_store(false).is_err(), "no store yet");
        let store = data.open_store(true).expect("store");
        data.master_key(&store).expect("first start creates it");
        store
            .insert_credential("client-1", b"sealed", 1)
            .expect("insert");
        std::fs::remove_file(data.master_key_path()).expect("lose it");
        assert!(data.master_key(&store).is_err());
    }
}
