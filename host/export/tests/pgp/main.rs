//! OpenPGP re-encryption against the real GnuPG: keys made and exported by `gpg`, messages
//! made by `tapeseal_export::pgp` and decrypted by `gpg`. Needs Debian's `gnupg` (GnuPG
//! 2.2): without it these tests fail, they do not skip.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::{Read, Write};
use std::path::PathBuf;

use pgp::composed::{
    EncryptionCaps, KeyType, SecretKeyParamsBuilder, SignedPublicKey, SubkeyParamsBuilder,
};
use pgp::types::KeyVersion;
use tapeseal_export::pgp::{PARTIAL_CHUNK_SIZE, PgpError, PgpRecipient};

mod gpg;

use gpg::Gpg;

const UID: &str = "Export Test <export@example.com>";

/// Deterministic pseudo-random bytes (xorshift64*), so a failure can be reproduced.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A reader that hands out at most 1000 bytes per call, to exercise short reads.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0.len()).min(1000);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// Encrypts `plain` to `recipient` into a file in the gpg home, checks the returned
/// byte count, returns the path.
fn encrypt_to_file(gpg: &Gpg, recipient: &PgpRecipient, name: &str, plain: &[u8]) -> PathBuf {
    let path = gpg.path(&format!("{name}.gpg"));
    let mut file = std::fs::File::create(&path).unwrap();
    let written = recipient.encrypt(name, Trickle(plain), &mut file).unwrap();
    file.flush().unwrap();
    drop(file);
    assert_eq!(
        written,
        std::fs::metadata(&path).unwrap().len(),
        "returned byte count"
    );
    path
}

/// Parses the binary and armored exports of `fpr`, checks fingerprint and chosen key id
/// against gpg's, round-trips empty, small and multi-chunk inputs through `gpg --decrypt`,
/// and checks the packets gpg sees.
fn round_trip(gpg: &Gpg, fpr: &str) -> PgpRecipient {
    let binary = PgpRecipient::parse(&gpg.export(fpr, false)).unwrap();
    let armored = PgpRecipient::parse(&gpg.export(fpr, true)).unwrap();

    assert_eq!(binary.fingerprint(), gpg.primary_fingerprint(fpr));
    assert_eq!(armored.fingerprint(), binary.fingerprint());
    assert_eq!(binary.fingerprint().len(), 40);
    let enc_ids = gpg.encryption_subkey_ids(fpr);
    assert_eq!(
        enc_ids.len(),
        1,
        "one encryption subkey expected: {enc_ids:?}"
    );
    assert_eq!(binary.encryption_key_id(), enc_ids[0]);
    assert_eq!(armored.encryption_key_id(), enc_ids[0]);
    let debug = format!("{binary:?}");
    assert!(debug.contains(fpr), "{debug}");

    let big = pseudo_random(3 * 1024 * 1024 + 12_345, 0x5EED);
    assert!(big.len() > 40 * PARTIAL_CHUNK_SIZE);
    for (name, plain) in [
        ("empty.wav", Vec::new()),
        ("small.wav", b"hello, recording".to_vec()),
        ("recording.wav", big),
    ] {
        for recipient in [&binary, &armored] {
            let path = encrypt_to_file(gpg, recipient, name, &plain);
            let decrypted = gpg.decrypt(&path);
            assert!(decrypted == plain, "{name}: decrypted bytes differ");
        }
        let path = gpg.path(&format!("{name}.gpg"));
        let packets = gpg.list_packets(&path);
        let pkesk = format!(
            ":pubkey enc packet: version 3, algo {}, keyid {}",
            if binary_is_rsa(gpg, fpr) { 1 } else { 18 },
            enc_ids[0]
        );
        assert!(
            packets.contains(&pkesk),
            "{name}: no `{pkesk}` in\n{packets}"
        );
        assert_eq!(
            packets.matches(":pubkey enc packet:").count(),
            1,
            "{packets}"
        );
        assert!(packets.contains(":encrypted data packet:"), "{packets}");
        assert!(
            packets.contains("mdc_method: 2"),
            "SEIPD v1 expected:\n{packets}"
        );
        assert!(!packets.to_lowercase().contains("aead"), "{packets}");
        assert!(!packets.contains(":compressed packet:"), "{packets}");
        assert!(
            packets.contains(&format!("mode b (62), created 0, name=\"{name}\"")),
            "binary literal named {name} expected:\n{packets}"
        );
        if name == "recording.wav" {
            // Streamed: partial body lengths, at both levels.
            assert!(packets.contains("length: unknown"), "{packets}");
            assert!(packets.contains("raw data: unknown length"), "{packets}");
        }
    }
    binary
}

fn binary_is_rsa(gpg: &Gpg, fpr: &str) -> bool {
    gpg.colons(fpr)
        .lines()
        .find(|l| l.starts_with("sub:") && l.split(':').nth(11).is_some_and(|c| c.contains('e')))
        .is_some_and(|l| l.split(':').nth(3) == Some("1"))
}

fn key_error(bytes: &[u8]) -> String {
    match PgpRecipient::parse(bytes) {
        Err(PgpError::Key(msg)) => msg,
        Err(other) => panic!("expected PgpError::Key, got {other:?}"),
        Ok(r) => panic!("expected the key to be refused, got {r:?}"),
    }
}

#[test]
fn rsa3072_key_round_trips_through_gnupg() {
    let gpg = Gpg::new();
    // `rsa3072 default` makes a sign+certify primary only; add an RSA encryption subkey,
    // as `gpg --full-gen-key` "RSA and RSA" does.
    let fpr = gpg.gen_key(UID, "rsa3072", "sign", "never");
    gpg.add_key(&fpr, "rsa3072", "encr", "never");
    round_trip(&gpg, &fpr);
}

#[test]
fn curve25519_key_round_trips_through_gnupg() {
    let gpg = Gpg::new();
    // GnuPG 2.2's default: an ed25519 primary with a cv25519 ECDH encryption subkey.
    let fpr = gpg.gen_key(UID, "future-default", "default", "never");
    round_trip(&gpg, &fpr);
}

#[test]
fn partial_length_boundaries_round_trip() {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key(UID, "future-default", "default", "never");
    let recipient = PgpRecipient::parse(&gpg.export(&fpr, false)).unwrap();
    let name = "b.wav";
    let chunk = PARTIAL_CHUNK_SIZE;
    // The literal body is 6 + name + data bytes; it ends exactly on a part boundary
    // (leaving an empty last part) at these data lengths:
    let literal_prefix = 6 + name.len();
    // A literal packet in one part of 8384 bytes or more is 1 + 5 + body bytes; the SEIPD
    // body is 1 (version) + 18 (prefix) + literal + 22 (MDC): one full part exactly at:
    let seipd_exact = chunk - 1 - 18 - 22 - 6 - literal_prefix;
    let mut lengths = vec![0, 1, 191, 192, 8383 - literal_prefix, 8384 - literal_prefix];
    for center in [
        chunk - literal_prefix,
        2 * chunk - literal_prefix,
        seipd_exact,
    ] {
        lengths.extend([center - 1, center, center + 1]);
    }
    for len in lengths {
        let plain = pseudo_random(len, len as u64);
        let path = encrypt_to_file(&gpg, &recipient, name, &plain);
        assert!(
            gpg.decrypt(&path) == plain,
            "length {len}: decrypted bytes differ"
        );
    }
}

#[test]
fn encrypts_to_the_newest_encryption_subkey() {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key(UID, "future-default", "default", "never");
    let first = gpg.encryption_subkey_ids(&fpr);
    // Key creation times have one-second resolution.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    gpg.add_key(&fpr, "cv25519", "encr", "never");
    let ids = gpg.encryption_subkey_ids(&fpr);
    assert_eq!(ids.len(), 2);
    let newest = ids.iter().find(|id| !first.contains(id)).unwrap();
    let recipient = PgpRecipient::parse(&gpg.export(&fpr, true)).unwrap();
    assert_eq!(&recipient.encryption_key_id(), newest);
    let plain = pseudo_random(100_000, 7);
    let path = encrypt_to_file(&gpg, &recipient, "x.wav", &plain);
    assert!(gpg.decrypt(&path) == plain);

    // Once the newest expires, the older one is used again.
    let newest_fpr = gpg
        .colons(&fpr)
        .lines()
        .skip_while(|l| !(l.starts_with("sub:") && l.contains(newest.as_str())))
        .nth(1)
        .unwrap()
        .split(':')
        .nth(9)
        .unwrap()
        .to_owned();
    gpg.run(&["--quick-set-expire", &fpr, "seconds=1", &newest_fpr]);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let recipient = PgpRecipient::parse(&gpg.export(&fpr, false)).unwrap();
    assert_eq!(recipient.encryption_key_id(), first[0]);
}

#[test]
fn encryption_capable_primary_is_used_without_subkeys() {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key(UID, "rsa3072", "sign,encr", "never");
    assert!(gpg.encryption_subkey_ids(&fpr).is_empty());
    let recipient = PgpRecipient::parse(&gpg.export(&fpr, false)).unwrap();
    assert_eq!(recipient.encryption_key_id(), &fpr[24..]);
    let plain = pseudo_random(70_000, 3);
    let path = encrypt_to_file(&gpg, &recipient, "p.wav", &plain);
    assert!(gpg.decrypt(&path) == plain);
}

/// Encryption streams: output appears while input is still being read, so memory stays
/// bounded whatever the input size (here 64 MiB from a generator, never held whole).
#[test]
fn encryption_streams_with_bounded_buffering() {
    use std::cell::Cell;
    use std::rc::Rc;

    struct Source {
        left: u64,
        read: Rc<Cell<u64>>,
        written: Rc<Cell<u64>>,
    }
    impl Read for Source {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            // Never more than a few chunks ahead of the output.
            let ahead = self.read.get() - self.written.get().min(self.read.get());
            assert!(
                ahead <= 4 * PARTIAL_CHUNK_SIZE as u64,
                "{ahead} bytes buffered"
            );
            let n = buf
                .len()
                .min(usize::try_from(self.left).unwrap().min(1 << 20));
            buf[..n].fill(0xA5);
            self.left -= n as u64;
            self.read.set(self.read.get() + n as u64);
            Ok(n)
        }
    }
    struct Sink(Rc<Cell<u64>>);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.set(self.0.get() + buf.len() as u64);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let key = rpgp_public_key(
        KeyVersion::V4,
        KeyType::Ed25519Legacy,
        KeyType::ECDH(pgp::crypto::ecc_curve::ECCCurve::Curve25519Legacy),
    );
    let recipient = PgpRecipient::parse(&key).unwrap();
    let (read, written) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let len = 64 << 20;
    let source = Source {
        left: len,
        read: read.clone(),
        written: written.clone(),
    };
    let n = recipient
        .encrypt("big.wav", source, Sink(written.clone()))
        .unwrap();
    assert_eq!(read.get(), len);
    assert_eq!(n, written.get());
    // PKESK, headers, the CFB prefix and the MDC: a few hundred bytes over the input.
    assert!(n > len && n < len + 4096, "{n}");
}

#[test]
fn signing_only_key_is_refused() {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key(UID, "rsa3072", "sign", "never");
    for armor in [false, true] {
        let msg = key_error(&gpg.export(&fpr, armor));
        assert!(msg.contains("encryption"), "{msg}");
        assert!(msg.contains("no encryption subkey"), "{msg}");
    }
}

#[test]
fn expired_key_is_refused() {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key(UID, "future-default", "default", "seconds=1");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let msg = key_error(&gpg.export(&fpr, true));
    assert!(msg.contains("expired"), "{msg}");
}

#[test]
fn secret_keys_and_several_keys_are_refused() {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key(UID, "future-default", "default", "never");
    for armor in [false, true] {
        let mut args = vec!["--export-secret-keys"];
        if armor {
            args.push("--armor");
        }
        args.push(&fpr);
        let msg = key_error(&gpg.run(&args));
        assert!(msg.contains("secret key"), "{msg}");
    }

    gpg.gen_key(
        "Other <other@example.com>",
        "future-default",
        "default",
        "never",
    );
    for armor in [false, true] {
        let mut args = vec!["--export"];
        if armor {
            args.push("--armor");
        }
        let both = gpg.run(&args);
        let msg = key_error(&both);
        assert!(msg.contains("more than one"), "{msg}");
    }
}

#[test]
fn garbage_and_truncated_keys_are_refused_without_panicking() {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key(UID, "future-default", "default", "never");
    let rsa = gpg.gen_key("RSA <rsa@example.com>", "rsa3072", "sign", "never");
    gpg.add_key(&rsa, "rsa3072", "encr", "never");

    for garbage in [
        &b""[..],
        b"   \n\t",
        b"\x00",
        b"\xff\xff\xff\xff",
        b"\x99",
        b"\x99\x01\x0d\x04",
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n",
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!!\n-----END PGP PUBLIC KEY BLOCK-----\n",
        b"-----BEGIN PGP MESSAGE-----\n\nhQ==\n-----END PGP MESSAGE-----\n",
        b"not a key at all",
    ] {
        assert!(PgpRecipient::parse(garbage).is_err(), "{garbage:?}");
    }
    for seed in 1..200u64 {
        let len = (seed as usize * 37) % 3000;
        let mut bytes = pseudo_random(len, seed);
        // Half of them look like a binary key packet header.
        if seed % 2 == 0 && !bytes.is_empty() {
            bytes[0] = 0x99;
        }
        assert!(
            PgpRecipient::parse(&bytes).is_err(),
            "random bytes {seed} parsed"
        );
    }

    for who in [&fpr, &rsa] {
        let binary = gpg.export(who, false);
        assert!(PgpRecipient::parse(&binary).is_ok());
        // Every proper prefix (every 7th length, and all of the last 64) is refused.
        let lengths = (0..binary.len())
            .step_by(7)
            .chain(binary.len().saturating_sub(64)..binary.len());
        for len in lengths {
            assert!(
                PgpRecipient::parse(&binary[..len]).is_err(),
                "a {len}-byte prefix of a {}-byte key parsed",
                binary.len()
            );
        }
        // Flipped bits must not panic (some, in unhashed subpackets, still verify).
        for i in (0..binary.len()).step_by(3) {
            let mut bytes = binary.clone();
            bytes[i] ^= 1 << (i % 8);
            let _ = PgpRecipient::parse(&bytes);
        }

        let armored = gpg.export(who, true);
        let text = std::str::from_utf8(&armored).unwrap();
        // Where the base64 data ends (the CRC line, or the footer).
        let data_end = text
            .find("\n=")
            .or_else(|| text.find("\n-----END"))
            .unwrap();
        for len in (0..armored.len()).step_by(7) {
            let result = PgpRecipient::parse(&armored[..len]);
            if len + 4 < data_end {
                assert!(result.is_err(), "a {len}-byte armored prefix parsed");
            }
        }
    }
}

/// Serialises the public half of a key made by rPGP.
fn rpgp_public_key(version: KeyVersion, primary: KeyType, sub: KeyType) -> Vec<u8> {
    let mut rng = rand::thread_rng();
    let subkey = SubkeyParamsBuilder::default()
        .version(version)
        .key_type(sub)
        .can_encrypt(EncryptionCaps::All)
        .build()
        .unwrap();
    let secret = SecretKeyParamsBuilder::default()
        .version(version)
        .key_type(primary)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id(UID.into())
        .subkey(subkey)
        .build()
        .unwrap()
        .generate(&mut rng)
        .unwrap();
    let public: SignedPublicKey = secret.into();
    public.to_armored_bytes(Default::default()).unwrap()
}

#[test]
fn v6_keys_are_refused() {
    let key = rpgp_public_key(KeyVersion::V6, KeyType::Ed25519, KeyType::X25519);
    let msg = key_error(&key);
    assert!(msg.contains("version 6"), "{msg}");
    assert!(msg.contains("GnuPG 2.2"), "{msg}");
}

#[test]
fn rfc9580_x25519_subkeys_are_refused() {
    // A v4 key, but with an RFC 9580 X25519 (algorithm 25) subkey, which GnuPG 2.2 lacks.
    let key = rpgp_public_key(KeyVersion::V4, KeyType::Ed25519Legacy, KeyType::X25519);
    let msg = key_error(&key);
    assert!(msg.contains("X25519"), "{msg}");
    assert!(msg.contains("GnuPG 2.2"), "{msg}");
}

#[test]
fn rpgp_made_v4_cv25519_key_is_accepted() {
    // The same shape as GnuPG's default key, made by rPGP: accepted.
    let key = rpgp_public_key(
        KeyVersion::V4,
        KeyType::Ed25519Legacy,
        KeyType::ECDH(pgp::crypto::ecc_curve::ECCCurve::Curve25519Legacy),
    );
    let recipient = PgpRecipient::parse(&key).unwrap();
    let mut out = Vec::new();
    let n = recipient.encrypt("a.wav", &b"abc"[..], &mut out).unwrap();
    assert_eq!(n, out.len() as u64);
}
