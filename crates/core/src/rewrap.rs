//! Rewrap: give an envelope new key stanzas without touching a payload byte. Whoever
//! holds the DEK can do it; the header MAC is recomputed, the salt and commitment stay.

use alloc::vec::Vec;

use rand_core::CryptoRng;

use crate::dek::Dek;
use crate::error::{Error, Result};
use crate::header::{Header, Stanza};
use crate::keys::DerivedKeys;
use crate::seal::Recipient;

/// What to do with the existing stanzas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RewrapMode {
    /// Drop every existing stanza; the new recipients are the only ones.
    Replace,
    /// Keep existing stanzas and add the new recipients after them; a recipient whose
    /// KEK id is already present replaces that stanza, which moves to the end.
    Add,
}

/// Builds a new header for the envelope whose header starts `bytes` (a header or a
/// whole envelope). `dek` must be the envelope's DEK: it is verified first.
pub fn rewrap_header<R: CryptoRng + ?Sized>(
    rng: &mut R,
    bytes: &[u8],
    dek: &Dek,
    recipients: &[Recipient],
    mode: RewrapMode,
) -> Result<Header> {
    let old = Header::parse(bytes)?;
    let keys = DerivedKeys::derive(dek, old.salt());
    keys.verify(&old)?;
    let mut stanzas: Vec<Stanza> = match mode {
        RewrapMode::Replace => Vec::new(),
        RewrapMode::Add => old
            .stanzas()
            .iter()
            .filter(|s| recipients.iter().all(|r| r.kek_id != s.kek_id))
            .cloned()
            .collect(),
    };
    if recipients.is_empty() && mode == RewrapMode::Replace {
        return Err(Error::InvalidParameter(
            "at least one recipient KEK is needed",
        ));
    }
    for recipient in recipients {
        stanzas.push(recipient.stanza(dek, rng)?);
    }
    Header::assemble(&old.fields(), &stanzas, &keys)
}

/// Rewraps a whole envelope: the new header followed by the unchanged payload.
pub fn rewrap<R: CryptoRng + ?Sized>(
    rng: &mut R,
    envelope: &[u8],
    dek: &Dek,
    recipients: &[Recipient],
    mode: RewrapMode,
) -> Result<Vec<u8>> {
    let header = rewrap_header(rng, envelope, dek, recipients, mode)?;
    let old_len = crate::header::header_len(envelope)?;
    let payload = &envelope[old_len..];
    let mut out = Vec::with_capacity(header.header_len() + payload.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}
