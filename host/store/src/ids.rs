//! The one id generator: `<prefix>-` and 16 hex digits from the OS's secure random
//! source (organisations, tokens, KEKs, recordings, jobs), and raw random bytes.

/// The OS random source failed.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("no secure random source")]
pub struct RandomUnavailable;

/// `N` bytes from the OS's secure random source.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], RandomUnavailable> {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| RandomUnavailable)?;
    Ok(bytes)
}

/// A new recording id: `rec-` and 128 random bits in hex (recording ids appear in
/// URLs handed around, so they carry more than the 64 bits of [`new_id`]).
pub fn new_recording_id() -> Result<String, RandomUnavailable> {
    Ok(format!("rec-{}", hex::encode(random_bytes::<16>()?)))
}

/// A new id: `prefix` (such as `org`, `tok`, `kek`, `rec`, `job`), a dash and 64
/// random bits in hex.
pub fn new_id(prefix: &str) -> Result<String, RandomUnavailable> {
    Ok(format!("{prefix}-{}", hex::encode(random_bytes::<8>()?)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_have_their_prefix_and_differ() {
        let a = super::new_id("rec").expect("random");
        let b = super::new_id("rec").expect("random");
        assert!(a.starts_with("rec-") && a.len() == 20, "{a}");
        assert_ne!(a, b);
    }
}
