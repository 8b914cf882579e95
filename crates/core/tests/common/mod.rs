//! Shared helpers for the core's integration tests: the checked-in vectors and keys.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;
use tapeseal_core::{Dek, Error, KekPublicKey, Opener};

pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

pub struct Vector {
    pub name: String,
    pub expect: String,
    pub dek: Vec<u8>,
    pub envelope: Vec<u8>,
    pub json: Value,
}

pub fn b64(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().expect("base64 string"))
        .expect("valid base64")
}

pub fn vectors() -> Vec<Vector> {
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(vectors_dir())
        .expect("tests/vectors exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for path in paths {
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read vector"))
                .expect("vector is JSON");
        out.push(Vector {
            name: json["name"].as_str().expect("name").to_string(),
            expect: json["expect"].as_str().expect("expect").to_string(),
            dek: b64(&json["dek"]),
            envelope: b64(&json["envelope"]),
            json,
        });
    }
    assert!(out.len() >= 30, "expected the checked-in vectors");
    out
}

/// The vector file's name for an outcome.
pub fn category(result: &Result<Vec<u8>, Error>) -> &'static str {
    match result {
        Ok(_) => "success",
        Err(Error::UnsupportedVersion(_)) => "unsupported version",
        Err(
            Error::MalformedHeader(_) | Error::UnsupportedSuite(_) | Error::IncompleteHeader { .. },
        ) => "header failure",
        Err(Error::DecryptFailed) => "decrypt failure",
        Err(_) => "other error",
    }
}

pub fn kek_public(id: &str) -> KekPublicKey {
    let pem = std::fs::read_to_string(vectors_dir().join(format!("keys/{id}.public.pem")))
        .expect("public key file");
    KekPublicKey::from_pem(&pem).expect("valid KEK")
}

pub fn kek_private(id: &str) -> rsa::PrivateKey {
    use rsa::pkcs8::DecodePrivateKey;
    let pem = std::fs::read_to_string(vectors_dir().join(format!("keys/{id}.private.pem")))
        .expect("private key file");
    rsa::PrivateKey::from_pkcs8_pem(&pem).expect("valid private key")
}

/// Opens an envelope through the streaming `Opener`, pushing `step` bytes at a time.
pub fn open_streaming(envelope: &[u8], dek: &Dek, step: usize) -> Result<Vec<u8>, Error> {
    let mut opener: Opener = Opener::new(dek);
    let mut out = Vec::new();
    for piece in envelope.chunks(step.max(1)) {
        opener.push(piece, &mut out)?;
    }
    opener.finish(&mut out)?;
    Ok(out)
}
