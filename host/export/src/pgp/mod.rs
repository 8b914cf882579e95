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

use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::packet::{PacketTrait, PublicKey, PublicKeyEncryptedSessionKey, PublicSubkey};
use pgp::types::{Tag, Timestamp};
use rand::rngs::OsRng;

mod key;

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
        key::parse_at(bytes, now)
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
