//! The core's public API beyond the vectors: key parsing, secrets in `Debug`,
//! rewrap, streaming memory bounds, parameter checks, error wording and error codes.

mod common;

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use rsa::pkcs1::{EncodeRsaPublicKey, LineEnding};
use rsa::pkcs8::EncodePublicKey;
use rsa::traits::PublicKeyParts;
use tapeseal_core::{
    Decryptor, Dek, Error, ErrorCode, Header, KekPublicKey, Layout, MediaKind, Opener, Recipient,
    RewrapMode, SealParams, Sealer, WrapAlgorithm, inspect, open, rewrap, rewrap_header, seal,
};

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(42)
}

fn params() -> SealParams {
    SealParams::new(
        "org-1",
        "rec-1",
        MediaKind::Call,
        "audio/wav",
        1_700_000_000_000,
    )
    .with_chunk_size(1024)
}

fn kek_a() -> Recipient {
    Recipient::new("kek-a", common::kek_public("kek-a"))
}

fn kek_b() -> Recipient {
    Recipient::new("kek-b", common::kek_public("kek-b")).with_algorithm(WrapAlgorithm::RsaOaepSha1)
}

#[test]
fn kek_public_keys_parse_from_every_supported_encoding() {
    let public = common::kek_private("kek-a").to_public_key();
    let spki_der = public.to_public_key_der().expect("spki").into_vec();
    let pkcs1_der = public.to_pkcs1_der().expect("pkcs1").into_vec();
    let spki_pem = public.to_public_key_pem(LineEnding::LF).expect("pem");
    let pkcs1_pem = public.to_pkcs1_pem(LineEnding::CRLF).expect("pem");
    let keys = [
        KekPublicKey::from_der(&spki_der).expect("SPKI DER"),
        KekPublicKey::from_der(&pkcs1_der).expect("PKCS#1 DER"),
        KekPublicKey::from_pem(&spki_pem).expect("SPKI PEM"),
        KekPublicKey::from_pem(&pkcs1_pem).expect("PKCS#1 PEM"),
        KekPublicKey::from_pem_or_der(pkcs1_pem.as_bytes()).expect("sniffed PEM"),
        KekPublicKey::from_pem_or_der(&spki_der).expect("sniffed DER"),
    ];
    for key in &keys {
        assert_eq!(key, &keys[0]);
        assert_eq!(key.bits(), 3072);
        assert_eq!(key.wrapped_len(), 384);
        assert_eq!(key.to_spki_der().expect("encode"), spki_der);
    }
}

#[test]
fn weak_or_malformed_keks_are_refused_with_a_reason() {
    let mut rng = rng();
    let small = rsa::PrivateKey::new(&mut rng, 2048)
        .expect("keygen")
        .to_public_key();
    let pem = small.to_public_key_pem(LineEnding::LF).expect("pem");
    let err = KekPublicKey::from_pem(&pem).expect_err("2048-bit refused");
    assert!(err.to_string().contains("3072 or 4096"), "{err}");

    let base = common::kek_private("kek-a").to_public_key();
    let e3 = rsa::PublicKey::new(base.n().as_ref().clone(), rsa::BoxedUint::from(3u32))
        .expect("e=3 key");
    let err = KekPublicKey::from_der(&e3.to_pkcs1_der().expect("der").into_vec())
        .expect_err("e=3 refused");
    assert!(err.to_string().contains("exponent"), "{err}");

    for junk in [
        &b""[..],
        b"not a key",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
    ] {
        assert!(matches!(
            KekPublicKey::from_pem_or_der(junk),
            Err(Error::InvalidKey(_))
        ));
    }
}

#[test]
fn secrets_never_show_in_debug_output() {
    let mut rng = rng();
    let dek = Dek::generate(&mut rng);
    let hex_dek: String = dek.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let debug = format!("{dek:?}");
    assert_eq!(debug, "Dek([redacted])");
    let sealer: Sealer = Sealer::new(&mut rng, &dek, &params(), &[kek_a()]).expect("sealer");
    let opener: Opener = Opener::new(&dek);
    let envelope = seal(&mut rng, &dek, &params(), &[kek_a()], b"x").expect("seal");
    let decryptor: Decryptor =
        Decryptor::new(Header::parse(&envelope).expect("header"), &dek).expect("verified");
    for text in [
        format!("{sealer:?}"),
        format!("{opener:?}"),
        format!("{decryptor:?}"),
        format!("{:?}", kek_a()),
    ] {
        assert!(!text.contains(&hex_dek), "{text}");
        assert!(!text.contains(&format!("{:?}", dek.as_bytes())), "{text}");
    }
    assert!(Dek::from_slice(&[0u8; 31]).is_err());
}

#[test]
fn decrypt_errors_say_only_could_not_decrypt() {
    let mut rng = rng();
    let dek = Dek::generate(&mut rng);
    let envelope = seal(&mut rng, &dek, &params(), &[kek_a()], b"secret").expect("seal");
    let other = Dek::generate(&mut rng);
    let mut tampered = envelope.clone();
    *tampered.last_mut().expect("byte") ^= 1;
    for (bytes, key) in [(&envelope, &other), (&tampered, &dek)] {
        let err = open(bytes, key).expect_err("refused");
        assert_eq!(err, Error::DecryptFailed);
        assert_eq!(err.to_string(), "could not decrypt");
    }
}

#[test]
fn rewrap_replaces_or_adds_stanzas_and_leaves_every_payload_byte_alone() {
    let mut rng = rng();
    let dek = Dek::generate(&mut rng);
    let plain: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    let envelope = seal(&mut rng, &dek, &params(), &[kek_a()], &plain).expect("seal");
    let old_len = Header::parse(&envelope).expect("header").header_len();

    let replaced =
        rewrap(&mut rng, &envelope, &dek, &[kek_b()], RewrapMode::Replace).expect("rewrap");
    let new_header = Header::parse(&replaced).expect("header");
    assert_eq!(
        &replaced[new_header.header_len()..],
        &envelope[old_len..],
        "payload bytes changed"
    );
    let ids: Vec<_> = new_header
        .stanzas()
        .iter()
        .map(|s| s.kek_id.as_str())
        .collect();
    assert_eq!(ids, ["kek-b"]);
    assert_eq!(
        new_header.stanzas()[0].algorithm,
        WrapAlgorithm::RsaOaepSha1
    );
    assert_eq!(open(&replaced, &dek).expect("opens"), plain);

    let added = rewrap(&mut rng, &replaced, &dek, &[kek_a()], RewrapMode::Add).expect("add");
    let added_header = Header::parse(&added).expect("header");
    let ids: Vec<_> = added_header
        .stanzas()
        .iter()
        .map(|s| s.kek_id.as_str())
        .collect();
    assert_eq!(ids, ["kek-b", "kek-a"]);
    assert_eq!(&added[added_header.header_len()..], &envelope[old_len..]);
    assert_eq!(open(&added, &dek).expect("opens"), plain);
    let old_header = Header::parse(&envelope).expect("header");
    assert_eq!(added_header.salt(), old_header.salt());
    assert_eq!(added_header.commitment(), old_header.commitment());

    // Re-adding a KEK that is present replaces its stanza instead of duplicating it.
    let again = rewrap_header(&mut rng, &added, &dek, &[kek_a()], RewrapMode::Add).expect("add");
    assert_eq!(again.stanzas().len(), 2);

    let stranger = Dek::generate(&mut rng);
    assert_eq!(
        rewrap(
            &mut rng,
            &envelope,
            &stranger,
            &[kek_b()],
            RewrapMode::Replace
        ),
        Err(Error::DecryptFailed)
    );
    assert!(matches!(
        rewrap(&mut rng, &envelope, &dek, &[], RewrapMode::Replace),
        Err(Error::InvalidParameter(_))
    ));
}

#[test]
fn the_sealer_emits_each_chunk_as_soon_as_it_is_known_not_to_be_last() {
    let mut rng = rng();
    let dek = Dek::generate(&mut rng);
    let mut sealer: Sealer = Sealer::new(&mut rng, &dek, &params(), &[kek_a()]).expect("sealer");
    let header_len = sealer.header().header_len();
    let mut out = Vec::new();
    sealer.push(&[1u8; 1024], &mut out).expect("push");
    assert_eq!(
        out.len(),
        header_len,
        "a full chunk is held until more data arrives"
    );
    sealer.push(&[2u8; 3000], &mut out).expect("push");
    assert_eq!(
        out.len(),
        header_len + 3 * (1024 + 16),
        "three chunks out, 952 bytes held"
    );
    sealer.finish(&mut out).expect("finish");
    assert_eq!(out.len(), header_len + 4024 + 4 * 16);

    let mut opener: Opener = Opener::new(&dek);
    let mut plain = Vec::new();
    opener
        .push(&out[..header_len + 1040], &mut plain)
        .expect("push");
    assert!(
        plain.is_empty(),
        "a chunk is released only once it cannot be the last"
    );
    opener
        .push(&out[header_len + 1040..header_len + 1041], &mut plain)
        .expect("push");
    assert_eq!(plain, [1u8; 1024]);
    assert_eq!(opener.header().expect("verified").recording_id(), "rec-1");
}

#[test]
fn an_opener_refuses_input_after_a_failure() {
    let mut rng = rng();
    let dek = Dek::generate(&mut rng);
    let wrong = Dek::generate(&mut rng);
    let envelope = seal(&mut rng, &dek, &params(), &[kek_a()], &[0u8; 4000]).expect("seal");
    let mut opener: Opener = Opener::new(&wrong);
    let mut out = Vec::new();
    assert_eq!(opener.push(&envelope, &mut out), Err(Error::DecryptFailed));
    assert_eq!(opener.push(&envelope, &mut out), Err(Error::DecryptFailed));
    assert!(out.is_empty());
    assert_eq!(opener.finish(&mut out), Err(Error::DecryptFailed));

    let empty: Opener = Opener::new(&dek);
    assert!(matches!(
        empty.finish(&mut out),
        Err(Error::IncompleteHeader { .. })
    ));
}

#[test]
fn random_access_opens_any_chunk_and_refuses_misplaced_ones() {
    let mut rng = rng();
    let dek = Dek::generate(&mut rng);
    let plain: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let envelope = seal(&mut rng, &dek, &params(), &[kek_a()], &plain).expect("seal");
    let info = inspect(&envelope).expect("inspect");
    let layout = info.layout.expect("layout");
    assert_eq!(layout.chunk_count(), 10);
    let decryptor: Decryptor = Decryptor::new(info.header, &dek).expect("verified");
    let slice = |r: std::ops::Range<u64>| &envelope[r.start as usize..r.end as usize];
    let (range, first) = layout.ciphertext_range_for(5000..5100).expect("range");
    assert_eq!(first, 4);
    let chunk = decryptor
        .open_chunk(4, slice(range), false)
        .expect("chunk 4");
    assert_eq!(chunk, &plain[4096..5120]);
    let last = decryptor
        .open_chunk(9, slice(layout.chunk_range(9).expect("range")), true)
        .expect("last chunk");
    assert_eq!(last, &plain[9216..]);
    // The right bytes under the wrong index or final flag do not open.
    let four = slice(layout.chunk_range(4).expect("range"));
    assert!(decryptor.open_chunk(5, four, false).is_err());
    assert!(decryptor.open_chunk(4, four, true).is_err());
    assert!(layout.chunk_range(10).is_err());
    assert!(layout.chunks_for(0..0).is_err());
    assert!(layout.chunks_for(0..10_001).is_err());
    assert!(Layout::new(decryptor.header(), envelope.len() as u64 - 790).is_err());
}

#[test]
fn parameters_the_format_cannot_carry_are_refused_before_sealing() {
    let mut rng = rng();
    let dek = Dek::generate(&mut rng);
    let long = "x".repeat(257);
    let cases = [
        SealParams {
            org_id: String::new(),
            ..params()
        },
        SealParams {
            recording_id: long.clone(),
            ..params()
        },
        SealParams {
            content_type: "audio/wav\n".into(),
            ..params()
        },
        SealParams {
            chunk_size: 15,
            ..params()
        },
        SealParams {
            chunk_size: 16 * 1024 * 1024 + 1,
            ..params()
        },
        params().with_context("", "empty key"),
        params().with_context("k", "v".repeat(1025)),
        params().with_context("nul", "a\0b"),
    ];
    for p in cases {
        let err = seal(&mut rng, &dek, &p, &[kek_a()], b"x").expect_err("refused");
        assert!(matches!(err, Error::InvalidParameter(_)), "{p:?}: {err:?}");
    }
    assert!(matches!(
        seal(&mut rng, &dek, &params(), &[], b"x"),
        Err(Error::InvalidParameter(_))
    ));
    let seventeen: Vec<Recipient> = (0..17)
        .map(|i| Recipient::new(format!("kek-{i}"), common::kek_public("kek-a")))
        .collect();
    assert!(matches!(
        seal(&mut rng, &dek, &params(), &seventeen, b"x"),
        Err(Error::InvalidParameter(_))
    ));
    let sixteen = &seventeen[..16];
    let envelope = seal(&mut rng, &dek, &params(), sixteen, b"x").expect("16 stanzas fit");
    assert_eq!(
        inspect(&envelope).expect("inspect").header.stanzas().len(),
        16
    );
    let twins = [kek_a(), kek_a()];
    assert!(matches!(
        seal(&mut rng, &dek, &params(), &twins, b"x"),
        Err(Error::InvalidParameter(_))
    ));
}

#[test]
fn every_media_kind_round_trips_by_id_and_name() {
    for kind in MediaKind::ALL {
        assert_eq!(MediaKind::from_id(kind.id()), Some(kind));
        assert_eq!(MediaKind::from_name(kind.name()), Some(kind));
        let mut rng = rng();
        let dek = Dek::generate(&mut rng);
        let p = SealParams {
            media_kind: kind,
            ..params()
        };
        let envelope = seal(&mut rng, &dek, &p, &[kek_a()], b"body").expect("seal");
        assert_eq!(
            inspect(&envelope).expect("inspect").header.media_kind(),
            kind
        );
    }
    assert_eq!(MediaKind::from_id(0), None);
    assert_eq!(
        WrapAlgorithm::from_name("rsa-oaep-sha1"),
        Some(WrapAlgorithm::RsaOaepSha1)
    );
    assert_eq!(WrapAlgorithm::from_id(3), None);
}

#[test]
fn an_opener_keeps_reporting_its_first_error() {
    let mut rng = rng();
    let dek = Dek::generate(&mut rng);
    let mut envelope = seal(&mut rng, &dek, &params(), &[kek_a()], b"x").expect("seal");
    envelope[9] = 2;
    let mut opener: Opener = Opener::new(&dek);
    let mut out = Vec::new();
    assert_eq!(
        opener.push(&envelope, &mut out),
        Err(Error::UnsupportedVersion(2))
    );
    assert_eq!(
        opener.push(b"more", &mut out),
        Err(Error::UnsupportedVersion(2))
    );
    assert_eq!(opener.finish(&mut out), Err(Error::UnsupportedVersion(2)));
}

/// The contract every face relies on: these names, in this order (the WIT enum
/// `error-code` lists them in the same order).
const CODE_NAMES: [&str; 34] = [
    "malformed_header",
    "unsupported_version",
    "unsupported_suite",
    "incomplete_header",
    "decrypt_failed",
    "invalid_key",
    "invalid_dek",
    "invalid_parameter",
    "out_of_range",
    "format_limit",
    "invalid_state",
    "wrap_failed",
    "random_unavailable",
    "resource_limit",
    "busy",
    "timeout",
    "unavailable",
    "unknown_key",
    "kek_in_use",
    "key_service_unavailable",
    "key_refused",
    "key_service_failed",
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "payload_too_large",
    "range_not_satisfiable",
    "conflict",
    "unsupported_media_type",
    "unreadable_recording",
    "io",
    "internal",
];

#[test]
fn error_codes_are_the_documented_list_and_names_round_trip() {
    let names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.name()).collect();
    assert_eq!(names, CODE_NAMES);
    let mut seen = std::collections::HashSet::new();
    for (index, &code) in ErrorCode::ALL.iter().enumerate() {
        let name = code.name();
        assert!(seen.insert(code), "{code:?} is listed twice");
        assert!(
            !name.is_empty()
                && !name.starts_with('_')
                && !name.ends_with('_')
                && !name.contains("__")
                && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{name} is not snake_case"
        );
        assert_eq!(ErrorCode::from_name(name), Some(code));
        assert_eq!(code.to_string(), name);
        assert_eq!(code.index(), index);
        assert_eq!(ErrorCode::from_index(index), Some(code));
    }
    assert_eq!(ErrorCode::from_index(ErrorCode::ALL.len()), None);
    for other in [
        "",
        "DECRYPT_FAILED",
        "decrypt-failed",
        "DecryptFailed",
        " io",
    ] {
        assert_eq!(ErrorCode::from_name(other), None, "{other:?}");
    }
}

#[test]
fn every_core_error_has_its_code() {
    let cases = [
        (
            Error::MalformedHeader("bad magic"),
            ErrorCode::MalformedHeader,
        ),
        (Error::UnsupportedVersion(2), ErrorCode::UnsupportedVersion),
        (Error::UnsupportedSuite(9), ErrorCode::UnsupportedSuite),
        (
            Error::IncompleteHeader {
                needed: 100,
                available: 14,
            },
            ErrorCode::IncompleteHeader,
        ),
        (Error::DecryptFailed, ErrorCode::DecryptFailed),
        (Error::InvalidKey("too small"), ErrorCode::InvalidKey),
        (Error::InvalidDek, ErrorCode::InvalidDek),
        (
            Error::InvalidParameter("empty"),
            ErrorCode::InvalidParameter,
        ),
        (Error::WrapFailed, ErrorCode::WrapFailed),
        (Error::OutOfRange("index"), ErrorCode::OutOfRange),
        (Error::LimitExceeded("chunks"), ErrorCode::FormatLimit),
        (Error::InvalidState("finished"), ErrorCode::InvalidState),
    ];
    for (error, code) in cases {
        assert_eq!(error.code(), code, "{error:?}");
    }
    // And from real operations.
    let mut rng = rng();
    let dek = Dek::generate(&mut rng);
    let envelope = seal(&mut rng, &dek, &params(), &[kek_a()], b"x").expect("seal");
    let wrong = Dek::generate(&mut rng);
    let code = |r: Result<Vec<u8>, Error>| r.expect_err("fails").code();
    assert_eq!(code(open(&envelope, &wrong)), ErrorCode::DecryptFailed);
    assert_eq!(
        code(open(b"not an envelope", &dek)),
        ErrorCode::MalformedHeader
    );
    assert_eq!(
        Dek::from_slice(&[0; 31]).expect_err("short").code(),
        ErrorCode::InvalidDek
    );
}

/// Lines of `text` between `start` and the next line that is exactly `end`.
fn section<'a>(text: &'a str, start: &str, end: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|line| line.trim() != start)
        .skip(1)
        .take_while(|line| line.trim() != end)
        .map(str::trim)
        .collect()
}

#[test]
fn the_wit_enum_lists_every_code_in_order() {
    let wit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../wit/tapeseal.wit"
    ))
    .expect("read wit/tapeseal.wit");
    let cases: Vec<&str> = section(&wit, "enum error-code {", "}")
        .into_iter()
        .filter(|line| !line.is_empty() && !line.starts_with("//"))
        .map(|line| line.trim_end_matches(','))
        .collect();
    let expected: Vec<String> = ErrorCode::ALL
        .iter()
        .map(|c| c.name().replace('_', "-"))
        .collect();
    assert_eq!(cases, expected);
}

#[test]
fn docs_errors_md_has_one_row_per_code_in_order() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ERRORS.md"))
        .expect("read docs/ERRORS.md");
    let rows: Vec<Vec<&str>> = doc
        .lines()
        .skip_while(|line| !line.starts_with("| code |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| line.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), ErrorCode::ALL.len(), "rows of the code table");
    for (row, code) in rows.iter().zip(ErrorCode::ALL) {
        let name = code.name();
        assert_eq!(row.len(), 6, "{row:?}");
        assert_eq!(row[0], format!("`{name}`"));
        assert_eq!(row[4], format!("`{}`", name.to_ascii_uppercase()));
        assert_eq!(row[5], format!("`{}`", name.replace('_', "-")));
    }
}
