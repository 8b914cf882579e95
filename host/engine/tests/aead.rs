//! The chunk AEAD the host gives the guest (aws-lc-rs AES-256-GCM): Project
//! Wycheproof's cases, the same ones the core's software AES passes, and agreement
//! with that software AES byte for byte.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use tapeseal_core::aead::{ChunkAead, SoftAes256Gcm};
use tapeseal_engine::HostAes256Gcm;

#[path = "../../../crates/core/tests/aead/wycheproof.rs"]
mod aead_wycheproof;

#[test]
fn wycheproof_aes_256_gcm_through_the_host_aead() {
    let run = aead_wycheproof::aes_256_gcm::<HostAes256Gcm>();
    assert!(run > 50, "only {run} AES-256-GCM cases ran");
}

#[test]
fn the_host_aead_and_the_software_aead_agree() {
    let mut rng = ChaCha20Rng::seed_from_u64(14);
    for len in [0usize, 1, 15, 16, 17, 4096, 65_536, 100_003] {
        let mut key = [0u8; 32];
        let mut nonce = [0u8; 12];
        rng.fill_bytes(&mut key);
        rng.fill_bytes(&mut nonce);
        let mut plaintext = vec![0u8; len];
        rng.fill_bytes(&mut plaintext);
        let aad = b"header";
        let (host, soft) = (HostAes256Gcm::new(&key), SoftAes256Gcm::new(&key));

        let mut by_host = plaintext.clone();
        let host_tag = host.seal(&nonce, aad, &mut by_host).expect("host seal");
        let mut by_soft = plaintext.clone();
        let soft_tag = soft.seal(&nonce, aad, &mut by_soft).expect("soft seal");
        assert_eq!((&by_host, host_tag), (&by_soft, soft_tag), "{len} bytes");

        let mut opened = by_host.clone();
        soft.open(&nonce, aad, &mut opened, &host_tag)
            .expect("soft opens host");
        assert_eq!(opened, plaintext);
        let mut opened = by_soft.clone();
        host.open(&nonce, aad, &mut opened, &soft_tag)
            .expect("host opens soft");
        assert_eq!(opened, plaintext);
    }
}

#[test]
fn a_failed_open_leaves_no_plaintext_behind() {
    let key = [7u8; 32];
    let nonce = [1u8; 12];
    let aead = HostAes256Gcm::new(&key);
    let mut sealed = b"a secret worth keeping".to_vec();
    let mut tag = aead.seal(&nonce, &[], &mut sealed).expect("seal");
    tag[0] ^= 1;
    let mut buf = sealed.clone();
    assert!(aead.open(&nonce, &[], &mut buf, &tag).is_err());
    assert!(
        buf.iter().all(|&b| b == 0),
        "the buffer of a refused chunk is wiped"
    );
    let other_nonce = [2u8; 12];
    tag[0] ^= 1;
    let mut buf = sealed.clone();
    assert!(aead.open(&other_nonce, &[], &mut buf, &tag).is_err());
    assert!(format!("{aead:?}").contains("redacted"));
}
