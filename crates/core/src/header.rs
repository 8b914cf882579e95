//! The envelope header (docs/FORMAT.md section 2): parsing without any key, and the
//! canonical encoding that writers produce. Every rule a reader enforces lives in
//! [`Header::parse`]; writers run their output through it, so the two cannot drift.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::error::{Error, Result};
use crate::kek::WrapAlgorithm;
use crate::keys::DerivedKeys;
use crate::wire::{Reader, put_str16, put_u16, put_u32};

/// The eight magic bytes every envelope starts with.
pub const MAGIC: [u8; 8] = *b"TAPESEAL";
/// The format version this build writes and reads.
pub const VERSION: u16 = 1;
/// The one algorithm suite of version 1: AES-256-GCM STREAM payload, HKDF-SHA256,
/// HMAC-SHA256 header MAC and key commitment.
pub const SUITE_V1: u16 = 0x0001;
/// Length of the fixed prefix (magic, version, header length): read it first to learn
/// how many bytes the whole header takes.
pub const PREFIX_LEN: usize = 14;
/// Smallest `header_len` a reader accepts.
pub const MIN_HEADER_LEN: usize = 128;
/// Largest `header_len` a reader accepts (64 KiB).
pub const MAX_HEADER_LEN: usize = 65_536;
/// Smallest chunk size.
pub const MIN_CHUNK_SIZE: u32 = 16;
/// Largest chunk size (16 MiB).
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// Chunk size that tapeseal writes unless told otherwise (64 KiB).
pub const DEFAULT_CHUNK_SIZE: u32 = 65_536;
/// Length of the salt.
pub const SALT_LEN: usize = 32;
/// Most key stanzas in one header.
pub const MAX_STANZAS: usize = 16;
/// Most encryption-context entries in one header.
pub const MAX_CONTEXT_ENTRIES: usize = 64;
/// Longest id (organisation, recording, KEK, context key) in bytes.
pub const MAX_ID_LEN: usize = 256;
/// Longest context value in bytes.
pub const MAX_CONTEXT_VALUE_LEN: usize = 1024;
/// Wrapped-DEK lengths a stanza may carry: the modulus lengths of 3072- and 4096-bit KEKs.
pub const WRAPPED_DEK_LENS: [usize; 2] = [384, 512];
const MAC_LEN: usize = 32;

/// What kind of recording an envelope holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MediaKind {
    /// Call audio.
    Call,
    /// An email interaction.
    Email,
    /// A chat interaction.
    Chat,
    /// A message interaction (SMS, social, messaging apps).
    Message,
    /// A speech or interaction transcript.
    Transcript,
    /// Anything else.
    Other,
}

impl MediaKind {
    /// Every kind, in identifier order.
    pub const ALL: [MediaKind; 6] = [
        Self::Call,
        Self::Email,
        Self::Chat,
        Self::Message,
        Self::Transcript,
        Self::Other,
    ];

    /// The kind's identifier byte in the header.
    pub fn id(self) -> u8 {
        match self {
            Self::Call => 1,
            Self::Email => 2,
            Self::Chat => 3,
            Self::Message => 4,
            Self::Transcript => 5,
            Self::Other => 6,
        }
    }

    /// The kind for an identifier byte.
    pub fn from_id(id: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.id() == id)
    }

    /// Lower-case name: `call`, `email`, `chat`, `message`, `transcript`, `other`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Call => "call",
            Self::Email => "email",
            Self::Chat => "chat",
            Self::Message => "message",
            Self::Transcript => "transcript",
            Self::Other => "other",
        }
    }

    /// Parses [`MediaKind::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One way to recover the DEK: the KEK that wrapped it, how, and the wrapped bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza {
    /// The id of the KEK whose public half wrapped the DEK.
    pub kek_id: String,
    /// The wrap algorithm.
    pub algorithm: WrapAlgorithm,
    /// The wrapped DEK (ciphertext: safe to show).
    pub wrapped_dek: Vec<u8>,
}

/// A parsed envelope header, read-only. Everything here is public metadata: none of it
/// is secret, and none of it is trusted until a DEK has verified the header MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    version: u16,
    suite: u16,
    chunk_size: u32,
    salt: [u8; SALT_LEN],
    created_at_ms: u64,
    media_kind: MediaKind,
    org_id: String,
    recording_id: String,
    content_type: String,
    context: BTreeMap<String, String>,
    stanzas: Vec<Stanza>,
    commitment: [u8; 32],
    mac: [u8; MAC_LEN],
    raw: Vec<u8>,
}

/// Checks the 14-byte prefix and returns the total header length it declares.
///
/// Needs at least [`PREFIX_LEN`] bytes. Use this to learn how much to fetch before
/// calling [`Header::parse`] (for example over HTTP Range).
pub fn header_len(prefix: &[u8]) -> Result<usize> {
    if prefix.len() < PREFIX_LEN {
        return Err(Error::IncompleteHeader {
            needed: PREFIX_LEN,
            available: prefix.len(),
        });
    }
    let mut r = Reader::new(prefix);
    if r.array::<8>("magic")? != MAGIC {
        return Err(Error::MalformedHeader(
            "not a tapeseal envelope (bad magic)",
        ));
    }
    let version = r.u16("version")?;
    if version != VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    let len = usize::try_from(r.u32("header_len")?).unwrap_or(usize::MAX);
    if !(MIN_HEADER_LEN..=MAX_HEADER_LEN).contains(&len) {
        return Err(Error::MalformedHeader(
            "header_len outside 128..=65536 (oversized or undersized header)",
        ));
    }
    Ok(len)
}

impl Header {
    /// Parses a header from the start of `bytes`, which may be the header alone or a
    /// whole envelope. Needs no key; authenticates nothing.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let len = header_len(bytes)?;
        if bytes.len() < len {
            return Err(Error::IncompleteHeader {
                needed: len,
                available: bytes.len(),
            });
        }
        let raw = &bytes[..len];
        let mut r = Reader::new(raw);
        r.take(PREFIX_LEN, "prefix")?;
        let suite = r.u16("suite")?;
        if suite != SUITE_V1 {
            return Err(Error::UnsupportedSuite(suite));
        }
        let chunk_size = r.u32("chunk_size")?;
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(Error::MalformedHeader("chunk_size outside 16..=16777216"));
        }
        let salt = r.array("salt")?;
        let created_at_ms = r.u64("created_at")?;
        let media_kind = MediaKind::from_id(r.u8("media_kind")?)
            .ok_or(Error::MalformedHeader("unknown media_kind"))?;
        let org_id = r.str16(
            1,
            MAX_ID_LEN,
            "org_id must be 1..=256 bytes of UTF-8 without NUL",
        )?;
        let recording_id = r.str16(
            1,
            MAX_ID_LEN,
            "recording_id must be 1..=256 bytes of UTF-8 without NUL",
        )?;
        let content_type = r.str16(1, MAX_ID_LEN, "content_type must be 1..=256 bytes")?;
        if !content_type.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(Error::MalformedHeader(
                "content_type must be visible ASCII (a MIME type)",
            ));
        }
        let context = parse_context(&mut r)?;
        let stanzas = parse_stanzas(&mut r)?;
        let commitment = r.array("commitment")?;
        let mac = r.array("header_mac")?;
        if r.pos() != len {
            return Err(Error::MalformedHeader(
                "header_len does not match the encoded fields",
            ));
        }
        Ok(Self {
            version: VERSION,
            suite,
            chunk_size,
            salt,
            created_at_ms,
            media_kind,
            org_id,
            recording_id,
            content_type,
            context,
            stanzas,
            commitment,
            mac,
            raw: raw.to_vec(),
        })
    }

    /// Format version (always [`VERSION`] for a parsed header).
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Algorithm suite.
    pub fn suite(&self) -> u16 {
        self.suite
    }

    /// Plaintext bytes per chunk.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Per-envelope salt for key derivation.
    pub fn salt(&self) -> &[u8; SALT_LEN] {
        &self.salt
    }

    /// Creation time, Unix milliseconds.
    pub fn created_at_ms(&self) -> u64 {
        self.created_at_ms
    }

    /// What the recording is.
    pub fn media_kind(&self) -> MediaKind {
        self.media_kind
    }

    /// Owning organisation.
    pub fn org_id(&self) -> &str {
        &self.org_id
    }

    /// Recording id.
    pub fn recording_id(&self) -> &str {
        &self.recording_id
    }

    /// MIME type of the plaintext.
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// Authenticated encryption context, sorted by key.
    pub fn context(&self) -> &BTreeMap<String, String> {
        &self.context
    }

    /// Key stanzas, at least one.
    pub fn stanzas(&self) -> &[Stanza] {
        &self.stanzas
    }

    /// Key commitment.
    pub fn commitment(&self) -> &[u8; 32] {
        &self.commitment
    }

    /// Header MAC.
    pub fn mac(&self) -> &[u8; MAC_LEN] {
        &self.mac
    }

    /// Total header length in bytes; the payload starts here.
    pub fn header_len(&self) -> usize {
        self.raw.len()
    }

    /// The header exactly as encoded.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The bytes the header MAC covers: everything before the MAC.
    pub(crate) fn mac_input(&self) -> &[u8] {
        &self.raw[..self.raw.len() - MAC_LEN]
    }

    /// Builds the canonical encoding of `fields` with the given stanzas, committed and
    /// MACed under `keys`, and parses it back so that writers obey every reader rule.
    pub(crate) fn assemble(
        fields: &HeaderFields<'_>,
        stanzas: &[Stanza],
        keys: &DerivedKeys,
    ) -> Result<Self> {
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(&MAGIC);
        put_u16(&mut out, VERSION);
        put_u32(&mut out, 0);
        put_u16(&mut out, SUITE_V1);
        put_u32(&mut out, fields.chunk_size);
        out.extend_from_slice(fields.salt);
        out.extend_from_slice(&fields.created_at_ms.to_be_bytes());
        out.push(fields.media_kind.id());
        for s in [fields.org_id, fields.recording_id, fields.content_type] {
            check_str16_fits(s)?;
            put_str16(&mut out, s);
        }
        let entries = u16::try_from(fields.context.len())
            .map_err(|_| Error::InvalidParameter("too many encryption-context entries"))?;
        put_u16(&mut out, entries);
        for (k, v) in fields.context {
            check_str16_fits(k)?;
            check_str16_fits(v)?;
            put_str16(&mut out, k);
            put_str16(&mut out, v);
        }
        let count = u8::try_from(stanzas.len())
            .map_err(|_| Error::InvalidParameter("too many key stanzas"))?;
        out.push(count);
        for s in stanzas {
            check_str16_fits(&s.kek_id)?;
            put_str16(&mut out, &s.kek_id);
            out.push(s.algorithm.id());
            let wrapped_len = u16::try_from(s.wrapped_dek.len())
                .map_err(|_| Error::InvalidParameter("wrapped DEK too long"))?;
            put_u16(&mut out, wrapped_len);
            out.extend_from_slice(&s.wrapped_dek);
        }
        out.extend_from_slice(&keys.commitment());
        let total = out.len() + MAC_LEN;
        let total32 = u32::try_from(total)
            .map_err(|_| Error::InvalidParameter("header larger than 64 KiB"))?;
        out[10..PREFIX_LEN].copy_from_slice(&total32.to_be_bytes());
        let mac = keys.header_mac(&out);
        out.extend_from_slice(&mac);
        Self::parse(&out).map_err(|e| match e {
            Error::MalformedHeader(why) => Error::InvalidParameter(why),
            other => other,
        })
    }

    /// The fields a rewrap copies unchanged.
    pub(crate) fn fields(&self) -> HeaderFields<'_> {
        HeaderFields {
            chunk_size: self.chunk_size,
            salt: &self.salt,
            created_at_ms: self.created_at_ms,
            media_kind: self.media_kind,
            org_id: &self.org_id,
            recording_id: &self.recording_id,
            content_type: &self.content_type,
            context: &self.context,
        }
    }
}

/// Everything in a header except its stanzas, commitment and MAC.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderFields<'a> {
    pub(crate) chunk_size: u32,
    pub(crate) salt: &'a [u8; SALT_LEN],
    pub(crate) created_at_ms: u64,
    pub(crate) media_kind: MediaKind,
    pub(crate) org_id: &'a str,
    pub(crate) recording_id: &'a str,
    pub(crate) content_type: &'a str,
    pub(crate) context: &'a BTreeMap<String, String>,
}

fn check_str16_fits(s: &str) -> Result<()> {
    if s.len() > MAX_CONTEXT_VALUE_LEN {
        return Err(Error::InvalidParameter(
            "a header string is longer than the format allows",
        ));
    }
    Ok(())
}

fn parse_context(r: &mut Reader<'_>) -> Result<BTreeMap<String, String>> {
    let count = usize::from(r.u16("context_count")?);
    if count > MAX_CONTEXT_ENTRIES {
        return Err(Error::MalformedHeader(
            "more than 64 encryption-context entries",
        ));
    }
    let mut context = BTreeMap::new();
    let mut previous: Option<String> = None;
    for _ in 0..count {
        let key = r.str16(
            1,
            MAX_ID_LEN,
            "context key must be 1..=256 bytes of UTF-8 without NUL",
        )?;
        let value = r.str16(
            0,
            MAX_CONTEXT_VALUE_LEN,
            "context value must be 0..=1024 bytes of UTF-8 without NUL",
        )?;
        if previous
            .as_deref()
            .is_some_and(|p| p.as_bytes() >= key.as_bytes())
        {
            return Err(Error::MalformedHeader(
                "context keys must be unique and sorted bytewise",
            ));
        }
        previous = Some(key.clone());
        context.insert(key, value);
    }
    Ok(context)
}

fn parse_stanzas(r: &mut Reader<'_>) -> Result<Vec<Stanza>> {
    let count = usize::from(r.u8("stanza_count")?);
    if count == 0 || count > MAX_STANZAS {
        return Err(Error::MalformedHeader("stanza_count must be 1..=16"));
    }
    let mut stanzas: Vec<Stanza> = Vec::with_capacity(count);
    for _ in 0..count {
        let kek_id = r.str16(
            1,
            MAX_ID_LEN,
            "kek_id must be 1..=256 bytes of UTF-8 without NUL",
        )?;
        let algorithm = WrapAlgorithm::from_id(r.u8("wrap_alg")?)
            .ok_or(Error::MalformedHeader("unknown wrap algorithm"))?;
        let wrapped_len = usize::from(r.u16("wrapped_len")?);
        if !WRAPPED_DEK_LENS.contains(&wrapped_len) {
            return Err(Error::MalformedHeader(
                "wrapped DEK must be 384 or 512 bytes (a 3072- or 4096-bit KEK)",
            ));
        }
        let wrapped_dek = r.take(wrapped_len, "wrapped DEK")?.to_vec();
        if stanzas.iter().any(|s| s.kek_id == kek_id) {
            return Err(Error::MalformedHeader("two stanzas name the same kek_id"));
        }
        stanzas.push(Stanza {
            kek_id,
            algorithm,
            wrapped_dek,
        });
    }
    Ok(stanzas)
}
