//! OpenPGP re-encryption of exported recordings, readable by GnuPG 2.2.
//!
//! An export destination may ask for each recording to be re-encrypted to a customer's
//! OpenPGP public key, so that only the holder of the matching secret key (typically with
//! Debian's GnuPG 2.2, `gpg --decrypt`) can read it. [`PgpRecipient::parse`] takes the
//! key as `gpg --export` or `gpg --export --armor` gives it and checks it;
//! [`PgpRecipient::encrypt`] streams one recording into one OpenPGP message.
//!
//! # What is emitted
//!
//! Exactly this sequence of packets, all with new-format (RFC 4880 §4.2.2) headers, binary
//! (not ASCII-armored):
//!
//! 1. one **PKESK v3** (Public-Key Encrypted Session Key, tag 1) carrying a fresh random
//!    AES-256 session key, encrypted to the chosen encryption (sub)key and naming its key id
//!    (RSA: PKCS#1 v1.5; ECDH: Curve25519 or NIST P-curves with the key's KDF parameters);
//! 2. one **SEIPD v1** (Symmetrically Encrypted Integrity Protected Data, tag 18, version 1,
//!    i.e. AES-256 in OpenPGP CFB mode with the SHA-1 modification detection code, what
//!    `gpg --list-packets` shows as `mdc_method: 2`), whose plaintext is
//! 3. one **literal data packet** (tag 11), binary mode `b`, carrying the given file name
//!    and a date of 0, then the recording's bytes unchanged: no compression packet (audio
//!    does not compress, and a compression layer only adds work and attack surface).
//!
//! Both the literal data packet and the SEIPD packet use **partial body lengths** of
//! [`PARTIAL_CHUNK_SIZE`] (64 KiB) bytes, with a final fixed-length part, so encryption
//! is a single streaming pass whatever the input size: memory use is a few 64 KiB
//! buffers, the input is never read whole, and its length need not be known in advance.
//!
//! # Why these choices (GnuPG 2.2 compatibility)
//!
//! GnuPG 2.2 (Debian 12's `gpg`, 2.2.40) implements RFC 4880 plus a few extensions, not
//! RFC 9580. So this module emits only what it reads:
//!
//! - **v4 keys only.** A v6 key (RFC 9580) would need a PKESK v6 and, for most of them,
//!   SEIPD v2; GnuPG 2.2 can neither import v6 keys nor read those packets, so such keys
//!   are refused when parsed, with a message saying so. The same holds for the RFC 9580
//!   X25519/X448 algorithms (ids 25/26) even on a v4 key: GnuPG 2.2 only knows the older
//!   "ECDH over Curve25519" (cv25519, algorithm 18), which is what it generates.
//! - **SEIPD v1, never SEIPD v2 (AEAD) nor GnuPG's own OCB packet (tag 20).** SEIPD v1
//!   with MDC is the integrity-protected format every GnuPG since 1.4 decrypts; GnuPG 2.2
//!   refuses messages without an MDC, and has no SEIPD v2.
//! - **AES-256.** Every OpenPGP implementation must support AES-128; AES-256 is in
//!   GnuPG's default preferences and decrypted by every GnuPG 2.x, so the key's stated
//!   preferences are not consulted.
//!
//! Which key is used: the newest valid, unexpired, unrevoked encryption-capable v4 subkey
//! whose binding signature verifies; failing that, the primary key if its self-signature
//! grants it encryption. A key that is expired or revoked, has no valid self-signature,
//! or has no usable encryption key is refused with a message that says which.

use std::fmt;
use std::io::{self, Read, Write};

use pgp::composed::{Deserializable, SignedPublicKey, SignedPublicSubKey};
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::packet::{
    PacketTrait, PublicKey, PublicKeyEncryptedSessionKey, PublicSubkey, Signature, SignatureType,
    SubpacketData,
};
use pgp::types::{EcdhPublicParams, KeyDetails, KeyVersion, PublicParams, Tag, Timestamp};
use rand::rngs::OsRng;

/// The size of each partial body chunk, for both the literal data packet and the SEIPD
/// packet: a power of two of at least 512 bytes, as OpenPGP requires.
pub const PARTIAL_CHUNK_SIZE: usize = 1 << 16;

/// The symmetric cipher of every message (see the module documentation).
const CIPHER: SymmetricKeyAlgorithm = SymmetricKeyAlgorithm::AES256;

/// Why an OpenPGP operation failed (clear messages, no key material).
#[derive(Debug, thiserror::Error)]
pub enum PgpError {
    /// The recipient key is unusable: not an OpenPGP public key, not exactly one key, not a
    /// v4 key, expired, revoked, without valid self-signatures, or without an encryption
    /// key that GnuPG 2.2 can decrypt with.
    #[error("unusable OpenPGP recipient key: {0}")]
    Key(String),
    /// Reading the input or writing the output failed.
    #[error("OpenPGP encryption I/O error: {0}")]
    Io(#[from] io::Error),
    /// The OpenPGP library refused to encrypt (e.g. to a key whose parameters it rejects).
    #[error("OpenPGP encryption failed: {0}")]
    Encrypt(String),
}

/// The key a message's session key is encrypted to: a subkey, or (rarely) the primary.
#[derive(Clone)]
enum EncryptionTarget {
    Primary(PublicKey),
    Subkey(PublicSubkey),
}

/// A recipient's public key, as `gpg --export` (binary) or `gpg --export --armor` gives it.
///
/// Holds only what encryption needs: the primary key's fingerprint (to name the
/// recipient) and the chosen encryption (sub)key.
#[derive(Clone)]
pub struct PgpRecipient {
    fingerprint: String,
    encryption_key_id: String,
    target: EncryptionTarget,
    armored: String,
}

impl fmt::Debug for PgpRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgpRecipient")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl PgpRecipient {
    /// Parses and checks a transferable public key, ASCII-armored or binary.
    ///
    /// The input must hold exactly one primary key, of version 4. Its self-signatures
    /// (user ID certifications, direct-key signatures) and subkey binding signatures are
    /// verified; signatures that do not verify (third-party certifications included) are
    /// ignored. The key must have at least one valid self-signature, must not be revoked
    /// and must not have expired. The encryption key chosen is the newest valid,
    /// unexpired, unrevoked encryption-capable subkey, else the primary key if it may
    /// encrypt; its algorithm must be one GnuPG 2.2 decrypts (RSA, or ECDH over
    /// Curve25519 or a NIST curve).
    ///
    /// # Errors
    ///
    /// [`PgpError::Key`], with a message naming the problem, for anything else. Never
    /// panics, whatever the input.
    pub fn parse(bytes: &[u8]) -> Result<Self, PgpError> {
        let now = u64::from(Timestamp::now().as_secs());
        parse_at(bytes, now)
    }

    /// The whole public key, ASCII-armored (what to send where text is expected).
    pub fn armored(&self) -> &str {
        &self.armored
    }

    /// The primary key's v4 fingerprint, 40 uppercase hex digits without spaces (what
    /// `gpg --fingerprint` shows, spaces removed).
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// The key id (16 uppercase hex digits) of the (sub)key messages are encrypted to,
    /// as `gpg --list-packets` shows it in the `:pubkey enc packet:`.
    pub fn encryption_key_id(&self) -> String {
        self.encryption_key_id.clone()
    }

    /// Encrypts everything `input` yields into one binary OpenPGP message on `output`:
    /// a PKESK v3 to the chosen key, then a SEIPD v1 (AES-256, MDC) holding a binary
    /// literal data packet named `file_name` (its last path component, cut to at most
    /// 255 bytes). Streams with partial body lengths: memory stays bounded whatever the
    /// input size. Returns the number of bytes written to `output`; `output` is flushed
    /// but not closed (a caller writing a file should still sync it).
    ///
    /// # Errors
    ///
    /// [`PgpError::Io`] if reading `input` or writing `output` fails (the output is then
    /// incomplete and must be discarded), [`PgpError::Encrypt`] if the OpenPGP library
    /// cannot encrypt the session key to the recipient.
    pub fn encrypt(
        &self,
        file_name: &str,
        input: impl Read,
        output: impl Write,
    ) -> Result<u64, PgpError> {
        let mut out = CountingWriter {
            inner: output,
            count: 0,
        };

        let session_key = CIPHER.new_session_key(OsRng);
        let pkesk = match &self.target {
            EncryptionTarget::Primary(key) => {
                PublicKeyEncryptedSessionKey::from_session_key_v3(OsRng, &session_key, CIPHER, key)
            }
            EncryptionTarget::Subkey(key) => {
                PublicKeyEncryptedSessionKey::from_session_key_v3(OsRng, &session_key, CIPHER, key)
            }
        }
        .map_err(|e| PgpError::Encrypt(format!("encrypting the session key: {e}")))?;
        let mut pkesk_bytes = Vec::new();
        pkesk
            .to_writer_with_header(&mut pkesk_bytes)
            .map_err(|e| PgpError::Encrypt(format!("serialising the PKESK packet: {e}")))?;
        out.write_all(&pkesk_bytes)?;

        let literal =
            PartialBodyReader::new(Tag::LiteralData, literal_data_header(file_name), input);
        let encrypted = CIPHER
            .stream_encryptor(OsRng, session_key.as_ref(), literal)
            .map_err(|e| PgpError::Encrypt(format!("starting AES-256 encryption: {e}")))?;
        // SEIPD version 1: CFB with the modification detection code.
        let mut seipd = PartialBodyReader::new(Tag::SymEncryptedProtectedData, vec![1], encrypted);
        io::copy(&mut seipd, &mut out)?;
        out.flush()?;
        Ok(out.count)
    }
}

/// [`PgpRecipient::parse`] with the current time given, in seconds since the epoch.
fn parse_at(bytes: &[u8], now: u64) -> Result<PgpRecipient, PgpError> {
    let bytes = bytes.trim_ascii_start();
    if bytes.is_empty() {
        return Err(PgpError::Key("the key is empty".into()));
    }
    if looks_like_secret_key(bytes) {
        return Err(PgpError::Key(
            "this is a secret key: give the public key only (`gpg --export --armor \
             FINGERPRINT`), and keep the secret key to yourself"
                .into(),
        ));
    }
    let mut keys = Vec::new();
    let (iter, _headers) = SignedPublicKey::from_reader_many(bytes)
        .map_err(|e| PgpError::Key(format!("not an OpenPGP public key: {e}")))?;
    for key in iter {
        let key = key.map_err(|e| PgpError::Key(format!("not a valid OpenPGP public key: {e}")))?;
        keys.push(key);
        if keys.len() > 1 {
            return Err(PgpError::Key(
                "the input holds more than one public key; export exactly one \
                 (`gpg --export --armor FINGERPRINT`)"
                    .into(),
            ));
        }
    }
    let Some(key) = keys.pop() else {
        return Err(PgpError::Key(
            "no OpenPGP public key found (export it with `gpg --export --armor FINGERPRINT`; \
             secret keys are not accepted)"
                .into(),
        ));
    };
    check_key(&key, now)
}

/// Whether `bytes` (leading whitespace removed) start like a secret key export: an
/// armored `PRIVATE KEY BLOCK`, or a binary secret-key packet (tag 5).
fn looks_like_secret_key(bytes: &[u8]) -> bool {
    if bytes.starts_with(b"-----BEGIN PGP PRIVATE KEY BLOCK-----") {
        return true;
    }
    match bytes.first() {
        // New format: 0b11 then the tag; old format: 0b10, the tag in four bits, then
        // two bits of length type.
        Some(&b) if b & 0xC0 == 0xC0 => b & 0x3F == 5,
        Some(&b) if b & 0xC0 == 0x80 => (b >> 2) & 0x0F == 5,
        _ => false,
    }
}

/// Checks one parsed key and picks its encryption key.
fn check_key(key: &SignedPublicKey, now: u64) -> Result<PgpRecipient, PgpError> {
    let primary = &key.primary_key;
    let version = primary.version();
    if version != KeyVersion::V4 {
        return Err(PgpError::Key(format!(
            "this is a version {} OpenPGP key; only version 4 keys are accepted, because \
             GnuPG 2.2 cannot read what would be encrypted to it (v6 keys need RFC 9580 \
             packets such as PKESK v6 and SEIPD v2, which GnuPG 2.2 does not implement); \
             use a v4 key, e.g. one made by GnuPG 2.2 `gpg --quick-gen-key`",
            u8::from(version)
        )));
    }
    let fingerprint = hex::encode_upper(primary.fingerprint().as_bytes());

    // A valid key revocation signature by the primary key itself revokes the whole key.
    if key.details.revocation_signatures.iter().any(|sig| {
        sig.typ() == Some(SignatureType::KeyRevocation) && sig.verify_key(primary).is_ok()
    }) {
        return Err(PgpError::Key(format!(
            "the key {fingerprint} has been revoked"
        )));
    }

    let self_sig = newest_self_signature(key, now).ok_or_else(|| {
        PgpError::Key(format!(
            "the key {fingerprint} has no valid self-signature (no user ID certified by the \
             key itself, or all such certifications are revoked or expired)"
        ))
    })?;
    if let Some(expiry) = key_expiry(primary.created_at(), self_sig)
        && expiry <= now
    {
        return Err(PgpError::Key(format!(
            "the key {fingerprint} expired on {}",
            format_time(expiry)
        )));
    }

    let mut best: Option<(u32, &SignedPublicSubKey)> = None;
    let mut problems = Vec::new();
    for subkey in &key.public_subkeys {
        match check_subkey(primary, subkey, now) {
            SubkeyVerdict::Usable => {
                let created = subkey.key.created_at().as_secs();
                if best.is_none_or(|(newest, _)| created >= newest) {
                    best = Some((created, subkey));
                }
            }
            SubkeyVerdict::NotForEncryption => {}
            SubkeyVerdict::Unusable(why) => problems.push(format!(
                "subkey {}: {why}",
                hex::encode_upper(subkey.key.legacy_key_id().as_ref())
            )),
        }
    }

    let target = if let Some((_, subkey)) = best {
        EncryptionTarget::Subkey(subkey.key.clone())
    } else {
        let primary_usable = if may_encrypt(self_sig, primary.public_params()) {
            usable_algorithm(primary.public_params())
                .map_err(|why| problems.push(format!("primary key: {why}")))
                .is_ok()
        } else {
            false
        };
        if primary_usable {
            EncryptionTarget::Primary(primary.clone())
        } else if problems.is_empty() {
            return Err(PgpError::Key(format!(
                "this key has no encryption subkey ({fingerprint} can only sign or certify); \
                 add one with `gpg --quick-add-key {fingerprint} cv25519 encr` or \
                 `gpg --quick-add-key {fingerprint} rsa3072 encr`, then export it again"
            )));
        } else {
            return Err(PgpError::Key(format!(
                "the key {fingerprint} has no usable encryption subkey: {}",
                problems.join("; ")
            )));
        }
    };

    let encryption_key_id = match &target {
        EncryptionTarget::Primary(k) => hex::encode_upper(k.legacy_key_id().as_ref()),
        EncryptionTarget::Subkey(k) => hex::encode_upper(k.legacy_key_id().as_ref()),
    };
    let armored = key
        .to_armored_string(pgp::composed::ArmorOptions::default())
        .map_err(|e| PgpError::Key(format!("the key cannot be armored: {e}")))?;
    Ok(PgpRecipient {
        fingerprint,
        encryption_key_id,
        target,
        armored,
    })
}

/// The newest live, verified self-signature on the primary key: a user ID certification
/// (of a user ID not revoked since) or a direct-key signature.
fn newest_self_signature(key: &SignedPublicKey, now: u64) -> Option<&Signature> {
    let primary = &key.primary_key;
    let mut candidates: Vec<(u64, &Signature)> = Vec::new();

    for user in &key.details.users {
        let mut user_newest: Option<(u64, &Signature)> = None;
        let mut revoked_at: Option<u64> = None;
        for sig in &user.signatures {
            let Some(created) = live_since(sig, now) else {
                continue;
            };
            if sig
                .verify_certification(primary, Tag::UserId, &user.id)
                .is_err()
            {
                continue;
            }
            if sig.typ() == Some(SignatureType::CertRevocation) {
                revoked_at = Some(revoked_at.map_or(created, |r| r.max(created)));
            } else if user_newest.is_none_or(|(t, _)| created >= t) {
                user_newest = Some((created, sig));
            }
        }
        if let Some((created, sig)) = user_newest
            && revoked_at.is_none_or(|r| r < created)
        {
            candidates.push((created, sig));
        }
    }
    for sig in &key.details.direct_signatures {
        if sig.typ() != Some(SignatureType::Key) {
            continue;
        }
        let Some(created) = live_since(sig, now) else {
            continue;
        };
        if sig.verify_key(primary).is_ok() {
            candidates.push((created, sig));
        }
    }
    // The newest wins; of equals, the last (max_by_key keeps the last maximum).
    candidates
        .into_iter()
        .max_by_key(|(created, _)| *created)
        .map(|(_, sig)| sig)
}

/// What a subkey is good for.
enum SubkeyVerdict {
    /// A valid, live encryption subkey GnuPG 2.2 can decrypt with.
    Usable,
    /// Not bound for encryption (a signing or authentication subkey, or no valid binding).
    NotForEncryption,
    /// Bound for encryption, but unusable; the reason.
    Unusable(String),
}

fn check_subkey(primary: &PublicKey, subkey: &SignedPublicSubKey, now: u64) -> SubkeyVerdict {
    let mut binding: Option<(u64, &Signature)> = None;
    let mut revoked = false;
    for sig in &subkey.signatures {
        match sig.typ() {
            Some(SignatureType::SubkeyBinding) => {
                let Some(created) = live_since(sig, now) else {
                    continue;
                };
                if sig.verify_subkey_binding(primary, &subkey.key).is_ok()
                    && binding.is_none_or(|(t, _)| created >= t)
                {
                    binding = Some((created, sig));
                }
            }
            Some(SignatureType::SubkeyRevocation)
                if sig.verify_subkey_binding(primary, &subkey.key).is_ok() =>
            {
                revoked = true;
            }
            _ => {}
        }
    }
    let Some((_, binding)) = binding else {
        return SubkeyVerdict::NotForEncryption;
    };
    if !may_encrypt(binding, subkey.key.public_params()) {
        return SubkeyVerdict::NotForEncryption;
    }
    if revoked {
        return SubkeyVerdict::Unusable("revoked".into());
    }
    if subkey.key.version() != KeyVersion::V4 {
        return SubkeyVerdict::Unusable(format!(
            "a version {} subkey, which GnuPG 2.2 cannot use",
            u8::from(subkey.key.version())
        ));
    }
    if let Some(expiry) = key_expiry(subkey.key.created_at(), binding)
        && expiry <= now
    {
        return SubkeyVerdict::Unusable(format!("expired on {}", format_time(expiry)));
    }
    match usable_algorithm(subkey.key.public_params()) {
        Ok(()) => SubkeyVerdict::Usable,
        Err(why) => SubkeyVerdict::Unusable(why),
    }
}

/// Whether a (binding or self-) signature lets its key encrypt: its key flags say
/// "encrypt communications" or "encrypt storage", or, for old keys whose signature has
/// no key flags at all, the algorithm can encrypt (as GnuPG decides).
fn may_encrypt(sig: &Signature, params: &PublicParams) -> bool {
    let has_key_flags = sig.config().is_some_and(|config| {
        config
            .hashed_subpackets()
            .any(|p| matches!(p.data, SubpacketData::KeyFlags(_)))
    });
    if has_key_flags {
        let flags = sig.key_flags();
        flags.encrypt_comms() || flags.encrypt_storage()
    } else {
        matches!(params, PublicParams::RSA(_) | PublicParams::ECDH(_))
    }
}

/// Whether GnuPG 2.2 can decrypt a session key encrypted to a key with these parameters
/// (and the OpenPGP library can encrypt to it).
fn usable_algorithm(params: &PublicParams) -> Result<(), String> {
    match params {
        PublicParams::RSA(_) => Ok(()),
        PublicParams::ECDH(
            EcdhPublicParams::Curve25519Legacy { .. }
            | EcdhPublicParams::P256 { .. }
            | EcdhPublicParams::P384 { .. }
            | EcdhPublicParams::P521 { .. },
        ) => Ok(()),
        PublicParams::ECDH(_) => {
            Err("ECDH over a curve this exporter cannot encrypt to (e.g. Brainpool)".into())
        }
        PublicParams::X25519(_) | PublicParams::X448(_) => Err(
            "an RFC 9580 X25519/X448 key, which GnuPG 2.2 cannot decrypt with (it knows only \
             cv25519 ECDH keys)"
                .into(),
        ),
        PublicParams::Elgamal(_) => {
            Err("an ElGamal key, which this exporter cannot encrypt to".into())
        }
        _ => Err("an algorithm that cannot encrypt".into()),
    }
}

/// When a signature took effect, if it is well-formed (has a creation time) and has not
/// itself expired by `now`.
fn live_since(sig: &Signature, now: u64) -> Option<u64> {
    let created = u64::from(sig.created()?.as_secs());
    if let Some(validity) = sig.signature_expiration_time() {
        let validity = u64::from(validity.as_secs());
        if validity != 0 && created.saturating_add(validity) <= now {
            return None;
        }
    }
    Some(created)
}

/// When a key expires, per its (binding or self-) signature: `None` if never.
fn key_expiry(created_at: Timestamp, sig: &Signature) -> Option<u64> {
    let validity = u64::from(sig.key_expiration_time()?.as_secs());
    (validity != 0).then(|| u64::from(created_at.as_secs()).saturating_add(validity))
}

/// ISO 8601 UTC for seconds since the epoch.
fn format_time(secs: u64) -> String {
    tapeseal_store::time::utc(secs.saturating_mul(1000))
}

/// The start of a binary literal data packet's body: mode `b`, the file name (its last
/// path component, at most 255 bytes, cut at a character boundary), a date of 0.
fn literal_data_header(file_name: &str) -> Vec<u8> {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut end = base.len().min(255);
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    let name = &base.as_bytes()[..end];
    let mut header = Vec::with_capacity(6 + name.len());
    header.push(b'b');
    // `end` is at most 255.
    header.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
    header.extend_from_slice(name);
    header.extend_from_slice(&[0, 0, 0, 0]);
    header
}

/// Frames a byte stream as one OpenPGP packet with a new-format header and partial body
/// lengths: the body is `prefix` followed by everything `source` yields, cut into
/// [`PARTIAL_CHUNK_SIZE`] parts, the last one (possibly empty) with a fixed length.
struct PartialBodyReader<R> {
    source: R,
    /// The packet tag octet, written once before the first length.
    tag: u8,
    /// The first bytes of the body, taken on the first fill.
    prefix: Option<Vec<u8>>,
    /// The tag octet (first part only) and the length of the current part.
    head: [u8; 6],
    head_len: usize,
    head_pos: usize,
    /// The current part's body.
    body: Vec<u8>,
    body_pos: usize,
    /// The last part has been framed (the source is exhausted).
    finished: bool,
}

impl<R: Read> PartialBodyReader<R> {
    fn new(tag: Tag, prefix: Vec<u8>, source: R) -> Self {
        Self {
            source,
            // New-format header: 0b11 then the six-bit tag.
            tag: 0xC0 | (u8::from(tag) & 0x3F),
            prefix: Some(prefix),
            head: [0; 6],
            head_len: 0,
            head_pos: 0,
            body: Vec::new(),
            body_pos: 0,
            finished: false,
        }
    }

    /// Reads the next part from the source and frames it.
    fn fill(&mut self) -> io::Result<()> {
        self.body.clear();
        self.body.resize(PARTIAL_CHUNK_SIZE, 0);
        let mut filled = 0;
        self.head_len = 0;
        if let Some(prefix) = self.prefix.take() {
            self.head[0] = self.tag;
            self.head_len = 1;
            self.body[..prefix.len()].copy_from_slice(&prefix);
            filled = prefix.len();
        }
        while filled < PARTIAL_CHUNK_SIZE {
            match self.source.read(&mut self.body[filled..]) {
                Ok(0) => {
                    self.finished = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.body.truncate(filled);
        self.body_pos = 0;
        self.head_pos = 0;

        let at = self.head_len;
        if filled == PARTIAL_CHUNK_SIZE && !self.finished {
            // Partial body length: 224 + log2(size).
            self.head[at] = 224 + PARTIAL_CHUNK_SIZE.trailing_zeros() as u8;
            self.head_len += 1;
        } else {
            // The last part, with a fixed length (a source ending exactly at a part
            // boundary gives an empty last part, which OpenPGP allows).
            self.finished = true;
            let len = filled;
            if len < 192 {
                self.head[at] = len as u8;
                self.head_len += 1;
            } else if len < 8384 {
                let v = len - 192;
                self.head[at] = (v >> 8) as u8 + 192;
                self.head[at + 1] = (v & 0xFF) as u8;
                self.head_len += 2;
            } else {
                self.head[at] = 0xFF;
                self.head[at + 1..at + 5].copy_from_slice(&(len as u32).to_be_bytes());
                self.head_len += 5;
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for PartialBodyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.head_pos < self.head_len {
                let n = buf.len().min(self.head_len - self.head_pos);
                buf[..n].copy_from_slice(&self.head[self.head_pos..self.head_pos + n]);
                self.head_pos += n;
                return Ok(n);
            }
            if self.body_pos < self.body.len() {
                let n = buf.len().min(self.body.len() - self.body_pos);
                buf[..n].copy_from_slice(&self.body[self.body_pos..self.body_pos + n]);
                self.body_pos += n;
                return Ok(n);
            }
            if self.finished {
                // The last part has been framed and fully handed out.
                return Ok(0);
            }
            self.fill()?;
        }
    }
}

/// Counts the bytes written through it.
struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
