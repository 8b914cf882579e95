//! Ingest, playback, Range and envelope download, for every media kind.

use serde_json::Value;

use crate::support::{
    Server, contains, expect_error, expect_json, files_under, fixture, noise, read,
};

#[test]
fn every_media_kind_is_sealed_stored_and_played_back() {
    let (_dir, data, acme) = fixture();
    let server = Server::start(&data, "");
    let api = server.api();

    let marker = b"PLAINTEXT-MARKER-4f1c";
    let with_marker = |body: &[u8]| {
        let mut v = marker.to_vec();
        v.extend_from_slice(body);
        v.extend_from_slice(marker);
        v
    };
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("call", "audio/wav", with_marker(&tapeseal::samples::wav_tone(440.0, 3.0))),
        (
            "email",
            "message/rfc822",
            with_marker(b"From: a@example.com\r\nSubject: refund\r\n\r\nPlease refund order 1234.\r\n"),
        ),
        (
            "chat",
            "application/json",
            with_marker(br#"[{"from":"agent","text":"How can I help?"},{"from":"customer","text":"My card number is ..."}]"#),
        ),
        ("message", "text/plain", with_marker(b"SMS: your code is 123456")),
        (
            "transcript",
            "text/vtt",
            with_marker(b"WEBVTT\n\n00:00.000 --> 00:02.000\nHello, you are through to support.\n"),
        ),
        ("other", "application/octet-stream", with_marker(&noise(200_000, 7))),
        ("call", "audio/wav", Vec::new()),
    ];
    let mut ids = Vec::new();
    for (kind, content_type, body) in &cases {
        let response = api.upload(
            &acme.recorder,
            &format!("kind={kind}&conversation_id=conv-42"),
            content_type,
            body.clone(),
        );
        let meta = expect_json(response, 201);
        assert_eq!(meta["media_kind"], *kind);
        assert_eq!(meta["content_type"], *content_type);
        assert_eq!(meta["conversation_id"], "conv-42");
        assert_eq!(meta["size"], body.len());
        assert_eq!(meta["protection"], "envelope");
        assert!(meta["stored_size"].as_u64().expect("stored") > body.len() as u64);
        let id = meta["id"].as_str().expect("id").to_string();

        let again = expect_json(api.get(&acme.player, &format!("/v1/recordings/{id}")), 200);
        assert_eq!(again, meta);
        let response = api.get(&acme.player, &format!("/v1/recordings/{id}/content"));
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().expect("ascii"),
            *content_type
        );
        assert_eq!(response.headers()["accept-ranges"], "bytes");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert_eq!(&response.bytes().expect("body")[..], &body[..], "{kind}");

        // The envelope is the stored object byte for byte, and its header says what
        // the catalogue says.
        let envelope = api.get(&acme.player, &format!("/v1/recordings/{id}/envelope"));
        assert_eq!(envelope.status().as_u16(), 200);
        let envelope = envelope.bytes().expect("envelope").to_vec();
        assert_eq!(
            envelope.len() as u64,
            meta["stored_size"].as_u64().expect("n")
        );
        let info = tapeseal_core::inspect(&envelope).expect("an envelope");
        assert_eq!(info.header.recording_id(), id);
        assert_eq!(info.header.org_id(), acme.id);
        assert_eq!(info.header.media_kind().name(), *kind);
        assert_eq!(info.header.content_type(), *content_type);
        assert_eq!(
            info.header
                .context()
                .get("conversation-id")
                .map(String::as_str),
            Some("conv-42")
        );
        assert_eq!(info.header.stanzas().len(), 1);
        assert_eq!(
            info.header.stanzas()[0].kek_id,
            meta["kek_id"].as_str().expect("kek")
        );
        assert_eq!(
            info.layout.expect("complete").plaintext_len(),
            body.len() as u64
        );
        ids.push(id);
    }

    // Screen recordings get storage-side encryption: sealed for the server's storage
    // key, not for the organisation's KEK, and with no envelope to download.
    let screen = with_marker(&noise(50_000, 9));
    let meta = api.ingest(&acme.recorder, "screen", "video/webm", &screen);
    assert_eq!(meta["protection"], "storage");
    assert_eq!(meta["kek_id"], Value::Null);
    assert_eq!(meta["size"], screen.len());
    let screen_id = meta["id"].as_str().expect("id");
    assert_eq!(api.content(&acme.player, screen_id), screen);
    let part = api.get_range(
        &acme.player,
        &format!("/v1/recordings/{screen_id}/content"),
        "bytes=100-199",
    );
    assert_eq!(part.status().as_u16(), 206);
    assert_eq!(&part.bytes().expect("body")[..], &screen[100..200]);
    expect_error(
        api.get(
            &acme.player,
            &format!("/v1/recordings/{screen_id}/envelope"),
        ),
        409,
        "conflict",
    );
    let audit = expect_json(
        api.get(
            &acme.admin,
            &format!("/v1/audit?recording_id={screen_id}&action=recording.decrypt"),
        ),
        200,
    );
    assert_eq!(audit.as_array().expect("entries").len(), 2);
    assert!(
        audit[0]["kek_id"]
            .as_str()
            .expect("key")
            .starts_with("storage-")
    );
    let keks = expect_json(api.get(&acme.admin, "/v1/keks"), 200);
    assert!(
        !keks.to_string().contains("storage-"),
        "the storage key is no organisation KEK"
    );

    // A HEAD request answers what a GET would send, and decrypts nothing.
    let first = &ids[0];
    let head = reqwest::blocking::Client::new()
        .head(api.url(&format!("/v1/recordings/{first}/content")))
        .bearer_auth(&acme.player)
        .send()
        .expect("HEAD");
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(
        head.headers()["content-length"].to_str().expect("ascii"),
        cases[0].2.len().to_string()
    );
    assert_eq!(head.headers()["content-type"], "audio/wav");

    // No recording's plaintext is anywhere on disk, screen recordings included, and
    // the log holds neither plaintext nor token secrets.
    for file in files_under(&data) {
        assert!(
            !contains(&read(&file), marker),
            "plaintext found in {}",
            file.display()
        );
    }
    let log = server.log();
    assert!(!log.contains("PLAINTEXT-MARKER"));
    for secret in [&acme.admin, &acme.recorder, &acme.player] {
        assert!(!log.contains(secret.as_str()), "a token secret was logged");
    }

    // Listing by conversation finds them all; every decrypt was audited.
    let listed = expect_json(
        api.get(&acme.player, "/v1/recordings?conversation_id=conv-42"),
        200,
    );
    assert_eq!(listed.as_array().expect("list").len(), ids.len());
    for id in &ids {
        let entries = expect_json(
            api.get(
                &acme.admin,
                &format!("/v1/audit?recording_id={id}&action=recording.decrypt"),
            ),
            200,
        );
        let entries = entries.as_array().expect("entries");
        assert_eq!(entries.len(), 1, "one decrypt of {id}");
        assert!(
            entries[0]["actor"]
                .as_str()
                .expect("actor")
                .starts_with("tok-")
        );
        assert!(
            entries[0]["kek_id"]
                .as_str()
                .expect("kek")
                .starts_with("kek-")
        );
    }
}

#[test]
fn range_requests_return_exactly_the_bytes_asked_for() {
    let (_dir, data, acme) = fixture();
    // Small chunks, so ranges cross many chunk boundaries.
    let server = Server::start(&data, "chunk_size = 4096");
    let api = server.api();
    let body = noise(100_003, 3);
    let meta = api.ingest(&acme.recorder, "call", "audio/wav", &body);
    let id = meta["id"].as_str().expect("id");
    let path = format!("/v1/recordings/{id}/content");
    let len = body.len();

    for (range, start, end) in [
        ("bytes=0-0", 0, 1),
        ("bytes=0-4095", 0, 4096),
        ("bytes=4095-4096", 4095, 4097),
        ("bytes=1000-50000", 1000, 50_001),
        ("bytes=98304-", 98_304, len),
        ("bytes=-1", len - 1, len),
        ("bytes=-5000", len - 5000, len),
        ("bytes=99999-999999", 99_999, len),
        ("bytes=0-", 0, len),
        ("bytes=-999999", 0, len),
    ] {
        let response = api.get_range(&acme.player, &path, range);
        assert_eq!(response.status().as_u16(), 206, "{range}");
        assert_eq!(
            response.headers()["content-range"].to_str().expect("ascii"),
            format!("bytes {start}-{}/{len}", end - 1),
            "{range}"
        );
        assert_eq!(
            response.headers()["content-length"]
                .to_str()
                .expect("ascii"),
            (end - start).to_string()
        );
        assert_eq!(
            &response.bytes().expect("body")[..],
            &body[start..end],
            "{range}"
        );
    }

    // The audit log records each range as Content-Range states it.
    let audit = expect_json(
        api.get(
            &acme.admin,
            &format!("/v1/audit?recording_id={id}&action=recording.decrypt&limit=1000"),
        ),
        200,
    );
    let details: Vec<&str> = audit
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["detail"].as_str().expect("detail"))
        .collect();
    assert!(details.contains(&"bytes 1000-50000/100003"), "{details:?}");
    assert!(details.contains(&"bytes 0-0/100003"), "{details:?}");

    // Outside the content: 416 with the length.
    let response = api.get_range(&acme.player, &path, &format!("bytes={len}-"));
    assert_eq!(response.status().as_u16(), 416);
    assert_eq!(
        response.headers()["content-range"].to_str().expect("ascii"),
        format!("bytes */{len}")
    );
    // Several ranges, or syntax the server does not take: the whole content.
    for ignored in ["bytes=0-1,5-6", "items=0-5", "bytes=x-y", "bytes=9-3"] {
        let response = api.get_range(&acme.player, &path, ignored);
        assert_eq!(response.status().as_u16(), 200, "{ignored}");
        assert_eq!(&response.bytes().expect("body")[..], &body[..]);
    }

    // The envelope itself supports ranges too (a browser reads its header first).
    let envelope = api.get(&acme.player, &format!("/v1/recordings/{id}/envelope"));
    let envelope = envelope.bytes().expect("envelope").to_vec();
    let response = api.get_range(
        &acme.player,
        &format!("/v1/recordings/{id}/envelope"),
        "bytes=0-13",
    );
    assert_eq!(response.status().as_u16(), 206);
    assert_eq!(&response.bytes().expect("body")[..], &envelope[..14]);

    // Only the chunks a range covers are read and opened: damage the last chunk of
    // the stored envelope, and a range in the first chunk still plays while a read
    // of the whole recording does not succeed.
    let object = files_under(&data.join("recordings"))
        .into_iter()
        .find(|p| p.to_string_lossy().contains(id))
        .expect("stored object");
    let mut stored = read(&object);
    let last = stored.len() - 5;
    stored[last] ^= 0x01;
    std::fs::write(&object, &stored).expect("damage");
    let response = api.get_range(&acme.player, &path, "bytes=10-20");
    assert_eq!(response.status().as_u16(), 206);
    assert_eq!(&response.bytes().expect("body")[..], &body[10..21]);
    let response = api.get(&acme.player, &path);
    let whole = response.status().as_u16() == 200
        && response.bytes().map(|b| b[..] == body[..]).unwrap_or(false);
    assert!(!whole, "a damaged chunk must never be served");
}
