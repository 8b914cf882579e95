//! The vectors themselves: each success case, and each failure made by editing a valid
//! envelope.

use super::*;

pub(super) fn build(keys: &[Kek]) -> Res<BTreeMap<String, Value>> {
    use MediaKind::*;
    use WrapAlgorithm::*;
    let mut out = BTreeMap::new();
    let sha256 = [(0, RsaOaepSha256)];
    let mut add = |case: &Case| {
        out.insert(case.name.clone(), success(case));
    };

    for (name, len, what) in [
        ("size-0", 0, "empty plaintext: one empty final chunk"),
        ("size-1", 1, "one byte"),
        ("size-chunk-minus-1", 1023, "one byte short of a chunk"),
        (
            "size-chunk",
            1024,
            "exactly one chunk: a full final chunk, no empty trailer",
        ),
        (
            "size-chunk-plus-1",
            1025,
            "a full chunk and a one-byte final chunk",
        ),
        ("size-two-chunks", 2048, "exactly two full chunks"),
    ] {
        let p = params(Call, "audio/wav", 1024, name);
        add(&make_case(
            name,
            &format!("{what}; 1 KiB chunks"),
            keys,
            len,
            p,
            &sha256,
        )?);
    }
    let big = make_case(
        "size-several-mib",
        "3 MiB + 123 bytes of call audio in default 64 KiB chunks",
        keys,
        3 * 1024 * 1024 + 123,
        params(Call, "audio/ogg", 65_536, "size-several-mib"),
        &sha256,
    )?;
    add(&big);
    add(&make_case(
        "min-chunk-size",
        "the smallest chunk size (16 bytes), 100 bytes of chat",
        keys,
        100,
        params(Chat, "application/json", 16, "min-chunk-size"),
        &sha256,
    )?);
    add(&make_case(
        "wrap-rsa-oaep-sha1",
        "one stanza wrapped with RSA-OAEP-SHA1 (Genesys-style LKM), an email",
        keys,
        777,
        params(Email, "message/rfc822", 1024, "wrap-rsa-oaep-sha1"),
        &[(1, RsaOaepSha1)],
    )?);
    add(&make_case(
        "wrap-rsa-4096",
        "a 4096-bit KEK (512-byte wrapped DEK), RSA-OAEP-SHA256",
        keys,
        2500,
        params(Other, "application/octet-stream", 1024, "wrap-rsa-4096"),
        &[(2, RsaOaepSha256)],
    )?);
    let two = make_case(
        "two-stanzas",
        "two key stanzas (kek-a with OAEP-SHA256, kek-b with OAEP-SHA1) and an encryption context, a transcript",
        keys,
        3000,
        params(Transcript, "text/plain; charset=utf-8", 1024, "two-stanzas")
            .with_context("conversation-id", "c-42")
            .with_context("queue", "billing"),
        &[(0, RsaOaepSha256), (1, RsaOaepSha1)],
    )?;
    add(&two);

    // Failures, all edits of a three-chunk envelope (3000 bytes in 1 KiB chunks).
    let base = make_case(
        "base-three-chunks",
        "three chunks of message text",
        keys,
        3000,
        params(Message, "text/plain", 1024, "base-three-chunks").with_context("channel", "sms"),
        &sha256,
    )?;
    add(&base);
    let env = &base.envelope;
    let dek = base.dek.as_bytes().to_vec();
    let header = Header::parse(env)?;
    let hl = header.header_len();
    let layout = Layout::new(&header, env.len() as u64)?;
    let chunk = |i: u64| -> Vec<u8> {
        let r = layout.chunk_range(i).unwrap_or(0..0);
        env[r.start as usize..r.end as usize].to_vec()
    };
    let hdr = env[..hl].to_vec();
    let join = |parts: &[&[u8]]| parts.concat();
    let mut fail = |name: &str, expect: &str, what: &str, bytes: Vec<u8>, key: &[u8]| {
        let (n, v) = failure(&base, name, expect, what, &bytes, key);
        out.insert(n, v);
    };
    let decrypt = "decrypt failure";
    let header_failure = "header failure";

    fail(
        "truncated-final-chunk",
        decrypt,
        "the last 5 bytes of the final chunk are missing",
        env[..env.len() - 5].to_vec(),
        &dek,
    );
    fail(
        "dropped-final-chunk",
        decrypt,
        "the final chunk is missing",
        join(&[&hdr, &chunk(0), &chunk(1)]),
        &dek,
    );
    fail(
        "dropped-middle-chunk",
        decrypt,
        "chunk 1 of 3 is missing",
        join(&[&hdr, &chunk(0), &chunk(2)]),
        &dek,
    );
    fail(
        "reordered-chunks",
        decrypt,
        "chunks 0 and 1 are swapped",
        join(&[&hdr, &chunk(1), &chunk(0), &chunk(2)]),
        &dek,
    );
    fail(
        "duplicated-chunk",
        decrypt,
        "chunk 0 appears twice",
        join(&[&hdr, &chunk(0), &chunk(0), &chunk(1), &chunk(2)]),
        &dek,
    );
    fail(
        "trailing-byte",
        decrypt,
        "one byte after the final chunk",
        join(&[env, &[0]]),
        &dek,
    );
    fail(
        "trailing-chunk",
        decrypt,
        "a copy of the final chunk after it",
        join(&[env, &chunk(2)]),
        &dek,
    );
    fail(
        "header-only",
        decrypt,
        "the header with no payload at all",
        hdr.clone(),
        &dek,
    );

    let flip = |at: usize| {
        let mut b = env.clone();
        b[at] ^= 0x01;
        b
    };
    let ct_offset =
        14 + 2 + 4 + 32 + 8 + 1 + 2 + header.org_id().len() + 2 + header.recording_id().len() + 2;
    fail(
        "flipped-bit-header-content-type",
        decrypt,
        "one bit of the content type flipped (header MAC)",
        flip(ct_offset),
        &dek,
    );
    fail(
        "flipped-bit-header-wrapped-dek",
        decrypt,
        "one bit of the wrapped DEK flipped (header MAC)",
        flip(hl - 64 - 10),
        &dek,
    );
    fail(
        "flipped-bit-header-mac",
        decrypt,
        "one bit of the header MAC flipped",
        flip(hl - 1),
        &dek,
    );
    fail(
        "flipped-bit-payload",
        decrypt,
        "one bit of chunk 1's ciphertext flipped",
        flip(hl + 1040 + 3),
        &dek,
    );
    fail(
        "flipped-bit-tag",
        decrypt,
        "one bit of the final chunk's tag flipped",
        flip(env.len() - 1),
        &dek,
    );

    let mut wrong = dek.clone();
    wrong[0] ^= 0x80;
    fail(
        "wrong-dek",
        decrypt,
        "a DEK that differs in one bit",
        env.clone(),
        &wrong,
    );

    let d = derive(&dek, header.salt());
    let mut committed = hdr.clone();
    committed[hl - 64] ^= 0x01;
    remac(&mut committed, &d.mac);
    fail(
        "commitment-mismatch",
        decrypt,
        "the commitment is altered and the header MAC recomputed with the right DEK: only the commitment check can refuse it",
        join(&[&committed, &env[hl..]]),
        &dek,
    );
    let empty_final = join(&[
        &hdr,
        &seal_chunk(&d.payload, 0, false, &base.plaintext[..1024]),
        &seal_chunk(&d.payload, 1, true, &[]),
    ]);
    fail(
        "empty-final-chunk",
        decrypt,
        "a full chunk followed by an authentic but empty final chunk, which no writer produces",
        empty_final,
        &dek,
    );

    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = env.clone();
        f(&mut b);
        b
    };
    fail(
        "unsupported-version",
        "unsupported version",
        "format version 2",
        edit(&|b| b[9] = 2),
        &dek,
    );
    fail(
        "bad-magic",
        header_failure,
        "the magic says TAPESEAM",
        edit(&|b| b[7] = b'M'),
        &dek,
    );
    fail(
        "oversized-header",
        header_failure,
        "header_len 65537, past the 64 KiB limit",
        edit(&|b| set_header_len(b, 65_537)),
        &dek,
    );
    fail(
        "undersized-header",
        header_failure,
        "header_len 100, below the minimum",
        edit(&|b| set_header_len(b, 100)),
        &dek,
    );
    fail(
        "unknown-suite",
        header_failure,
        "algorithm suite 2",
        edit(&|b| b[15] = 2),
        &dek,
    );
    fail(
        "chunk-size-too-small",
        header_failure,
        "chunk size 15",
        edit(&|b| b[16..20].copy_from_slice(&15u32.to_be_bytes())),
        &dek,
    );
    fail(
        "unknown-media-kind",
        header_failure,
        "media kind 9",
        edit(&|b| b[60] = 9),
        &dek,
    );
    fail(
        "truncated-header",
        header_failure,
        "the envelope ends inside the header",
        env[..hl - 10].to_vec(),
        &dek,
    );
    fail(
        "unknown-wrap-algorithm",
        header_failure,
        "wrap algorithm 3",
        edit(&|b| b[hl - 64 - 384 - 3] = 3),
        &dek,
    );
    fail(
        "wrapped-dek-wrong-length",
        header_failure,
        "a stanza whose wrapped DEK is 383 bytes",
        edit(&|b| {
            b[hl - 64 - 384 - 2..hl - 64 - 384].copy_from_slice(&383u16.to_be_bytes());
            b.remove(hl - 64 - 1);
            set_header_len(b, hl - 1);
        }),
        &dek,
    );
    fail(
        "zero-stanzas",
        header_failure,
        "a header with no key stanza",
        edit(&|b| {
            let start = hl - 64 - 384 - 2 - 1 - (2 + 5);
            b.drain(start..hl - 64);
            b[start - 1] = 0;
            set_header_len(b, hl - (hl - 64 - start));
        }),
        &dek,
    );
    fail(
        "header-slack-byte",
        header_failure,
        "header_len one larger than the fields, with a byte after the MAC",
        edit(&|b| {
            b.insert(hl, 0);
            set_header_len(b, hl + 1);
        }),
        &dek,
    );
    let ctx_at = ct_offset + header.content_type().len();
    fail(
        "context-count-over-limit",
        header_failure,
        "65 encryption-context entries declared",
        edit(&|b| b[ctx_at..ctx_at + 2].copy_from_slice(&65u16.to_be_bytes())),
        &dek,
    );

    // Header edits of the two-stanza envelope.
    let two_env = &two.envelope;
    let two_header = Header::parse(two_env)?;
    let two_hl = two_header.header_len();
    let two_dek = two.dek.as_bytes().to_vec();
    let mut fail2 = |name: &str, what: &str, f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = two_env.clone();
        f(&mut b);
        let (n, v) = failure(&two, name, header_failure, what, &b, &two_dek);
        out.insert(n, v);
    };
    // kek-b's id text starts 64 + 384 + 2 + 1 + 5 bytes before the end of the header.
    let second_id = two_hl - 64 - 384 - 2 - 1 - 5;
    fail2("duplicate-kek-id", "two stanzas both named kek-a", &|b| {
        b[second_id + 4] = b'a'
    });
    // The context holds "conversation-id" (15) = "c-42" (4), then "queue" (5) = "billing" (7).
    let ctx = 14
        + 2
        + 4
        + 32
        + 8
        + 1
        + 2
        + two_header.org_id().len()
        + 2
        + two_header.recording_id().len()
        + 2
        + two_header.content_type().len();
    fail2("unsorted-context", "context keys out of order", &|b| {
        let first = ctx + 2;
        let second = first + 2 + 15 + 2 + 4;
        let end = second + 2 + 5 + 2 + 7;
        let mut swapped = b[second..end].to_vec();
        swapped.extend_from_slice(&b[first..second]);
        b[first..end].copy_from_slice(&swapped);
    });
    Ok(out)
}
