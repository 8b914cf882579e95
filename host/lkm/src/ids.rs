//! Ids and secrets the LKM makes, and the rules for ids it is given: key pairs are
//! named by UUID v4 (or the id they had in another LKM), Hawk credentials by the
//! caller, and a credential's `authKey` is 32 random bytes in base64url.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tapeseal_keys::lkm::wire::MIN_CREDENTIAL_ID_LEN;
use tapeseal_store::ids::random_bytes;
use zeroize::Zeroizing;

use crate::error::{LkmError, Result};

/// The longest id accepted, for key pairs and credentials.
pub const MAX_ID_LEN: usize = 128;

/// A random (version 4) UUID in its usual lowercase text form.
pub fn new_uuid() -> Result<String> {
    let mut b = random_bytes::<16>()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Ok(format!(
        "{}-{}-{}-{}-{}",
        hex::encode(&b[0..4]),
        hex::encode(&b[4..6]),
        hex::encode(&b[6..8]),
        hex::encode(&b[8..10]),
        hex::encode(&b[10..16])
    ))
}

/// A new Hawk `authKey` (and admin token): 256 random bits, base64url.
pub fn new_secret() -> Result<Zeroizing<String>> {
    let bytes = Zeroizing::new(random_bytes::<32>()?);
    Ok(Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref())))
}

/// A Hawk credential id: at least [`MIN_CREDENTIAL_ID_LEN`] and at most
/// [`MAX_ID_LEN`] characters, printable ASCII without quotes, backslashes or spaces
/// (it travels inside the quoted `id="…"` of a Hawk header).
pub fn check_credential_id(id: &str) -> Result<()> {
    if id.len() < MIN_CREDENTIAL_ID_LEN {
        return Err(LkmError::Invalid(format!(
            "a credential id has at least {MIN_CREDENTIAL_ID_LEN} characters"
        )));
    }
    if id.len() > MAX_ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        return Err(LkmError::Invalid(format!(
            "a credential id is at most {MAX_ID_LEN} printable ASCII characters without quotes, backslashes or spaces"
        )));
    }
    Ok(())
}

/// A key pair id: 1 to [`MAX_ID_LEN`] letters, digits, `-`, `_`, `.` or `:` (it
/// appears in URL paths).
pub fn check_keypair_id(id: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.chars().all(allowed) {
        return Err(LkmError::Invalid(format!(
            "a key pair id is 1 to {MAX_ID_LEN} letters, digits, '-', '_', '.' or ':'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4() {
        let id = new_uuid().expect("uuid");
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(
            parts[3].chars().next(),
            Some('8' | '9' | 'a' | 'b')
        ));
        assert_ne!(id, new_uuid().expect("uuid"));
        check_keypair_id(&id).expect("a UUID is a valid key pair id");
    }

    #[test]
    fn id_rules() {
        assert_eq!(new_secret().expect("secret").len(), 43);
        check_credential_id("genesys-org-1").expect("ok");
        for bad in ["short", "with space", "quo\"te", &"x".repeat(129)] {
            assert!(check_credential_id(bad).is_err(), "{bad}");
        }
        for bad in ["", "a/b", "a?b", "a%2f"] {
            assert!(check_keypair_id(bad).is_err(), "{bad}");
        }
    }
}
