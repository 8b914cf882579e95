//! Which key of a certificate messages are encrypted to, and the checks that refuse
//! a certificate GnuPG 2.2 could not use or that is expired, revoked or unsigned (see
//! the module documentation of [`super`]).

use super::{EncryptionTarget, PgpError, PgpRecipient};
use pgp::composed::{Deserializable, SignedPublicKey, SignedPublicSubKey};
use pgp::packet::{PublicKey, Signature, SignatureType, SubpacketData};
use pgp::types::{EcdhPublicParams, KeyDetails, KeyVersion, PublicParams, Tag, Timestamp};

/// [`PgpRecipient::parse`] with the current time given, in seconds since the epoch.
pub(super) fn parse_at(bytes: &[u8], now: u64) -> Result<PgpRecipient, PgpError> {
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
