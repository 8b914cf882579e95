//! `cargo xtask vectors [--check]`: the deterministic generator of `tests/vectors/`.
//!
//! Every vector is derived from fixed seeds: the KEK pairs in `tests/vectors/keys/`
//! come from `ChaCha20Rng::seed_from_u64(KEY_SEED + n)` (generated only when missing,
//! since RSA key generation is slow), and each vector's DEK, salt, OAEP seeds and
//! plaintext come from a ChaCha20 stream seeded by the vector's name. Failure vectors
//! are made by editing a valid envelope byte by byte; the few that must stay
//! authentic under the edit are rebuilt with HKDF, HMAC and AES-GCM straight from
//! docs/FORMAT.md, independently of the core's code.

mod cases;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use spki::EncodePublicKey;
use tapeseal_core::{
    Dek, Header, KekPublicKey, Layout, MediaKind, Recipient, SealParams, WrapAlgorithm, seal,
};

const KEY_SEED: u64 = 0x7a9e_5ea1_0000_0000;
/// Vector KEKs: id and modulus size.
const KEKS: [(&str, usize); 3] = [("kek-a", 3072), ("kek-b", 3072), ("kek-c", 4096)];
const INLINE_PLAINTEXT_MAX: usize = 64 * 1024;
const CREATED_AT_MS: u64 = 1_767_225_600_000;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

pub(crate) fn run(root: &Path, check: bool) -> Res<()> {
    let dir = root.join("tests/vectors");
    let keys = load_or_make_keys(&dir.join("keys"), check)?;
    let vectors = cases::build(&keys)?;
    let mut stale = Vec::new();
    let mut expected_files: Vec<PathBuf> = Vec::new();
    for (name, value) in &vectors {
        let path = dir.join(format!("{name}.json"));
        let text = serde_json::to_string_pretty(value)? + "\n";
        expected_files.push(path.clone());
        if check {
            if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(path.display().to_string());
            }
        } else {
            fs::write(&path, text)?;
        }
    }
    for entry in fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") && !expected_files.contains(&path) {
            if check {
                stale.push(format!("{} (not made by the generator)", path.display()));
            } else {
                fs::remove_file(&path)?;
            }
        }
    }
    if !stale.is_empty() {
        return Err(format!(
            "test vectors differ from what `cargo xtask vectors` generates:\n  {}",
            stale.join("\n  ")
        )
        .into());
    }
    println!(
        "{} {} vectors in {}",
        if check { "checked" } else { "wrote" },
        vectors.len(),
        dir.display()
    );
    Ok(())
}

struct Kek {
    id: &'static str,
    public: KekPublicKey,
}

fn load_or_make_keys(dir: &Path, check: bool) -> Res<Vec<Kek>> {
    fs::create_dir_all(dir)?;
    let mut keys = Vec::new();
    for (n, (id, bits)) in KEKS.iter().enumerate() {
        let private_path = dir.join(format!("{id}.private.pem"));
        let public_path = dir.join(format!("{id}.public.pem"));
        let private = if private_path.exists() {
            rsa::PrivateKey::from_pkcs8_pem(&fs::read_to_string(&private_path)?)?
        } else if check {
            return Err(format!("{} is missing", private_path.display()).into());
        } else {
            let mut rng = ChaCha20Rng::seed_from_u64(KEY_SEED + n as u64);
            let key = rsa::PrivateKey::new(&mut rng, *bits)?;
            fs::write(&private_path, key.to_pkcs8_pem(LineEnding::LF)?.as_bytes())?;
            key
        };
        let public_pem = private.to_public_key().to_public_key_pem(LineEnding::LF)?;
        if check {
            if fs::read_to_string(&public_path)? != public_pem {
                return Err(
                    format!("{} does not match its private key", public_path.display()).into(),
                );
            }
        } else {
            fs::write(&public_path, &public_pem)?;
        }
        keys.push(Kek {
            id,
            public: KekPublicKey::from_pem(&public_pem)?,
        });
    }
    Ok(keys)
}

fn rng_for(name: &str) -> ChaCha20Rng {
    let digest = Sha256::digest(name.as_bytes());
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&digest);
    ChaCha20Rng::from_seed(seed)
}

struct Case {
    name: String,
    description: String,
    params: SealParams,
    recipients: Vec<Recipient>,
    plaintext: Vec<u8>,
    dek: Dek,
    envelope: Vec<u8>,
}

fn make_case(
    name: &str,
    description: &str,
    keys: &[Kek],
    plain_len: usize,
    params: SealParams,
    wraps: &[(usize, WrapAlgorithm)],
) -> Res<Case> {
    let mut rng = rng_for(name);
    let mut plaintext = vec![0u8; plain_len];
    rng.fill_bytes(&mut plaintext);
    let dek = Dek::generate(&mut rng);
    let recipients: Vec<Recipient> = wraps
        .iter()
        .map(|(k, alg)| Recipient::new(keys[*k].id, keys[*k].public.clone()).with_algorithm(*alg))
        .collect();
    let envelope = seal(&mut rng, &dek, &params, &recipients, &plaintext)?;
    Ok(Case {
        name: name.into(),
        description: description.into(),
        params,
        recipients,
        plaintext,
        dek,
        envelope,
    })
}

fn params(kind: MediaKind, content_type: &str, chunk: u32, rec: &str) -> SealParams {
    SealParams::new("org-vectors", rec, kind, content_type, CREATED_AT_MS).with_chunk_size(chunk)
}

fn success(case: &Case) -> Value {
    let mut v = json!({
        "name": case.name,
        "description": case.description,
        "expect": "success",
        "dek": B64.encode(case.dek.as_bytes()),
        "envelope": B64.encode(&case.envelope),
        "plaintext_len": case.plaintext.len(),
        "plaintext_sha256": hex::encode(Sha256::digest(&case.plaintext)),
        "header": {
            "org_id": case.params.org_id,
            "recording_id": case.params.recording_id,
            "media_kind": case.params.media_kind.name(),
            "content_type": case.params.content_type,
            "created_at_ms": case.params.created_at_ms,
            "chunk_size": case.params.chunk_size,
            "context": case.params.context,
            "stanzas": case.recipients.iter().map(|r| json!({
                "kek_id": r.kek_id, "algorithm": r.algorithm.name()
            })).collect::<Vec<_>>(),
        },
    });
    if case.plaintext.len() <= INLINE_PLAINTEXT_MAX {
        v["plaintext"] = json!(B64.encode(&case.plaintext));
    }
    v
}

fn failure(
    case: &Case,
    name: &str,
    expect: &str,
    description: &str,
    envelope: &[u8],
    dek: &[u8],
) -> (String, Value) {
    (
        name.to_string(),
        json!({
            "name": name,
            "description": format!("{description} (made from {})", case.name),
            "expect": expect,
            "dek": B64.encode(dek),
            "envelope": B64.encode(envelope),
        }),
    )
}

/// Independent re-implementation of the FORMAT.md derivations, used to build the
/// failure vectors that must carry a valid MAC or valid chunk tags.
struct Derived {
    payload: [u8; 32],
    mac: [u8; 32],
}

fn derive(dek: &[u8], salt: &[u8]) -> Derived {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(salt), dek);
    let mut payload = [0u8; 32];
    let mut mac = [0u8; 32];
    hk.expand(b"tapeseal v1 payload key", &mut payload).ok();
    hk.expand(b"tapeseal v1 header mac key", &mut mac).ok();
    Derived { payload, mac }
}

fn remac(header: &mut [u8], mac_key: &[u8; 32]) {
    let n = header.len();
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(mac_key).unwrap_or_else(|_| unreachable!());
    mac.update(&header[..n - 32]);
    header[n - 32..].copy_from_slice(&mac.finalize().into_bytes());
}

fn seal_chunk(key: &[u8; 32], index: u64, last: bool, plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    nonce[3..11].copy_from_slice(&index.to_be_bytes());
    nonce[11] = u8::from(last);
    let mut buf = plain.to_vec();
    let tag = Aes256Gcm::new(key.into())
        .encrypt_inout_detached(&Nonce::from(nonce), &[], buf.as_mut_slice().into())
        .unwrap_or_else(|_| unreachable!());
    buf.extend_from_slice(&tag);
    buf
}

fn set_header_len(bytes: &mut [u8], len: usize) {
    bytes[10..14].copy_from_slice(&(len as u32).to_be_bytes());
}
