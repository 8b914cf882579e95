//! TLS for a cluster started with [`Postgres::start_with_tls`]: a test CA and a
//! server certificate for 127.0.0.1, made with rcgen, and the server settings that
//! use them.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::{Postgres, SYSTEM_USER};

impl Postgres {
    /// A test CA, and a server certificate and key for 127.0.0.1 and `localhost`
    /// signed by it, in the cluster's directory; the key readable by the server only.
    pub(super) fn make_certificates(&mut self) {
        let fail = |e: rcgen::Error| -> ! { panic!("making the test certificates: {e}") };
        let mut ca =
            rcgen::CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| fail(e));
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "tapeseal test PostgreSQL CA");
        let ca_key = rcgen::KeyPair::generate().unwrap_or_else(|e| fail(e));
        let ca_cert = ca.self_signed(&ca_key).unwrap_or_else(|e| fail(e));
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let leaf =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .unwrap_or_else(|e| fail(e));
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| fail(e));
        let cert = leaf.signed_by(&key, &issuer).unwrap_or_else(|e| fail(e));
        let write = |name: &str, text: &str, mode: u32| {
            let path = self.cluster.join(name);
            fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| panic!("protecting {}: {e}", path.display()));
            if let Some(user) = self.run_as {
                std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid))
                    .unwrap_or_else(|e| panic!("giving {} to {SYSTEM_USER}: {e}", path.display()));
            }
            path
        };
        write("server.crt", &cert.pem(), 0o644);
        write("server.key", &key.serialize_pem(), 0o600);
        self.tls = Some(write("ca.crt", &ca_cert.pem(), 0o644));
    }

    /// The server's TLS settings: none, or its certificate and key.
    pub(super) fn tls_settings(&self) -> Vec<String> {
        if self.tls.is_none() {
            return Vec::new();
        }
        let file = |name: &str| self.cluster.join(name).display().to_string();
        vec![
            "-c".into(),
            "ssl=on".into(),
            "-c".into(),
            format!("ssl_cert_file={}", file("server.crt")),
            "-c".into(),
            format!("ssl_key_file={}", file("server.key")),
        ]
    }
}
