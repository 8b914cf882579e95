//! The LKM's TLS identity: the operator's certificate and key (PEM), or a
//! self-signed certificate for `localhost`, `127.0.0.1` and `::1` made once in the
//! data directory and reused. Clients pin it by the SHA-256 of its DER, which the
//! server prints at start.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tapeseal_store::durable::{write_new_file, write_private_file};
use tapeseal_store::time::{civil_from_days, now_ms};
use zeroize::Zeroizing;

use crate::config::TlsFiles;
use crate::data::DataDir;
use crate::error::{LkmError, Result};

/// The names a self-signed certificate is made for.
pub const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// How many years a self-signed certificate is valid.
const SELF_SIGNED_YEARS: i32 = 10;

/// A certificate chain and key, ready for rustls.
pub struct Identity {
    /// The chain, leaf first (PEM).
    pub cert_pem: Vec<u8>,
    /// The private key (PEM).
    pub key_pem: Zeroizing<Vec<u8>>,
    /// SHA-256 of the leaf certificate's DER, 64 lowercase hex digits.
    pub fingerprint: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// The operator's `files`, or else the data directory's self-signed certificate
/// (made on first use).
pub fn identity(data: &DataDir, files: Option<&TlsFiles>) -> Result<Identity> {
    let (cert_path, key_path) = match files {
        Some(files) => (files.cert.clone(), files.key.clone()),
        None => {
            ensure_self_signed(data)?;
            (data.cert_path(), data.cert_key_path())
        }
    };
    let cert_pem = std::fs::read(&cert_path).map_err(|e| LkmError::io("read", &cert_path, e))?;
    let key_pem =
        Zeroizing::new(std::fs::read(&key_path).map_err(|e| LkmError::io("read", &key_path, e))?);
    let fingerprint = fingerprint_of_pem(&cert_pem)?;
    Ok(Identity {
        cert_pem,
        key_pem,
        fingerprint,
    })
}

/// The SHA-256 fingerprint (lowercase hex) of the first certificate in PEM text.
pub fn fingerprint_of_pem(pem: &[u8]) -> Result<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = std::str::from_utf8(pem)
        .map_err(|_| LkmError::Tls("the certificate is not PEM text".into()))?;
    let body = text
        .split_once(BEGIN)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(body, _)| body)
        .ok_or_else(|| LkmError::Tls("no PEM CERTIFICATE in the certificate file".into()))?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = B64
        .decode(b64)
        .map_err(|_| LkmError::Tls("the PEM certificate is not base64".into()))?;
    Ok(fingerprint_of_der(&der))
}

/// The SHA-256 fingerprint (lowercase hex) of a DER certificate.
pub fn fingerprint_of_der(der: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der))
}

/// Makes the self-signed certificate unless it exists. The key is written first and
/// the certificate last, so a certificate file always has its key; a key left alone
/// by a crash between the two is replaced.
fn ensure_self_signed(data: &DataDir) -> Result<()> {
    let cert_path = data.cert_path();
    let key_path = data.cert_key_path();
    if cert_path.exists() {
        if !key_path.exists() {
            return Err(LkmError::Tls(format!(
                "{} exists but its key {} is missing; remove the certificate to make a new one",
                cert_path.display(),
                key_path.display()
            )));
        }
        return Ok(());
    }
    if key_path.exists() {
        std::fs::remove_file(&key_path).map_err(|e| LkmError::io("remove", &key_path, e))?;
    }
    let (cert_pem, key_pem) = self_signed()?;
    write_private_file(&key_path, key_pem.as_bytes())
        .map_err(|e| LkmError::io("create", &key_path, e))?;
    write_new_file(&cert_path, cert_pem.as_bytes(), false)
        .map_err(|e| LkmError::io("create", &cert_path, e))?;
    Ok(())
}

/// A new self-signed certificate (ECDSA P-256) and its key, as PEM.
fn self_signed() -> Result<(String, Zeroizing<String>)> {
    let tls = |e: rcgen::Error| LkmError::Tls(format!("cannot make a certificate: {e}"));
    let names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|n| n.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).map_err(tls)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tapeseal LKM");
    // From yesterday (clocks differ) for ten years, on 1 January.
    let (year, month, day) = civil_from_days(now_ms().div_euclid(86_400_000) - 1);
    let year =
        i32::try_from(year).map_err(|_| LkmError::Tls("the clock is out of range".into()))?;
    let (month, day) = (
        u8::try_from(month).unwrap_or(1),
        u8::try_from(day).unwrap_or(1),
    );
    params.not_before = rcgen::date_time_ymd(year, month, day);
    params.not_after = rcgen::date_time_ymd(year.saturating_add(SELF_SIGNED_YEARS), 1, 1);
    let key = rcgen::KeyPair::generate().map_err(tls)?;
    let cert = params.self_signed(&key).map_err(tls)?;
    Ok((cert.pem(), Zeroizing::new(key.serialize_pem())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_self_signed_certificate_is_made_once_and_reused() {
        let dir = tempfile::tempdir().expect("dir");
        let data = DataDir::new(dir.path());
        let first = identity(&data, None).expect("make");
        assert_eq!(first.fingerprint.len(), 64);
        assert!(
            first
                .fingerprint
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let again = identity(&data, None).expect("reuse");
        assert_eq!(first.fingerprint, again.fingerprint);
        assert!(!format!("{first:?}").contains("PRIVATE"));
        std::fs::remove_file(data.cert_path()).expect("remove cert");
        let fresh = identity(&data, None).expect("a stray key is replaced");
        assert_ne!(first.fingerprint, fresh.fingerprint);
    }

    #[test]
    fn a_fingerprint_needs_a_certificate() {
        assert!(fingerprint_of_pem(b"not pem").is_err());
        assert!(
            fingerprint_of_pem(b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----")
                .is_err()
        );
    }
}
