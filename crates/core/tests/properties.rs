//! Property tests: any plaintext and chunk size round-trips through every combination
//! of one-shot and streaming sealing and opening, and no single-bit change, truncation
//! or extension of an envelope ever opens.

mod common;

use common::open_streaming;

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use tapeseal_core::{Dek, Layout, MediaKind, Recipient, SealParams, Sealer, inspect, open, seal};

fn recipients() -> Vec<Recipient> {
    vec![Recipient::new("kek-a", common::kek_public("kek-a"))]
}

fn params(chunk: u32) -> SealParams {
    SealParams::new("org", "rec", MediaKind::Chat, "application/json", 1).with_chunk_size(chunk)
}

fn seal_streaming(
    rng: &mut ChaCha20Rng,
    dek: &Dek,
    chunk: u32,
    plain: &[u8],
    step: usize,
) -> Vec<u8> {
    let mut sealer: Sealer = Sealer::new(rng, dek, &params(chunk), &recipients()).expect("sealer");
    let mut out = Vec::new();
    for piece in plain.chunks(step.max(1)) {
        sealer.push(piece, &mut out).expect("push");
    }
    sealer.finish(&mut out).expect("finish");
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn streaming_seal_opens_one_shot_and_one_shot_seal_opens_streaming(
        plain in proptest::collection::vec(any::<u8>(), 0..5000),
        chunk in 16u32..1500,
        seal_step in 1usize..3000,
        open_step in 1usize..3000,
        seed in any::<u64>(),
    ) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let dek = Dek::generate(&mut rng);
        let streamed = seal_streaming(&mut rng, &dek, chunk, &plain, seal_step);
        prop_assert_eq!(&open(&streamed, &dek).expect("one-shot open"), &plain);
        let one_shot = seal(&mut rng, &dek, &params(chunk), &recipients(), &plain).expect("seal");
        prop_assert_eq!(&open_streaming(&one_shot, &dek, open_step).expect("streaming open"), &plain);
        let layout = inspect(&one_shot).expect("inspect").layout.expect("layout");
        prop_assert_eq!(layout.plaintext_len(), plain.len() as u64);
        prop_assert_eq!(layout.chunk_count(), (plain.len() as u64).div_ceil(u64::from(chunk)).max(1));
    }

    #[test]
    fn a_flipped_bit_anywhere_never_opens(
        plain in proptest::collection::vec(any::<u8>(), 0..3000),
        chunk in 16u32..1100,
        at in any::<proptest::sample::Index>(),
        bit in 0u8..8,
        seed in any::<u64>(),
    ) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let dek = Dek::generate(&mut rng);
        let mut envelope = seal(&mut rng, &dek, &params(chunk), &recipients(), &plain).expect("seal");
        let i = at.index(envelope.len());
        envelope[i] ^= 1 << bit;
        prop_assert!(open(&envelope, &dek).is_err());
        prop_assert!(open_streaming(&envelope, &dek, 333).is_err());
    }

    #[test]
    fn truncation_or_extension_never_opens(
        plain in proptest::collection::vec(any::<u8>(), 0..3000),
        chunk in 16u32..1100,
        cut in any::<proptest::sample::Index>(),
        extra in proptest::collection::vec(any::<u8>(), 1..40),
        seed in any::<u64>(),
    ) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let dek = Dek::generate(&mut rng);
        let envelope = seal(&mut rng, &dek, &params(chunk), &recipients(), &plain).expect("seal");
        let short = &envelope[..cut.index(envelope.len())];
        prop_assert!(open(short, &dek).is_err());
        prop_assert!(open_streaming(short, &dek, 100).is_err());
        let long = [envelope.as_slice(), &extra].concat();
        prop_assert!(open(&long, &dek).is_err());
        prop_assert!(open_streaming(&long, &dek, 100).is_err());
    }

    #[test]
    fn a_ciphertext_range_covers_exactly_the_chunks_for_a_plaintext_range(
        len in 1u64..200_000,
        chunk in 16u32..70_000,
        a in any::<proptest::sample::Index>(),
        b in any::<proptest::sample::Index>(),
        header_len in 128u64..65_536,
    ) {
        let stride = u64::from(chunk) + 16;
        let chunks = len.div_ceil(u64::from(chunk));
        let envelope_len = header_len + len + 16 * chunks;
        let layout = Layout::from_lengths(header_len, chunk, envelope_len).expect("layout");
        prop_assert_eq!(layout.plaintext_len(), len);
        let (x, y) = (a.index(len as usize) as u64, b.index(len as usize) as u64);
        let range = x.min(y)..x.max(y) + 1;
        let (bytes, first) = layout.ciphertext_range_for(range.clone()).expect("range");
        prop_assert_eq!(first, range.start / u64::from(chunk));
        prop_assert_eq!(bytes.start, header_len + first * stride);
        let last = (range.end - 1) / u64::from(chunk);
        prop_assert_eq!(bytes.end, (header_len + (last + 1) * stride).min(envelope_len));
        let plain = layout.chunk_plaintext_range(first).expect("first").start
            ..layout.chunk_plaintext_range(last).expect("last").end;
        prop_assert!(plain.start <= range.start && range.end <= plain.end);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any bytes at all, and any mutation of a real header, get an error or a result:
    /// never a panic, from every entry point that reads untrusted input.
    #[test]
    fn hostile_bytes_never_panic_any_reader(
        junk in proptest::collection::vec(any::<u8>(), 0..2000),
        edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<proptest::sample::Index>(),
        seed in any::<u64>(),
    ) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let dek = Dek::generate(&mut rng);
        let real = seal(&mut rng, &dek, &params(64), &recipients(), b"hostile input").expect("seal");
        let mut mutated = real.clone();
        for (at, byte) in &edits {
            let i = at.index(mutated.len());
            mutated[i] = *byte;
        }
        mutated.truncate(cut.index(mutated.len() + 1).max(1));
        for bytes in [&junk, &mutated] {
            let _ = tapeseal_core::Header::parse(bytes);
            let _ = inspect(bytes);
            let _ = open(bytes, &dek);
            let _ = open_streaming(bytes, &dek, 17);
            let _ = tapeseal_core::rewrap(&mut rng, bytes, &dek, &recipients(), tapeseal_core::RewrapMode::Add);
            if let Ok(header) = tapeseal_core::Header::parse(bytes) {
                let _ = Layout::new(&header, bytes.len() as u64);
                if let Ok(d) = tapeseal_core::Decryptor::<tapeseal_core::aead::SoftAes256Gcm>::new(header, &dek) {
                    let _ = d.open_chunk(0, bytes, true);
                }
            }
        }
    }
}
