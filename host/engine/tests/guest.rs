//! The core inside wasmtime: every shared vector with the same outcome as the native
//! core, envelopes crossing between the native core and the guest, the component's
//! capabilities, and the store limits holding against hostile input.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use serde_json::Value;
use tapeseal_core::{Dek, KekPublicKey, MediaKind as CoreKind, Recipient as CoreRecipient};
use tapeseal_engine::{
    ErrorCode, HostError, Limits, MediaKind, Recipient, Runtime, SealParams, WrapAlgorithm,
};

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new(Limits::default()).expect("the guest compiles"))
}

fn vectors_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

fn vectors() -> Vec<Value> {
    let mut paths: Vec<_> = std::fs::read_dir(vectors_dir())
        .expect("vectors")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json"))
        .collect()
}

fn b64(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().expect("base64"))
        .expect("valid base64")
}

fn category(r: &Result<Vec<u8>, HostError>) -> String {
    match r {
        Ok(_) => "success".into(),
        Err(e) => match e.code() {
            Some(ErrorCode::DecryptFailed) => "decrypt failure".into(),
            Some(ErrorCode::UnsupportedVersion) => "unsupported version".into(),
            Some(
                ErrorCode::MalformedHeader
                | ErrorCode::UnsupportedSuite
                | ErrorCode::IncompleteHeader,
            ) => "header failure".into(),
            _ => format!("unexpected: {e}"),
        },
    }
}

fn open_streaming(envelope: &[u8], dek: &Dek, step: usize) -> Result<Vec<u8>, HostError> {
    let mut opener = runtime().opener(dek)?;
    let mut out = Vec::new();
    for piece in envelope.chunks(step) {
        out.extend(opener.push(piece)?);
    }
    out.extend(opener.finish()?);
    Ok(out)
}

#[test]
fn every_vector_has_the_same_outcome_in_the_guest() {
    let all = vectors();
    assert!(all.len() >= 40);
    for v in &all {
        let name = v["name"].as_str().expect("name");
        let expect = v["expect"].as_str().expect("expect");
        let envelope = b64(&v["envelope"]);
        let dek = Dek::from_slice(&b64(&v["dek"])).expect("dek");
        let guest = runtime().open(&envelope, &dek);
        assert_eq!(category(&guest), expect, "{name} one-shot");
        let native = tapeseal_core::open(&envelope, &dek);
        assert_eq!(
            guest.as_ref().ok(),
            native.as_ref().ok(),
            "{name}: guest and native differ"
        );
        for step in [4096, 65_552, envelope.len().max(1)] {
            assert_eq!(
                category(&open_streaming(&envelope, &dek, step)),
                expect,
                "{name} by {step}"
            );
        }
        if expect == "success" {
            let info = runtime().inspect(&envelope).expect("inspect");
            assert_eq!(
                info.header.recording_id,
                v["header"]["recording_id"].as_str().expect("id")
            );
            assert_eq!(info.plaintext_len, v["plaintext_len"].as_u64());
            let mut chunks = runtime()
                .chunk_opener(&envelope, &dek, envelope.len() as u64)
                .expect("chunk opener");
            let mut plain = Vec::new();
            for i in 0..chunks.chunk_count().expect("count") {
                let r = chunks.chunk_range(i).expect("range");
                plain.extend(
                    chunks
                        .open_chunk(i, &envelope[r.start as usize..r.end as usize])
                        .expect("chunk"),
                );
            }
            assert_eq!(Some(&plain), guest.as_ref().ok(), "{name} by chunks");
        }
    }
}

fn params(kind: MediaKind) -> SealParams {
    SealParams {
        org_id: "org-1".into(),
        recording_id: "rec-1".into(),
        media_kind: kind,
        content_type: "audio/wav".into(),
        created_at_ms: 1_767_225_600_000,
        context: vec![
            ("queue".into(), "billing".into()),
            ("agent".into(), "a-7".into()),
        ],
        chunk_size: 4096,
    }
}

fn kek_pem(id: &str) -> Vec<u8> {
    std::fs::read(vectors_dir().join(format!("keys/{id}.public.pem"))).expect("kek")
}

#[test]
fn envelopes_cross_between_the_native_core_and_the_guest() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let mut plain = vec![0u8; 100_000];
    rng.fill_bytes(&mut plain);
    let dek = runtime().generate_dek().expect("dek");

    let recipient = Recipient {
        kek_id: "kek-a".into(),
        public_key: kek_pem("kek-a"),
        algorithm: WrapAlgorithm::RsaOaepSha1,
    };
    let from_guest = runtime()
        .seal(&dek, &params(MediaKind::Transcript), &[recipient], &plain)
        .expect("guest seal");
    assert_eq!(
        tapeseal_core::open(&from_guest, &dek).expect("native opens guest's"),
        plain
    );
    let info = tapeseal_core::inspect(&from_guest).expect("inspect");
    assert_eq!(info.header.media_kind(), CoreKind::Transcript);
    assert_eq!(
        info.header.context().get("agent").map(String::as_str),
        Some("a-7")
    );

    let key = KekPublicKey::from_pem_or_der(&kek_pem("kek-b")).expect("kek");
    let native_params =
        tapeseal_core::SealParams::new("org-1", "rec-2", CoreKind::Call, "audio/wav", 5);
    let from_native = tapeseal_core::seal(
        &mut rng,
        &dek,
        &native_params,
        &[CoreRecipient::new("kek-b", key)],
        &plain,
    )
    .expect("native seal");
    assert_eq!(
        runtime()
            .open(&from_native, &dek)
            .expect("guest opens native's"),
        plain
    );

    // Streaming seal in the guest, in uneven pieces.
    let recipient = Recipient {
        kek_id: "kek-c".into(),
        public_key: kek_pem("kek-c"),
        algorithm: WrapAlgorithm::RsaOaepSha256,
    };
    let mut sealer = runtime()
        .sealer(&dek, &params(MediaKind::Call), &[recipient])
        .expect("sealer");
    let header = sealer.header().to_vec();
    let mut streamed = Vec::new();
    for piece in plain.chunks(7777) {
        streamed.extend(sealer.push(piece).expect("push"));
    }
    streamed.extend(sealer.finish().expect("finish"));
    assert!(streamed.starts_with(&header));
    assert_eq!(
        tapeseal_core::open(&streamed, &dek).expect("native opens streamed"),
        plain
    );
}

#[test]
fn guest_errors_arrive_as_codes() {
    let dek = runtime().generate_dek().expect("dek");
    let other = runtime().generate_dek().expect("dek");
    assert_ne!(dek.as_bytes(), other.as_bytes());
    let recipient = Recipient {
        kek_id: "kek-a".into(),
        public_key: kek_pem("kek-a"),
        algorithm: WrapAlgorithm::RsaOaepSha256,
    };
    let envelope = runtime()
        .seal(
            &dek,
            &params(MediaKind::Chat),
            std::slice::from_ref(&recipient),
            b"hi",
        )
        .expect("seal");
    assert_eq!(
        runtime()
            .open(&envelope, &other)
            .err()
            .and_then(|e| e.code()),
        Some(ErrorCode::DecryptFailed)
    );
    assert_eq!(
        runtime()
            .inspect(b"nonsense, not an envelope")
            .err()
            .and_then(|e| e.code()),
        Some(ErrorCode::MalformedHeader)
    );
    let mut bad = params(MediaKind::Chat);
    bad.chunk_size = 3;
    assert_eq!(
        runtime()
            .seal(&dek, &bad, std::slice::from_ref(&recipient), b"x")
            .err()
            .and_then(|e| e.code()),
        Some(ErrorCode::InvalidParameter)
    );
    bad = params(MediaKind::Chat);
    bad.context.push(("queue".into(), "twice".into()));
    assert_eq!(
        runtime()
            .seal(&dek, &bad, std::slice::from_ref(&recipient), b"x")
            .err()
            .and_then(|e| e.code()),
        Some(ErrorCode::InvalidParameter)
    );
    let weak = Recipient {
        public_key: b"not a key".to_vec(),
        ..recipient
    };
    assert_eq!(
        runtime()
            .seal(&dek, &params(MediaKind::Chat), &[weak], b"x")
            .err()
            .and_then(|e| e.code()),
        Some(ErrorCode::InvalidKey)
    );
    let mut opener = runtime().opener(&dek).expect("opener");
    assert!(opener.push(&envelope[..envelope.len() - 3]).is_ok());
    assert_eq!(
        opener.finish().err().and_then(|e| e.code()),
        Some(ErrorCode::DecryptFailed)
    );
}

/// The guest's imports: the host's chunk AEAD, randomness, plus the interfaces Rust's std links on
/// wasm32-wasip2, which the host satisfies with an empty WASI context. A new entry
/// here is a new capability and must be reviewed.
/// Compared without the `@0.2.x` version, which follows the Rust toolchain.
const EXPECTED_IMPORTS: &[&str] = &[
    "tapeseal:core/chunk-aead",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stderr",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stderr",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
];

#[test]
fn the_component_imports_no_new_capability() {
    let imports: Vec<String> = runtime()
        .component_imports()
        .into_iter()
        .map(|i| i.split('@').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(imports, EXPECTED_IMPORTS, "the guest's imports changed");
    assert!(imports.iter().any(|i| i.starts_with("wasi:random/random")));
    for forbidden in ["wasi:sockets", "wasi:http", "wasi:filesystem/preopens"] {
        assert!(
            !imports.iter().any(|i| i.starts_with(forbidden)),
            "{forbidden} imported"
        );
    }
}

fn big_envelope(len: usize, chunk_size: u32) -> (Vec<u8>, Dek, Vec<u8>) {
    let mut rng = ChaCha20Rng::seed_from_u64(len as u64);
    let mut plain = vec![0u8; len];
    rng.fill_bytes(&mut plain);
    let dek = Dek::generate(&mut rng);
    let key = KekPublicKey::from_pem_or_der(&kek_pem("kek-a")).expect("kek");
    let params = tapeseal_core::SealParams::new("org", "big", CoreKind::Call, "audio/wav", 0)
        .with_chunk_size(chunk_size);
    let envelope = tapeseal_core::seal(
        &mut rng,
        &dek,
        &params,
        &[CoreRecipient::new("kek-a", key)],
        &plain,
    )
    .expect("seal");
    (envelope, dek, plain)
}

#[test]
fn the_memory_cap_stops_a_guest_and_the_runtime_carries_on() {
    let small = Runtime::new(Limits {
        memory_bytes: 4 << 20,
        ..Limits::default()
    })
    .expect("runtime");
    let (envelope, dek, plain) = big_envelope(8 << 20, 65_536);
    // One-shot open needs the whole 8 MiB envelope and plaintext inside the guest.
    let result = small.open(&envelope, &dek).map(|p| p.len());
    assert!(
        matches!(result, Err(HostError::LimitExceeded("memory cap"))),
        "expected the memory cap: {result:?}"
    );
    // Streaming keeps the guest small: the same envelope opens under the same cap.
    let mut opener = small.opener(&dek).expect("opener");
    let mut out = Vec::new();
    for piece in envelope.chunks(256 << 10) {
        out.extend(opener.push(piece).expect("push under the cap"));
    }
    out.extend(opener.finish().expect("finish"));
    assert_eq!(out, plain);
    // A hostile header declaring 16 MiB chunks makes the guest buffer a chunk it will
    // never be able to hold: the cap stops it.
    let (huge, dek2, _) = big_envelope(6 << 20, 16 << 20);
    let mut opener = small.opener(&dek2).expect("opener");
    let result = huge
        .chunks(1 << 20)
        .try_for_each(|p| opener.push(p).map(drop));
    assert!(
        matches!(result, Err(HostError::LimitExceeded("memory cap"))),
        "{result:?}"
    );
    let (fine, fine_dek, _) = big_envelope(1000, 1024);
    assert_eq!(
        small
            .open(&fine, &fine_dek)
            .expect("the runtime carries on")
            .len(),
        1000
    );
}

#[test]
fn the_execution_budget_stops_a_long_call() {
    let tight = Runtime::new(Limits {
        fuel_base: 5_000_000,
        fuel_per_byte: 0,
        ..Limits::default()
    })
    .expect("runtime");
    let (envelope, dek, _) = big_envelope(4 << 20, 65_536);
    let result = tight.open(&envelope, &dek).map(|p| p.len());
    assert!(
        matches!(result, Err(HostError::LimitExceeded("execution budget"))),
        "expected the fuel limit: {result:?}"
    );
    let (small, small_dek, _) = big_envelope(100, 1024);
    assert_eq!(
        tight
            .open(&small, &small_dek)
            .expect("a small open fits")
            .len(),
        100
    );
}

#[cfg(unix)]
#[test]
fn the_compiled_guest_cache_is_private_and_refused_when_others_can_write_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let fresh = dir.path().join("a/b/cache");
    Runtime::with_cache_dir(Limits::default(), Some(fresh.clone())).expect("runtime");
    let mode = std::fs::metadata(&fresh)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "created owner-only");

    let open = dir.path().join("open");
    std::fs::create_dir(&open).expect("dir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let refused = Runtime::with_cache_dir(Limits::default(), Some(open)).expect_err("refused");
    assert!(
        refused.to_string().contains("writable by other users"),
        "{refused}"
    );
}

#[cfg(unix)]
#[test]
fn the_compiled_guest_is_kept_mapped_again_and_replaced_when_damaged() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let compiled = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
            .collect()
    };
    // The loaded guest runs: it makes a DEK and refuses what is not a header.
    let works = |runtime: &Runtime| {
        runtime.generate_dek().expect("dek");
        assert!(runtime.header_length(&[0u8; 4]).is_err());
    };
    // The first runtime compiles and keeps the result, owner-only.
    works(&Runtime::with_cache_dir(Limits::default(), Some(dir.path().into())).expect("runtime"));
    let files = compiled();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    let meta = std::fs::metadata(file).expect("meta");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // The next maps the same file: not written again.
    works(&Runtime::with_cache_dir(Limits::default(), Some(dir.path().into())).expect("runtime"));
    let again = std::fs::metadata(file).expect("meta");
    assert_eq!(
        (again.ino(), again.mtime_nsec()),
        (meta.ino(), meta.mtime_nsec())
    );

    // A damaged file is refused, compiled again and replaced.
    std::fs::write(file, b"not a compiled guest").expect("damage");
    works(&Runtime::with_cache_dir(Limits::default(), Some(dir.path().into())).expect("runtime"));
    assert_eq!(compiled(), files);
    let replaced = std::fs::read(file).expect("read");
    assert!(replaced.len() > 1000 && !replaced.starts_with(b"not a"));
}

/// Fuel per input byte that streaming honest input uses, at the largest over
/// chunk sizes from the smallest the format allows to the largest the CLI uses.
fn honest_fuel_per_byte() -> f64 {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let mut plain = vec![0u8; 4 << 20];
    rng.fill_bytes(&mut plain);
    let dek = runtime().generate_dek().expect("dek");
    let recipient = Recipient {
        kek_id: "kek-a".into(),
        public_key: kek_pem("kek-a"),
        algorithm: WrapAlgorithm::RsaOaepSha256,
    };
    let mut most: f64 = 0.0;
    for chunk_size in [4096, 65_536, 1 << 20] {
        let params = SealParams {
            chunk_size,
            ..params(MediaKind::Call)
        };
        let mut sealer = runtime()
            .sealer(&dek, &params, std::slice::from_ref(&recipient))
            .expect("sealer");
        let mut envelope = Vec::new();
        for piece in plain.chunks(1 << 20) {
            envelope.extend(sealer.push(piece).expect("push"));
            most = most.max(sealer.last_fuel_used(piece.len()) as f64 / piece.len() as f64);
        }
        envelope.extend(sealer.finish().expect("finish"));
        let mut opener = runtime().opener(&dek).expect("opener");
        for piece in envelope.chunks(1 << 20) {
            opener.push(piece).expect("push");
            most = most.max(opener.last_fuel_used(piece.len()) as f64 / piece.len() as f64);
        }
    }
    most
}

#[test]
fn the_default_fuel_budget_is_about_ten_times_what_honest_streams_use() {
    let used = honest_fuel_per_byte();
    let budget = Limits::default().fuel_per_byte as f64;
    assert!(
        (5.0..=50.0).contains(&(budget / used)),
        "honest streams use {used:.1} fuel a byte; the default budget is {budget} ({:.0}x)",
        budget / used
    );
}
