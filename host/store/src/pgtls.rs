//! TLS to a PostgreSQL catalogue: rustls on aws-lc-rs, always verifying the server's
//! certificate and name, against the CA certificates of a file the configuration
//! names or else the system's roots.
//!
//! The URL's `sslmode` decides whether TLS is used: `require` insists on it,
//! `prefer` (the default) uses it whenever the server offers it, `disable` never
//! does. Whenever TLS is used the certificate is verified; there is no mode that
//! encrypts without knowing whom to.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::db::DbError;

/// A connector for tokio-postgres that verifies servers against `ca_file`'s
/// certificates (PEM), or the system's roots without one.
pub(crate) fn connector(
    ca_file: Option<&Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, DbError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<_, _>>())
                .map_err(|e| {
                    DbError::Pool(format!(
                        "cannot read the catalogue's CA certificates from {}: {e}",
                        path.display()
                    ))
                })?;
            if certificates.is_empty() {
                return Err(DbError::Pool(format!(
                    "{} holds no CA certificate",
                    path.display()
                )));
            }
            for certificate in certificates {
                roots.add(certificate).map_err(|e| {
                    DbError::Pool(format!(
                        "a CA certificate in {} is unusable: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for certificate in found.certs {
                // A system root that rustls cannot use is skipped, as browsers do.
                let _ = roots.add(certificate);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DbError::Pool(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}
