//! Runs every file in tests/vectors through every way the core opens an envelope:
//! one-shot, streaming with several push sizes, and chunk-level random access.

mod common;

use common::open_streaming;

use common::{b64, category, kek_private, vectors};
use rsa::Oaep;
use sha2::{Digest, Sha256};
use tapeseal_core::{Decryptor, Dek, Error, Header, Layout, inspect, open};

fn open_random_access(envelope: &[u8], dek: &Dek) -> Result<Vec<u8>, Error> {
    let header = Header::parse(envelope)?;
    let layout = Layout::new(&header, envelope.len() as u64)?;
    let decryptor: Decryptor = Decryptor::new(header, dek)?;
    let mut out = Vec::new();
    // Backwards, to show chunks do not depend on each other.
    for index in (0..layout.chunk_count()).rev() {
        let range = layout.chunk_range(index)?;
        let plain = decryptor.open_chunk(
            index,
            &envelope[range.start as usize..range.end as usize],
            layout.is_last(index),
        )?;
        assert_eq!(
            plain.len() as u64,
            layout.chunk_plaintext_range(index)?.end - layout.chunk_plaintext_range(index)?.start
        );
        out.splice(0..0, plain);
    }
    Ok(out)
}

#[test]
fn every_vector_has_its_expected_outcome_one_shot_and_streaming() {
    for v in vectors() {
        let dek = Dek::from_slice(&v.dek).expect("32-byte DEK");
        let one_shot = open(&v.envelope, &dek);
        assert_eq!(
            category(&one_shot),
            v.expect,
            "{} one-shot: {:?}",
            v.name,
            one_shot.as_ref().err()
        );
        for step in [1, 7, 1000, 65_552, v.envelope.len()] {
            let streamed = open_streaming(&v.envelope, &dek, step);
            assert_eq!(
                category(&streamed),
                v.expect,
                "{} streaming in {step}-byte pushes: {:?}",
                v.name,
                streamed.as_ref().err()
            );
            if let (Ok(a), Ok(b)) = (&one_shot, &streamed) {
                assert_eq!(a, b, "{}: streaming and one-shot disagree", v.name);
            }
        }
    }
}

#[test]
fn success_vectors_decrypt_to_the_recorded_plaintext() {
    let mut checked = 0;
    for v in vectors().into_iter().filter(|v| v.expect == "success") {
        let dek = Dek::from_slice(&v.dek).expect("DEK");
        let plain = open(&v.envelope, &dek).expect("opens");
        assert_eq!(
            plain.len() as u64,
            v.json["plaintext_len"].as_u64().expect("len"),
            "{}",
            v.name
        );
        assert_eq!(
            hex::encode(Sha256::digest(&plain)),
            v.json["plaintext_sha256"].as_str().expect("sha"),
            "{}",
            v.name
        );
        if !v.json["plaintext"].is_null() {
            assert_eq!(plain, b64(&v.json["plaintext"]), "{}", v.name);
        }
        assert_eq!(
            open_random_access(&v.envelope, &dek).expect("random access"),
            plain,
            "{}",
            v.name
        );
        checked += 1;
    }
    assert!(checked >= 10);
}

#[test]
fn success_vectors_inspect_as_recorded_and_unwrap_with_their_keks() {
    for v in vectors().into_iter().filter(|v| v.expect == "success") {
        let info = inspect(&v.envelope).expect("inspect");
        let h = &v.json["header"];
        assert_eq!(info.header.org_id(), h["org_id"].as_str().expect("org"));
        assert_eq!(
            info.header.recording_id(),
            h["recording_id"].as_str().expect("rec")
        );
        assert_eq!(
            info.header.media_kind().name(),
            h["media_kind"].as_str().expect("kind")
        );
        assert_eq!(
            info.header.content_type(),
            h["content_type"].as_str().expect("ct")
        );
        assert_eq!(
            info.header.created_at_ms(),
            h["created_at_ms"].as_u64().expect("time")
        );
        assert_eq!(
            u64::from(info.header.chunk_size()),
            h["chunk_size"].as_u64().expect("chunk")
        );
        let context: std::collections::BTreeMap<String, String> =
            serde_json::from_value(h["context"].clone()).expect("context");
        assert_eq!(info.header.context(), &context, "{}", v.name);
        let layout = info.layout.expect("whole envelope has a layout");
        assert_eq!(
            layout.plaintext_len(),
            v.json["plaintext_len"].as_u64().expect("len")
        );
        assert_eq!(layout.envelope_len(), v.envelope.len() as u64);
        let stanzas = h["stanzas"].as_array().expect("stanzas");
        assert_eq!(info.header.stanzas().len(), stanzas.len(), "{}", v.name);
        for (stanza, expected) in info.header.stanzas().iter().zip(stanzas) {
            assert_eq!(stanza.kek_id, expected["kek_id"].as_str().expect("id"));
            assert_eq!(
                stanza.algorithm.name(),
                expected["algorithm"].as_str().expect("alg")
            );
            let key = kek_private(&stanza.kek_id);
            let dek = match stanza.algorithm.name() {
                "rsa-oaep-sha256" => key.decrypt(Oaep::<sha2::Sha256>::new(), &stanza.wrapped_dek),
                _ => key.decrypt(Oaep::<sha1::Sha1>::new(), &stanza.wrapped_dek),
            }
            .expect("the stanza unwraps with its KEK");
            assert_eq!(
                dek, v.dek,
                "{}: stanza {} wraps another DEK",
                v.name, stanza.kek_id
            );
        }
    }
}

#[test]
fn header_failures_need_no_key_to_be_found() {
    for v in vectors()
        .into_iter()
        .filter(|v| v.expect == "header failure" || v.expect == "unsupported version")
    {
        let result = inspect(&v.envelope).map(|_| Vec::new());
        assert_eq!(
            category(&result),
            v.expect,
            "{}: {:?}",
            v.name,
            result.err()
        );
    }
}
