//! Organisations never see each other; roles limit what a token does; bad input
//! gets a clear error and changes nothing.

use std::io::Read;
use std::time::Duration;

use serde_json::json;

use crate::support::{
    Server, expect_error, expect_json, files_under, fixture, noise, org, partial_upload,
};

#[test]
fn one_organisation_cannot_read_list_or_learn_of_anothers_recordings_or_keys() {
    let (_dir, data, acme) = fixture();
    let globex = org(&data, "globex");
    let server = Server::start(&data, "");
    let api = server.api();

    let secret = noise(20_000, 5);
    let meta = api.ingest(&acme.recorder, "call", "audio/wav", &secret);
    let id = meta["id"].as_str().expect("id");
    let acme_kek = meta["kek_id"].as_str().expect("kek");
    api.ingest(&globex.recorder, "call", "audio/wav", b"globex's own");

    // Another organisation's recording looks exactly like one that does not exist.
    let missing = "rec-00000000000000000000000000000000";
    for path in ["", "/content", "/envelope"] {
        let theirs = api.get(&globex.player, &format!("/v1/recordings/{id}{path}"));
        let status = theirs.status().as_u16();
        let body = theirs.text().expect("body");
        let nothing = api.get(&globex.player, &format!("/v1/recordings/{missing}{path}"));
        assert_eq!(status, 404);
        assert_eq!(nothing.status().as_u16(), 404);
        assert_eq!(body, nothing.text().expect("body"), "{path}");
        assert!(!body.contains(id));
    }
    let listed = expect_json(api.get(&globex.player, "/v1/recordings"), 200);
    assert_eq!(listed.as_array().expect("list").len(), 1);
    assert!(!listed.to_string().contains(id));
    let listed = expect_json(
        api.get(&globex.admin, &format!("/v1/recordings?kek_id={acme_kek}")),
        200,
    );
    assert_eq!(listed.as_array().expect("list").len(), 0);

    // Nor its keys, jobs or audit log.
    expect_error(
        api.get(&globex.admin, &format!("/v1/keks/{acme_kek}")),
        404,
        "not_found",
    );
    expect_error(
        api.delete(&globex.admin, &format!("/v1/keks/{acme_kek}")),
        404,
        "not_found",
    );
    expect_error(
        api.post_json(
            &globex.admin,
            "/v1/jobs/rewrap",
            &json!({"from_kek_id": acme_kek}),
        ),
        404,
        "not_found",
    );
    let keks = expect_json(api.get(&globex.admin, "/v1/keks"), 200);
    assert!(!keks.to_string().contains(acme_kek));
    let audit = expect_json(api.get(&globex.admin, "/v1/audit?limit=1000"), 200);
    assert!(!audit.to_string().contains(id));
    assert!(!audit.to_string().contains(acme_kek));
    let audit = expect_json(
        api.get(&globex.admin, &format!("/v1/audit?recording_id={id}")),
        200,
    );
    assert_eq!(audit.as_array().expect("entries").len(), 0);

    // Its own player still plays it.
    assert_eq!(api.content(&acme.player, id), secret);
}

#[test]
fn each_role_does_only_its_own_job() {
    let (_dir, data, acme) = fixture();
    let server = Server::start(&data, "");
    let api = server.api();
    let meta = api.ingest(&acme.recorder, "chat", "application/json", b"[]");
    let id = meta["id"].as_str().expect("id");

    for token in [&acme.player, &acme.admin] {
        let response = api.upload(token, "kind=call", "audio/wav", b"x".to_vec());
        expect_error(response, 403, "forbidden");
    }
    for token in [&acme.recorder, &acme.admin] {
        expect_error(
            api.get(token, &format!("/v1/recordings/{id}/content")),
            403,
            "forbidden",
        );
        expect_error(
            api.get(token, &format!("/v1/recordings/{id}/envelope")),
            403,
            "forbidden",
        );
    }
    for token in [&acme.recorder, &acme.player] {
        expect_error(api.get(token, "/v1/keks"), 403, "forbidden");
        expect_error(
            api.post_json(token, "/v1/keks", &json!({})),
            403,
            "forbidden",
        );
        expect_error(api.get(token, "/v1/audit"), 403, "forbidden");
        expect_error(api.get(token, "/v1/rotation-schedule"), 403, "forbidden");
        expect_error(
            api.post_json(token, "/v1/tokens", &json!({"role": "admin"})),
            403,
            "forbidden",
        );
    }
    // Metadata is for every role of the organisation.
    for token in [&acme.recorder, &acme.player, &acme.admin] {
        expect_json(api.get(token, &format!("/v1/recordings/{id}")), 200);
    }
}

#[test]
fn bad_input_gets_a_clear_error_and_stores_nothing() {
    let (_dir, data, acme) = fixture();
    let server = Server::start(&data, "max_upload_bytes = 100000");
    let api = server.api();
    let repo = data.join("recordings");

    // Tokens.
    let no_token = reqwest::blocking::get(api.url("/v1/recordings")).expect("GET");
    expect_error(no_token, 401, "unauthorized");
    expect_error(
        api.get("tsk_not-a-real-token", "/v1/recordings"),
        401,
        "unauthorized",
    );
    expect_error(api.get("Basic abc", "/v1/recordings"), 401, "unauthorized");

    // Unknown routes and methods answer in the same error format.
    expect_error(api.get(&acme.player, "/v1/no-such-thing"), 404, "not_found");
    expect_error(
        api.delete(&acme.admin, "/v1/recordings"),
        405,
        "method_not_allowed",
    );

    // Ingest parameters.
    expect_error(
        api.upload(&acme.recorder, "kind=fax", "audio/wav", b"x".to_vec()),
        400,
        "bad_request",
    );
    expect_error(
        api.upload(&acme.recorder, "", "audio/wav", b"x".to_vec()),
        400,
        "bad_request",
    );
    expect_error(
        api.upload(
            &acme.recorder,
            "kind=call",
            "not a mime type",
            b"x".to_vec(),
        ),
        400,
        "bad_request",
    );
    // What the envelope format cannot carry, the core refuses: 422, not 500.
    let long = "c".repeat(1025);
    let message = expect_error(
        api.upload(
            &acme.recorder,
            &format!("kind=call&conversation_id={long}"),
            "audio/wav",
            b"x".to_vec(),
        ),
        422,
        "invalid_parameter",
    );
    assert!(
        message.contains("longer than the format allows"),
        "{message}"
    );
    let long_type = format!("audio/{}", "x".repeat(300));
    expect_error(
        api.upload(&acme.recorder, "kind=call", &long_type, b"x".to_vec()),
        422,
        "invalid_parameter",
    );
    expect_error(
        api.upload(
            &acme.recorder,
            "kind=call&conversation_id=a%01b",
            "audio/wav",
            b"x".to_vec(),
        ),
        400,
        "bad_request",
    );

    // Too large: refused, and nothing stored.
    let message = expect_error(
        api.upload(&acme.recorder, "kind=call", "audio/wav", noise(100_001, 1)),
        413,
        "payload_too_large",
    );
    assert!(message.contains("100000"), "{message}");
    let ok = api.ingest(&acme.recorder, "call", "audio/wav", &noise(100_000, 1));
    assert_eq!(ok["size"], 100_000);

    // An upload cut off mid-way leaves nothing behind.
    let stream = partial_upload(&api.url(""), &acme.recorder, 90_000, 40_000);
    std::thread::sleep(Duration::from_millis(300));
    drop(stream);
    std::thread::sleep(Duration::from_millis(500));
    let listed = expect_json(api.get(&acme.player, "/v1/recordings"), 200);
    assert_eq!(
        listed.as_array().expect("list").len(),
        1,
        "only the complete upload"
    );
    assert_eq!(files_under(&repo).len(), 1, "{:?}", files_under(&repo));

    // Unknown recording, and a range outside the content.
    let missing = "/v1/recordings/rec-ffffffffffffffffffffffffffffffff/content";
    expect_error(api.get(&acme.player, missing), 404, "not_found");
    let id = ok["id"].as_str().expect("id");
    expect_error(
        api.get_range(
            &acme.player,
            &format!("/v1/recordings/{id}/content"),
            "bytes=100000-",
        ),
        416,
        "range_not_satisfiable",
    );

    // A malformed envelope in the repository.
    let object = files_under(&repo).pop().expect("object");
    let good = std::fs::read(&object).expect("read");
    std::fs::write(&object, b"this is not an envelope at all").expect("garble");
    expect_error(
        api.get(&acme.player, &format!("/v1/recordings/{id}/content")),
        500,
        "unreadable_recording",
    );
    // A truncated one: shorter than its catalogue entry says.
    std::fs::write(&object, &good[..good.len() - 100]).expect("truncate");
    expect_error(
        api.get(&acme.player, &format!("/v1/recordings/{id}/content")),
        500,
        "unreadable_recording",
    );
    // A tampered one: the header reads, the payload does not authenticate.
    let mut tampered = good.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x80;
    std::fs::write(&object, &tampered).expect("tamper");
    expect_error(
        api.get(&acme.player, &format!("/v1/recordings/{id}/content")),
        500,
        "decrypt_failed",
    );
    // The failed attempt is audited as such, and not as a decrypt.
    let audit = expect_json(
        api.get(
            &acme.admin,
            &format!("/v1/audit?recording_id={id}&limit=1000"),
        ),
        200,
    );
    let actions: Vec<&str> = audit
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    assert_eq!(actions, ["recording.ingest", "recording.decrypt_failed"]);
    // Restored, it plays again: nothing was lost by the failures.
    std::fs::write(&object, &good).expect("restore");
    assert_eq!(api.content(&acme.player, id), noise(100_000, 1));

    // Malformed JSON bodies.
    let response = reqwest::blocking::Client::new()
        .put(api.url("/v1/rotation-schedule"))
        .bearer_auth(&acme.admin)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .expect("PUT");
    expect_error(response, 400, "bad_request");

    // The server survived all of it.
    let mut health = String::new();
    reqwest::blocking::get(api.url("/healthz"))
        .expect("healthz")
        .read_to_string(&mut health)
        .expect("body");
    assert!(health.contains("\"ok\""));
}
