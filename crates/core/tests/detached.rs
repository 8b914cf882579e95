//! The detached opening API (the core checks and frames, another engine runs
//! AES-256-GCM): on every vector it gives exactly what `open`, `Opener` and
//! `Decryptor` give, byte for byte and error for error; the payload key is handed out
//! once and never printed; the framer's rules hold on their own.

mod common;

use common::{open_streaming, vectors};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use tapeseal_core::aead::{ChunkAead, SoftAes256Gcm};
use tapeseal_core::{
    ChunkParams, Decryptor, Dek, Error, Framer, Header, Layout, MediaKind, Recipient, SealParams,
    SealedChunk, VerifiedHeader, open, seal,
};

/// The "other engine": AES-256-GCM keyed with the payload key the core handed out,
/// run on exactly the nonce, AAD and bytes the core named.
struct Engine(SoftAes256Gcm);

impl Engine {
    fn from(verified: &mut VerifiedHeader) -> Self {
        let key = verified
            .take_payload_key()
            .expect("the key, the first time");
        Self(SoftAes256Gcm::new(&key))
    }

    fn open(&self, params: &ChunkParams, sealed: &[u8]) -> Result<Vec<u8>, Error> {
        assert_eq!(sealed.len(), params.sealed_len());
        let (body, tag) = sealed.split_at(params.body_len());
        let mut buf = body.to_vec();
        let tag = tag.try_into().expect("16-byte tag");
        self.0
            .open(params.nonce(), params.aad(), &mut buf, &tag)
            .map_err(|_| Error::DecryptFailed)?;
        Ok(buf)
    }

    fn open_chunk(&self, chunk: SealedChunk<'_>) -> Result<Vec<u8>, Error> {
        let (body, tag) = chunk.split();
        assert_eq!(body.len() + tag.len(), chunk.sealed().len());
        self.open(chunk.params(), chunk.sealed())
    }
}

/// One-shot, as a WebCrypto caller does it: the core's checks up front, then every
/// chunk of the layout opened by the engine (in reverse, as promises may settle).
fn open_detached(envelope: &[u8], dek: &Dek) -> Result<Vec<u8>, Error> {
    let start = &envelope[..envelope.len().min(tapeseal_core::header::MAX_HEADER_LEN)];
    let (mut verified, layout) = VerifiedHeader::for_envelope(start, envelope.len() as u64, dek)?;
    let engine = Engine::from(&mut verified);
    let mut parts = Vec::new();
    for index in (0..layout.chunk_count()).rev() {
        let range = layout.chunk_range(index)?;
        let sealed = &envelope[range.start as usize..range.end as usize];
        let params = verified.chunk(index, sealed.len(), layout.is_last(index))?;
        assert_eq!(params.index(), index);
        assert_eq!(params.is_last(), layout.is_last(index));
        parts.push(engine.open(&params, sealed)?);
    }
    Ok(parts.into_iter().rev().flatten().collect())
}

/// Streaming through the one framer, with the engine as the opener.
fn open_detached_streaming(envelope: &[u8], dek: &Dek, step: usize) -> Result<Vec<u8>, Error> {
    let mut framer: Framer<Engine> = Framer::new();
    let mut out = Vec::new();
    let mut expected_index = 0;
    for piece in envelope.chunks(step.max(1)) {
        framer.push(
            piece,
            |header| VerifiedHeader::new(header, dek).map(|mut v| Engine::from(&mut v)),
            |engine, chunk| {
                assert_eq!(chunk.params().index(), expected_index);
                assert!(!chunk.params().is_last());
                expected_index += 1;
                out.extend(engine.open_chunk(chunk)?);
                Ok(())
            },
        )?;
    }
    let last = framer.finish(|engine, chunk| {
        assert!(chunk.params().is_last());
        engine.open_chunk(chunk)
    })?;
    out.extend(last);
    Ok(out)
}

/// Random access: every chunk on its own, each result next to the `Decryptor`'s.
fn open_detached_by_chunks(envelope: &[u8], dek: &Dek) -> Result<Vec<u8>, Error> {
    let header = Header::parse(envelope)?;
    let layout = Layout::new(&header, envelope.len() as u64)?;
    let decryptor: Decryptor = Decryptor::new(header.clone(), dek)?;
    let mut verified = VerifiedHeader::new(header, dek)?;
    let engine = Engine::from(&mut verified);
    let mut out = Vec::new();
    for index in 0..layout.chunk_count() {
        let range = layout.chunk_range(index)?;
        let sealed = &envelope[range.start as usize..range.end as usize];
        // Also as the wrong kind of chunk (last or not), which both must refuse alike.
        for last in [layout.is_last(index), !layout.is_last(index)] {
            let detached = verified
                .chunk(index, sealed.len(), last)
                .and_then(|params| engine.open(&params, sealed));
            assert_eq!(detached, decryptor.open_chunk(index, sealed, last));
        }
        out.extend(engine.open(
            &verified.chunk(index, sealed.len(), layout.is_last(index))?,
            sealed,
        )?);
    }
    Ok(out)
}

#[test]
fn every_vector_opens_exactly_as_the_core_opens_it() {
    let mut by_chunks = 0;
    for v in vectors() {
        let dek = Dek::from_slice(&v.dek).expect("32-byte DEK");
        let expected = open(&v.envelope, &dek);
        assert_eq!(
            open_detached(&v.envelope, &dek),
            expected,
            "{}: one-shot",
            v.name
        );
        for step in [1, 7, 1000, 65_552, v.envelope.len()] {
            let sync = open_streaming(&v.envelope, &dek, step);
            assert_eq!(
                open_detached_streaming(&v.envelope, &dek, step),
                sync,
                "{}: {step}-byte pushes",
                v.name
            );
        }
        if let Ok(plain) = open_detached_by_chunks(&v.envelope, &dek) {
            assert_eq!(Ok(plain), expected, "{}: by chunks", v.name);
            by_chunks += 1;
        }
    }
    assert!(by_chunks >= 10);
}

fn envelope(plain: &[u8], chunk_size: u32) -> (Vec<u8>, Dek) {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let dek = Dek::generate(&mut rng);
    let params = SealParams::new("org-1", "rec-1", MediaKind::Call, "audio/wav", 1)
        .with_chunk_size(chunk_size);
    let kek = Recipient::new("kek-a", common::kek_public("kek-a"));
    let sealed = seal(&mut rng, &dek, &params, &[kek], plain).expect("seal");
    (sealed, dek)
}

#[test]
fn the_payload_key_is_handed_out_once_and_never_printed() {
    let (sealed, dek) = envelope(b"hello", 64);
    let dek_hex = hex::encode(dek.as_bytes());
    let mut verified =
        VerifiedHeader::new(Header::parse(&sealed).expect("header"), &dek).expect("verified");
    let before = format!("{verified:?}");
    assert!(before.contains("[redacted]"), "{before}");
    let key = verified.take_payload_key().expect("the key");
    assert!(verified.take_payload_key().is_none(), "only once");
    let after = format!("{verified:?}");
    assert!(after.contains("[taken]"), "{after}");
    for text in [before, after, format!("{:?}", verified.chunk(0, 21, true))] {
        assert!(!text.contains(&hex::encode(key.as_slice())), "{text}");
        assert!(!text.contains(&format!("{:?}", key.as_slice())), "{text}");
        assert!(!text.contains(&dek_hex), "{text}");
    }
    // The key it handed out is the one the core opens with.
    let engine = Engine(SoftAes256Gcm::new(&key));
    let params = verified.chunk(0, sealed.len() - sealed_header_len(&sealed), true);
    let opened = engine.open(
        &params.expect("framing"),
        &sealed[sealed_header_len(&sealed)..],
    );
    assert_eq!(opened.expect("opens"), b"hello");
    let wrong = Dek::from_bytes([7; 32]);
    assert_eq!(
        VerifiedHeader::new(Header::parse(&sealed).expect("header"), &wrong).map(|_| ()),
        Err(Error::DecryptFailed)
    );
}

fn sealed_header_len(envelope: &[u8]) -> usize {
    Header::parse(envelope).expect("header").header_len()
}

#[test]
fn chunk_params_follow_the_framing_rules_and_name_the_stream_nonces() {
    let (sealed, dek) = envelope(&[1; 100], 32);
    let verified =
        VerifiedHeader::new(Header::parse(&sealed).expect("header"), &dek).expect("verified");
    let full = 32 + 16;
    let p = verified.chunk(5, full, false).expect("a full middle chunk");
    assert_eq!(p.nonce(), &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0]);
    assert_eq!(p.aad(), b"");
    assert_eq!((p.body_len(), p.sealed_len()), (32, full));
    let p = verified
        .chunk(0x0102, 17, true)
        .expect("a short last chunk");
    assert_eq!(p.nonce(), &[0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 1]);
    assert_eq!(p.body_len(), 1);
    assert!(verified.chunk(0, 16, true).is_ok(), "an empty envelope");
    for (index, len, last) in [
        (0, full - 1, false),
        (0, full + 1, false),
        (3, full + 1, true),
        (1, 16, true),
        (0, 15, true),
        (0, 0, false),
        (1 << 32, full, false),
        (u64::MAX, 17, true),
    ] {
        assert_eq!(
            verified.chunk(index, len, last),
            Err(Error::DecryptFailed),
            "chunk {index} of {len} bytes (last: {last})"
        );
    }
}

#[test]
fn the_framer_hands_out_a_chunk_only_once_it_is_known_not_to_be_last() {
    let (sealed, dek) = envelope(&[9; 3 * 64], 64);
    let header_len = sealed_header_len(&sealed);
    let stride = 64 + 16;
    assert_eq!(sealed.len(), header_len + 3 * stride);
    let mut framer: Framer<VerifiedHeader> = Framer::new();
    let mut seen = Vec::new();
    let mut push = |framer: &mut Framer<VerifiedHeader>, bytes: &[u8]| {
        framer
            .push(
                bytes,
                |h| VerifiedHeader::new(h, &dek),
                |_, c| {
                    seen.push((c.params().index(), c.sealed().to_vec()));
                    Ok(())
                },
            )
            .expect("push");
        seen.len()
    };
    assert_eq!(push(&mut framer, &sealed[..header_len - 1]), 0);
    assert!(framer.opener().is_none(), "the header is not complete yet");
    assert_eq!(
        push(&mut framer, &sealed[header_len - 1..header_len + stride]),
        0
    );
    assert!(
        framer.opener().is_some(),
        "the DEK was verified with the header"
    );
    // One more byte shows chunk 0 is not the last.
    assert_eq!(push(&mut framer, &sealed[header_len + stride..][..1]), 1);
    // The rest in one slice: chunk 1 is handed out, chunk 2 waits for finish.
    assert_eq!(push(&mut framer, &sealed[header_len + stride + 1..]), 2);
    let last = framer
        .finish(|_, c| {
            Ok((
                c.params().index(),
                c.params().is_last(),
                c.sealed().to_vec(),
            ))
        })
        .expect("finish");
    assert_eq!(last, (2, true, sealed[header_len + 2 * stride..].to_vec()));
    for (index, bytes) in &seen {
        let at = header_len + *index as usize * stride;
        assert_eq!(bytes, &sealed[at..at + stride]);
    }

    // Framing alone refuses trailing bytes and a missing final chunk at finish (the
    // tags refuse the other truncations: the vectors above).
    for (input, what) in [
        ([&sealed[..], &[0]].concat(), "a trailing byte"),
        (sealed[..header_len].to_vec(), "no chunk at all"),
    ] {
        let mut framer: Framer<VerifiedHeader> = Framer::new();
        let result = framer
            .push(&input, |h| VerifiedHeader::new(h, &dek), |_, _| Ok(()))
            .and_then(|()| framer.finish(|_, _| Ok(())));
        assert_eq!(result, Err(Error::DecryptFailed), "{what}");
    }
    let framer: Framer<VerifiedHeader> = Framer::new();
    assert_eq!(
        framer.finish(|_, _| Ok(())),
        Err(Error::IncompleteHeader {
            needed: 14,
            available: 0
        })
    );
}

#[test]
fn a_framer_repeats_its_first_error() {
    let (sealed, dek) = envelope(&[3; 500], 64);
    let verify = |h: Header| VerifiedHeader::new(h, &dek);

    // A failure the caller's engine found (a tag that did not verify).
    let mut framer: Framer<VerifiedHeader> = Framer::new();
    framer
        .push(&sealed[..300], verify, |_, _| Ok(()))
        .expect("push");
    framer.fail(Error::DecryptFailed);
    framer.fail(Error::InvalidState("a later error"));
    assert_eq!(
        framer.push(&sealed[300..], verify, |_, _| Ok(())),
        Err(Error::DecryptFailed)
    );
    assert_eq!(framer.finish(|_, _| Ok(())), Err(Error::DecryptFailed));

    // Its own: a malformed header, then anything else.
    let mut framer: Framer<VerifiedHeader> = Framer::new();
    let bad = framer.push(b"NOTSEALxxxxxxxxxxxxx", verify, |_, _| Ok(()));
    assert!(matches!(bad, Err(Error::MalformedHeader(_))), "{bad:?}");
    framer.fail(Error::DecryptFailed);
    assert_eq!(framer.push(&sealed, verify, |_, _| Ok(())), bad);

    // An error from `open` stops the stream, and nothing after it is handed out.
    let mut framer: Framer<VerifiedHeader> = Framer::new();
    let mut handed = 0;
    let result = framer.push(&sealed, verify, |_, c| {
        handed += 1;
        if c.params().index() == 2 {
            Err(Error::DecryptFailed)
        } else {
            Ok(())
        }
    });
    assert_eq!((result, handed), (Err(Error::DecryptFailed), 3));
    assert_eq!(framer.finish(|_, _| Ok(())), Err(Error::DecryptFailed));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_split_opens_as_the_one_shot_does(
        len in 0usize..2000,
        chunk_size in 16u32..300,
        step in 1usize..700,
        flip in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let (mut sealed, dek) = envelope(&plain, chunk_size);
        if let Some(at) = flip {
            let at = at.index(sealed.len());
            sealed[at] ^= 0x40;
        }
        let expected = open(&sealed, &dek);
        prop_assert_eq!(&open_detached(&sealed, &dek), &expected);
        prop_assert_eq!(
            open_detached_streaming(&sealed, &dek, step),
            open_streaming(&sealed, &dek, step)
        );
        if flip.is_none() {
            prop_assert_eq!(expected, Ok(plain));
        }
    }
}
