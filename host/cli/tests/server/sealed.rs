//! Recordings sealed at the edge: a recorder asks for the current KEK
//! (`GET /v1/keks/current`), seals with the real `tapeseal seal`, and uploads the
//! envelope (`PUT /v1/recordings/{id}/envelope`), which then plays like any other.
//! Every envelope the server must refuse is refused with its status and code, and
//! leaves nothing in the catalogue, the audit log or the repository directory.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::blocking::Response;
use serde_json::{Value, json};

use crate::support::edge::{Kek, current_kek, put_envelope, seal};
use crate::support::{
    Api, Org, Server, audit_actions, cli, expect_error, expect_json, files_under, fixture, metric,
    noise, org, read,
};

/// Plaintext bytes per chunk of `tapeseal seal` (its default) and a sealed chunk's size.
const CHUNK: usize = 65_536;
const STRIDE: usize = CHUNK + 16;

/// The envelope's header length, from its 14-byte prefix.
fn header_len(envelope: &[u8]) -> usize {
    u32::from_be_bytes(envelope[10..14].try_into().expect("prefix")) as usize
}

/// Asserts that `org` has exactly `count` recordings, in the catalogue, in the
/// audit log and in the repository directory (objects and staging files alike), and
/// that `refused` is not among them.
fn assert_stored(api: &Api, org: &Org, data: &Path, count: usize, refused: &str) {
    expect_error(
        api.get(&org.player, &format!("/v1/recordings/{refused}")),
        404,
        "not_found",
    );
    let listed = expect_json(api.get(&org.admin, "/v1/recordings"), 200);
    assert_eq!(listed.as_array().expect("list").len(), count, "{listed}");
    let ingests = audit_actions(api, &org.admin)
        .iter()
        .filter(|a| *a == "recording.ingest")
        .count();
    assert_eq!(ingests, count, "audited ingests");
    let objects: Vec<PathBuf> = files_under(&data.join("recordings"))
        .into_iter()
        .filter(|f| f.to_string_lossy().contains(&org.id))
        .collect();
    assert_eq!(objects.len(), count, "{objects:?}");
}

/// A server on a fresh data directory with organisation "acme", and acme's current
/// KEK: what every test here starts from.
struct Edge {
    dir: tempfile::TempDir,
    data: PathBuf,
    acme: Org,
    /// Running for as long as the test holds this.
    _server: Server,
    api: Api,
    kek: Kek,
}

impl Edge {
    /// Starts a server with extra `config` lines; acme's recorder asks for the KEK.
    fn start(config: &str) -> Self {
        Self::start_asking(config, |api, acme, dir| {
            current_kek(api, &acme.recorder, dir)
        })
    }

    /// Starts a server with extra `config` lines; `ask` gets acme's current KEK from
    /// it (and may check the server before it does).
    fn start_asking(config: &str, ask: impl FnOnce(&Api, &Org, &Path) -> Kek) -> Self {
        let (dir, data, acme) = fixture();
        let server = Server::start(&data, config);
        let api = server.api();
        let kek = ask(&api, &acme, dir.path());
        Self {
            dir,
            data,
            acme,
            _server: server,
            api,
            kek,
        }
    }

    /// Seals `plaintext` for acme with the current KEK (see [`seal`]).
    fn seal(&self, name: &str, plaintext: &[u8], extra: &[&str]) -> (String, Vec<u8>) {
        seal(
            self.dir.path(),
            name,
            &self.acme.id,
            &self.kek.id,
            &self.kek.pem,
            plaintext,
            extra,
        )
    }

    /// Uploads `body` as recording `id` with acme's recorder token.
    fn put(&self, id: &str, body: Vec<u8>) -> Response {
        put_envelope(&self.api, &self.acme.recorder, id, body)
    }

    /// Uploads `body` as recording `id`, expects 201 and returns the recording.
    fn upload(&self, id: &str, body: Vec<u8>) -> Value {
        expect_json(self.put(id, body), 201)
    }

    /// [`assert_stored`] for acme.
    fn assert_stored(&self, count: usize, refused: &str) {
        assert_stored(&self.api, &self.acme, &self.data, count, refused);
    }
}

#[test]
fn a_recording_sealed_at_the_edge_is_uploaded_and_plays_back_whole_and_by_range() {
    // The current KEK: recorders and admins may ask; the first ask creates it.
    let mut view = Value::Null;
    let e = Edge::start_asking("", |api, acme, dir| {
        expect_error(api.get(&acme.player, "/v1/keks/current"), 403, "forbidden");
        view = expect_json(api.get(&acme.recorder, "/v1/keks/current"), 200);
        current_kek(api, &acme.admin, dir)
    });
    let (api, acme, kek) = (&e.api, &e.acme, &e.kek);
    assert_eq!(view["org_id"], acme.id.as_str());
    assert_eq!(view["wrap_algorithm"], "rsa-oaep-sha256");
    assert!(
        view["public_key_pem"]
            .as_str()
            .expect("pem")
            .starts_with("-----BEGIN PUBLIC KEY-----\n")
    );
    assert_eq!(view["id"], kek.id.as_str(), "the same KEK for every ask");
    let keks = expect_json(api.get(&acme.admin, "/v1/keks"), 200);
    assert_eq!(keks.as_array().expect("keks").len(), 1, "{keks}");
    assert_eq!(keks[0]["id"], kek.id.as_str());
    assert_eq!(keks[0]["current"], true);
    assert_eq!(keks[0]["public_key_pem"], view["public_key_pem"]);

    // Seal with the real binary; four chunks, the last one partial.
    let plaintext = noise(200_000, 11);
    let (id, envelope) = e.seal(
        "call",
        &plaintext,
        &["--context", "conversation-id=conv-edge-1"],
    );
    assert!(!crate::support::contains(&envelope, &plaintext[..64]));

    // Recorders only.
    expect_error(
        put_envelope(api, &acme.player, &id, envelope.clone()),
        403,
        "forbidden",
    );
    let stored = e.upload(&id, envelope.clone());
    assert_eq!(stored["id"], id.as_str());
    assert_eq!(stored["kek_id"], kek.id.as_str());
    assert_eq!(stored["media_kind"], "call");
    assert_eq!(stored["content_type"], "audio/wav");
    assert_eq!(stored["conversation_id"], "conv-edge-1");
    assert_eq!(stored["protection"], "envelope");
    assert_eq!(stored["size"], 200_000);
    assert_eq!(stored["stored_size"], envelope.len());
    assert_eq!(
        expect_json(api.get(&acme.player, &format!("/v1/recordings/{id}")), 200),
        stored
    );

    // The stored object is the envelope, byte for byte, and the only file.
    let files = files_under(&e.data.join("recordings"));
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(read(&files[0]), envelope);
    let download = api.get(&acme.player, &format!("/v1/recordings/{id}/envelope"));
    assert_eq!(download.status().as_u16(), 200);
    assert_eq!(download.bytes().expect("envelope").to_vec(), envelope);

    // Playback decrypts it, whole and by range (a range across a chunk boundary, and
    // the last bytes).
    assert_eq!(api.content(&acme.player, &id), plaintext);
    let content = format!("/v1/recordings/{id}/content");
    let range = api.get_range(&acme.player, &content, "bytes=100000-150000");
    assert_eq!(range.status().as_u16(), 206);
    assert_eq!(
        range.headers()["content-range"],
        "bytes 100000-150000/200000"
    );
    assert_eq!(
        range.bytes().expect("range").to_vec(),
        &plaintext[100_000..=150_000]
    );
    let tail = api.get_range(&acme.player, &content, "bytes=-16");
    assert_eq!(tail.status().as_u16(), 206);
    assert_eq!(tail.bytes().expect("tail").to_vec(), &plaintext[199_984..]);

    // Audited and counted like ingest; listed by its conversation.
    let ingest = expect_json(
        api.get(
            &acme.admin,
            &format!("/v1/audit?action=recording.ingest&recording_id={id}"),
        ),
        200,
    );
    assert_eq!(ingest.as_array().expect("entries").len(), 1, "{ingest}");
    assert_eq!(
        ingest[0]["actor"].as_str().map(|a| a.starts_with("tok-")),
        Some(true)
    );
    assert_eq!(ingest[0]["kek_id"], kek.id.as_str());
    assert_eq!(ingest[0]["detail"], "200000 bytes of call");
    let listed = expect_json(
        api.get(&acme.player, "/v1/recordings?conversation_id=conv-edge-1"),
        200,
    );
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(metric(api, "tapeseal_seals_total"), 1.0);
    assert_eq!(
        metric(
            api,
            "tapeseal_http_requests_total{route=\"/v1/recordings/{id}/envelope\",status=\"201\"}"
        ),
        1.0
    );

    // Both routes are documented.
    let doc = expect_json(
        reqwest::blocking::get(api.url("/openapi.json")).expect("GET"),
        200,
    );
    assert!(doc["paths"]["/v1/keks/current"]["get"].is_object());
    assert!(doc["paths"]["/v1/recordings/{id}/envelope"]["put"].is_object());
    assert!(doc["paths"]["/v1/recordings/{id}/envelope"]["get"].is_object());
}

#[test]
fn an_envelope_of_another_organisation_or_recording_or_with_bad_metadata_is_refused() {
    let e = Edge::start("");
    let globex = org(&e.data, "globex");
    let plaintext = noise(70_000, 12);

    // Sealed for globex with acme's KEK: acme may not store it...
    let (id, envelope) = seal(
        e.dir.path(),
        "globex",
        &globex.id,
        &e.kek.id,
        &e.kek.pem,
        &plaintext,
        &[],
    );
    let message = expect_error(e.put(&id, envelope.clone()), 403, "forbidden");
    assert!(message.contains(&globex.id), "{message}");
    e.assert_stored(0, &id);
    // ...and for globex, acme's KEK is one it does not have.
    expect_error(
        put_envelope(&e.api, &globex.recorder, &id, envelope),
        404,
        "unknown_key",
    );
    assert_stored(&e.api, &globex, &e.data, 0, &id);

    // A well-formed envelope of acme uploaded under another id.
    let (id, envelope) = e.seal("acme", &plaintext, &[]);
    let other = "rec-0123456789abcdef0123456789abcdef";
    let message = expect_error(e.put(other, envelope.clone()), 422, "invalid_parameter");
    assert!(message.contains(&id), "{message}");
    e.assert_stored(0, other);
    e.assert_stored(0, &id);
    // Metadata the catalogue does not take, as ingest would not.
    for (name, extra, why) in [
        ("no-mime", ["--content-type", "nonsense"], "MIME type"),
        (
            "control",
            ["--context", "conversation-id=conv\t1"],
            "conversation-id",
        ),
    ] {
        let (bad, sealed) = e.seal(name, &plaintext, &extra);
        let message = expect_error(e.put(&bad, sealed), 422, "invalid_parameter");
        assert!(message.contains(why), "{message}");
        e.assert_stored(0, &bad);
    }
    // An id that is not a recording id is refused before anything is read.
    expect_error(
        e.put("not-a-recording", envelope.clone()),
        400,
        "bad_request",
    );
    // What was refused was only the id: under its own id it is stored.
    e.upload(&id, envelope);
    assert_eq!(e.api.content(&e.acme.player, &id), plaintext);
}

#[test]
fn an_envelope_for_an_unknown_kek_or_with_the_wrong_padding_is_refused() {
    let e = Edge::start("");
    let plaintext = noise(30_000, 13);

    // A key pair the server has never seen.
    let keys = e.dir.path().join("keys");
    let keys_arg = keys.to_str().expect("utf-8 path");
    cli(&["keygen", "--out", keys_arg, "--id", "kek-0000000000000000"]);
    let (id, envelope) = seal(
        e.dir.path(),
        "unknown",
        &e.acme.id,
        "kek-0000000000000000",
        &keys.join("kek-0000000000000000.public.pem"),
        &plaintext,
        &[],
    );
    let message = expect_error(e.put(&id, envelope), 404, "unknown_key");
    assert!(message.contains("kek-0000000000000000"), "{message}");
    e.assert_stored(0, &id);

    // The right KEK, wrapped with another OAEP padding than the KEK takes.
    let (id, envelope) = e.seal("sha1", &plaintext, &["--wrap", "rsa-oaep-sha1"]);
    let message = expect_error(e.put(&id, envelope), 422, "invalid_parameter");
    assert!(message.contains("rsa-oaep-sha1"), "{message}");
    e.assert_stored(0, &id);
}

#[test]
fn an_older_active_kek_is_taken_a_retired_one_refused_and_a_deleted_one_unknown() {
    let e = Edge::start("");
    let (api, acme, old) = (&e.api, &e.acme, &e.kek);
    let rotated = expect_json(api.post_json(&acme.admin, "/v1/keks", &json!({})), 201);
    let new = rotated["id"].as_str().expect("id").to_string();
    assert_ne!(new, old.id);

    // A recorder that has not asked since the rotation still seals for the old KEK,
    // which is active: taken.
    let first = noise(90_000, 14);
    let (kept, envelope) = e.seal("older", &first, &[]);
    let stored = e.upload(&kept, envelope);
    assert_eq!(stored["kek_id"], old.id.as_str());

    // A rewrap job moves it onto the new KEK and retires the old one.
    let job = expect_json(
        api.post_json(
            &acme.admin,
            "/v1/jobs/rewrap",
            &json!({"from_kek_id": old.id}),
        ),
        202,
    );
    let job = api.wait_for_job(&acme.admin, job["id"].as_str().expect("job id"));
    assert_eq!(job["state"], "done", "{job}");
    let retired = expect_json(api.get(&acme.admin, &format!("/v1/keks/{}", old.id)), 200);
    assert_eq!(retired["state"], "retired");
    assert_eq!(
        api.content(&acme.player, &kept),
        first,
        "rewrapped, it plays"
    );

    // Sealed for the retired KEK: refused.
    let (id, envelope) = e.seal("retired", &noise(20_000, 15), &[]);
    let message = expect_error(e.put(&id, envelope.clone()), 409, "conflict");
    assert!(message.contains("retired"), "{message}");
    e.assert_stored(1, &id);

    // Deleted, the KEK is one the organisation does not have.
    let deleted = api.delete(&acme.admin, &format!("/v1/keks/{}", old.id));
    assert_eq!(deleted.status().as_u16(), 204);
    expect_error(e.put(&id, envelope), 404, "unknown_key");
    e.assert_stored(1, &id);
    assert_eq!(api.content(&acme.player, &kept), first);
}

#[test]
fn a_recording_id_already_catalogued_is_refused_and_the_original_kept() {
    let e = Edge::start("");
    let original = noise(80_000, 16);
    let (id, envelope) = e.seal("first", &original, &[]);
    e.upload(&id, envelope.clone());

    // The same upload again, and another recording sealed under the same id.
    let message = expect_error(e.put(&id, envelope.clone()), 409, "conflict");
    assert!(message.contains("already exists"), "{message}");
    let (same_id, other) = e.seal("second", &noise(80_000, 17), &["--recording-id", &id]);
    assert_eq!(same_id, id);
    expect_error(e.put(&id, other), 409, "conflict");

    // Nothing changed: one recording, its object the first envelope, playing the
    // first plaintext.
    let listed = expect_json(e.api.get(&e.acme.admin, "/v1/recordings"), 200);
    assert_eq!(listed.as_array().expect("list").len(), 1);
    let files = files_under(&e.data.join("recordings"));
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(read(&files[0]), envelope);
    let ingests = audit_actions(&e.api, &e.acme.admin)
        .iter()
        .filter(|a| *a == "recording.ingest")
        .count();
    assert_eq!(ingests, 1);
    assert_eq!(e.api.content(&e.acme.player, &id), original);
}

#[test]
fn a_truncated_envelope_is_refused() {
    let e = Edge::start("");
    let plaintext = noise(200_000, 18);
    let (id, envelope) = e.seal("call", &plaintext, &[]);
    let header = header_len(&envelope);
    assert_eq!(
        envelope.len(),
        header + 3 * STRIDE + (200_000 - 3 * CHUNK) + 16
    );

    // Cut in the third chunk, 10 bytes into it (fewer than a tag), and cut right after
    // the header: lengths no complete envelope has.
    for cut in [header + 2 * STRIDE + 10, header + 3 * STRIDE + 5, header] {
        let message = expect_error(
            e.put(&id, envelope[..cut].to_vec()),
            422,
            "invalid_parameter",
        );
        assert!(message.contains("truncated"), "{message}");
        e.assert_stored(0, &id);
    }
    // Cut inside the header, and inside its prefix.
    for cut in [header - 1, 10] {
        expect_error(
            e.put(&id, envelope[..cut].to_vec()),
            422,
            "incomplete_header",
        );
        e.assert_stored(0, &id);
    }

    // Whole, the same envelope is taken: only its length was refused.
    e.upload(&id, envelope);
    assert_eq!(e.api.content(&e.acme.player, &id), plaintext);
}

#[test]
fn trailing_bytes_are_refused() {
    let e = Edge::start("");
    // Three full chunks: any byte after them starts a fourth chunk.
    let plaintext = noise(3 * CHUNK, 19);
    let (id, envelope) = e.seal("full", &plaintext, &[]);
    assert_eq!(envelope.len(), header_len(&envelope) + 3 * STRIDE);
    for extra in [1, 7, 16, STRIDE + 3] {
        let mut padded = envelope.clone();
        padded.extend_from_slice(&noise(extra, 20));
        let message = expect_error(e.put(&id, padded), 422, "invalid_parameter");
        assert!(message.contains("trailing bytes"), "{message}");
        e.assert_stored(0, &id);
    }
    e.upload(&id, envelope);
    assert_eq!(e.api.content(&e.acme.player, &id), plaintext);
}

/// What a test does to an envelope.
type Damage = fn(&[u8]) -> Vec<u8>;

/// What a length check cannot see: a cut at a chunk boundary, a cut that leaves a
/// final chunk of 17 bytes or more, and trailing bytes that stay within the final
/// chunk's size all give a length a complete envelope of a shorter or longer
/// recording has. Without the DEK the server cannot tell; a decrypt can, and
/// playback reports it (and audits the failure).
#[test]
fn a_cut_or_padding_the_length_cannot_reveal_is_stored_and_playback_reports_it() {
    let e = Edge::start("");
    let cases: [(&str, Damage); 3] = [
        ("boundary", |e| e[..header_len(e) + 2 * STRIDE].to_vec()),
        ("mid-chunk", |e| {
            e[..header_len(e) + 2 * STRIDE + 1_000].to_vec()
        }),
        ("padded", |e| [e, &noise(30_000, 27)[..]].concat()),
    ];
    for (name, damage) in cases {
        let (id, envelope) = e.seal(name, &noise(200_000, 21), &[]);
        let damaged = damage(&envelope);
        assert_ne!(damaged.len(), envelope.len());
        e.upload(&id, damaged);
        expect_error(
            e.api
                .get(&e.acme.player, &format!("/v1/recordings/{id}/content")),
            500,
            "decrypt_failed",
        );
    }
    assert_eq!(files_under(&e.data.join("recordings")).len(), 3);
    let failed = audit_actions(&e.api, &e.acme.admin)
        .iter()
        .filter(|a| *a == "recording.decrypt_failed")
        .count();
    assert_eq!(failed, 3);
}

#[test]
fn garbage_is_refused() {
    let e = Edge::start("");
    let (id, envelope) = e.seal("call", &noise(10_000, 22), &[]);

    let mut version_2 = envelope.clone();
    version_2[9] = 2;
    let mut bad_kind = envelope.clone();
    bad_kind[60] = 9;
    let refusals: [(&str, Vec<u8>, &str); 5] = [
        ("noise", noise(100_000, 23), "malformed_header"),
        ("empty", Vec::new(), "incomplete_header"),
        (
            "text",
            b"RIFF....WAVEfmt hello, this is no envelope".to_vec(),
            "malformed_header",
        ),
        ("version 2", version_2, "unsupported_version"),
        ("unknown media kind", bad_kind, "malformed_header"),
    ];
    for (what, body, code) in refusals {
        let response = e.put(&id, body);
        assert_eq!(response.status().as_u16(), 422, "{what}");
        let body: Value = response.json().expect("JSON error");
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        e.assert_stored(0, &id);
    }
    e.upload(&id, envelope);
}

#[test]
fn uploads_have_ingests_limits_and_leave_nothing_when_cut_off_or_stalled() {
    let e = Edge::start("max_upload_bytes = 100000\n[limits]\nbody_idle_timeout_secs = 1");

    // The limit is on plaintext, as for ingest: 100,000 bytes fit, 100,001 do not.
    let (over, envelope) = e.seal("over", &noise(100_001, 24), &[]);
    expect_error(e.put(&over, envelope), 413, "payload_too_large");
    e.assert_stored(0, &over);
    let (fits, envelope) = e.seal("fits", &noise(100_000, 25), &[]);
    e.upload(&fits, envelope);

    let (id, envelope) = e.seal("stalled", &noise(90_000, 26), &[]);
    // An upload that stops sending: 504 after the idle timeout.
    let mut stream = raw_put(&e.api, &e.acme.recorder, &id, &envelope, 40_000);
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(answer.contains("\"timeout\""), "{answer}");
    e.assert_stored(1, &id);
    // An upload whose connection goes away mid-way.
    let stream = raw_put(&e.api, &e.acme.recorder, &id, &envelope, 40_000);
    std::thread::sleep(Duration::from_millis(300));
    drop(stream);
    std::thread::sleep(Duration::from_millis(500));
    e.assert_stored(1, &id);
    // The id is free again.
    e.upload(&id, envelope);
}

/// A PUT on a raw connection that declares the whole envelope and sends only its
/// first `sent` bytes.
fn raw_put(api: &Api, token: &str, id: &str, envelope: &[u8], sent: usize) -> std::net::TcpStream {
    let base = api.url("");
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "PUT /v1/recordings/{id}/envelope HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
        envelope.len()
    )
    .expect("headers");
    stream
        .write_all(&envelope[..sent])
        .expect("part of the body");
    stream.flush().expect("flush");
    stream
}
