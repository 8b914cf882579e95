//! Rotation (on demand and by schedule), the deletion guard, and rewrap jobs,
//! including one interrupted by a crash.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, expect_error, expect_json, files_under, fixture, noise, read};

fn kek_ids(keks: &Value) -> Vec<String> {
    keks.as_array()
        .expect("keks")
        .iter()
        .map(|k| k["id"].as_str().expect("id").to_string())
        .collect()
}

pub(crate) fn ingest_all(
    api: &crate::support::Api,
    recorder: &str,
    kind: &str,
    bodies: &[Vec<u8>],
) -> Vec<String> {
    bodies
        .iter()
        .map(|b| {
            api.ingest(recorder, kind, "application/octet-stream", b)["id"]
                .as_str()
                .expect("id")
                .to_string()
        })
        .collect()
}

pub(crate) fn current_kek(api: &crate::support::Api, admin: &str) -> String {
    let keks = expect_json(api.get(admin, "/v1/keks"), 200);
    let current: Vec<&Value> = keks
        .as_array()
        .expect("keks")
        .iter()
        .filter(|k| k["current"] == true)
        .collect();
    assert_eq!(current.len(), 1, "exactly one current KEK: {keks}");
    current[0]["id"].as_str().expect("id").to_string()
}

#[test]
fn change_key_now_and_a_due_schedule_rotate_while_old_recordings_keep_playing() {
    let (_dir, data, acme) = fixture();
    let server = Server::start(&data, "");
    let api = server.api();

    let first_body = noise(10_000, 1);
    let first = api.ingest(&acme.recorder, "call", "audio/wav", &first_body);
    let kek1 = first["kek_id"].as_str().expect("kek").to_string();
    assert_eq!(current_kek(&api, &acme.admin), kek1);

    // Change key now.
    let rotated = expect_json(api.post_json(&acme.admin, "/v1/keks", &json!({})), 201);
    let kek2 = rotated["id"].as_str().expect("id").to_string();
    assert_ne!(kek1, kek2);
    assert_eq!(rotated["current"], true);
    assert!(
        rotated["public_key_pem"]
            .as_str()
            .expect("pem")
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    let second_body = noise(10_000, 2);
    let second = api.ingest(&acme.recorder, "email", "message/rfc822", &second_body);
    assert_eq!(second["kek_id"], kek2.as_str());
    assert_eq!(
        api.content(&acme.player, first["id"].as_str().expect("id")),
        first_body
    );
    assert_eq!(
        api.content(&acme.player, second["id"].as_str().expect("id")),
        second_body
    );

    // A schedule: persisted, and not due for a KEK made just now.
    let schedule = expect_json(
        api.put_json(
            &acme.admin,
            "/v1/rotation-schedule",
            &json!({"period": "DAILY"}),
        ),
        200,
    );
    assert_eq!(schedule["period"], "DAILY");
    let next = schedule["next_rotation_at"].as_i64().expect("next");
    let created = expect_json(api.get(&acme.admin, &format!("/v1/keks/{kek2}")), 200)["created_at"]
        .as_i64()
        .expect("created");
    assert_eq!(next - created, 86_400_000);
    assert_eq!(current_kek(&api, &acme.admin), kek2);
    expect_error(
        api.put_json(
            &acme.admin,
            "/v1/rotation-schedule",
            &json!({"period": "HOURLY"}),
        ),
        400,
        "bad_request",
    );

    // The server goes down for two days: the current KEK becomes due while nothing
    // runs. (Every KEK's creation time is moved two days back in the catalogue.)
    assert!(server.terminate().success());
    let db = rusqlite::Connection::open(data.join("catalogue.sqlite3")).expect("db");
    db.execute("UPDATE keks SET created_at = created_at - 2 * 86400000", [])
        .expect("age the KEKs");
    drop(db);

    // At start, the missed rotation happens; the schedule survived the restart.
    let server = Server::start(&data, "");
    let api = server.api();
    let kek3 = current_kek(&api, &acme.admin);
    assert_ne!(kek3, kek2);
    assert_ne!(kek3, kek1);
    let schedule = expect_json(api.get(&acme.admin, "/v1/rotation-schedule"), 200);
    assert_eq!(schedule["period"], "DAILY");
    assert!(schedule["last_rotated_at"].as_i64().is_some());
    let third = api.ingest(&acme.recorder, "chat", "application/json", b"{}");
    assert_eq!(third["kek_id"], kek3.as_str());
    assert_eq!(
        api.content(&acme.player, first["id"].as_str().expect("id")),
        first_body
    );
    assert_eq!(
        api.content(&acme.player, second["id"].as_str().expect("id")),
        second_body
    );
    let audit = expect_json(api.get(&acme.admin, "/v1/audit?actor=scheduler"), 200);
    assert_eq!(audit.as_array().expect("entries").len(), 1);
    assert_eq!(audit[0]["action"], "kek.create");
    assert_eq!(audit[0]["kek_id"], kek3.as_str());
}

#[test]
fn a_kek_in_use_cannot_be_deleted_until_a_rewrap_job_moves_its_recordings() {
    let (_dir, data, acme) = fixture();
    let server = Server::start(&data, "chunk_size = 1024");
    let api = server.api();

    let bodies: Vec<Vec<u8>> = (0..3)
        .map(|i| noise(5_000 + i * 777, i as u64 + 10))
        .collect();
    let ids = ingest_all(&api, &acme.recorder, "call", &bodies);
    let old = current_kek(&api, &acme.admin);
    let payload_of = |id: &str| {
        let object = files_under(&data.join("recordings"))
            .into_iter()
            .find(|p| p.to_string_lossy().contains(id))
            .expect("object");
        let bytes = read(&object);
        let info = tapeseal_core::inspect(&bytes).expect("envelope");
        let header_len = info.header.header_len();
        (
            info.header.stanzas()[0].kek_id.clone(),
            bytes[header_len..].to_vec(),
        )
    };
    let before: Vec<_> = ids.iter().map(|id| payload_of(id)).collect();

    // The current KEK may not be rewrapped onto itself, and a used KEK is guarded.
    expect_error(
        api.post_json(&acme.admin, "/v1/jobs/rewrap", &json!({"from_kek_id": old})),
        409,
        "conflict",
    );
    let message = expect_error(
        api.delete(&acme.admin, &format!("/v1/keks/{old}")),
        409,
        "kek_in_use",
    );
    assert!(message.contains("3 recording"), "{message}");

    let new = expect_json(api.post_json(&acme.admin, "/v1/keks", &json!({})), 201)["id"]
        .as_str()
        .expect("id")
        .to_string();
    let message = expect_error(
        api.delete(&acme.admin, &format!("/v1/keks/{old}")),
        409,
        "kek_in_use",
    );
    assert!(message.contains("3 recording"), "{message}");
    let kek = expect_json(api.get(&acme.admin, &format!("/v1/keks/{old}")), 200);
    assert_eq!(kek["recordings"], 3);

    let job = expect_json(
        api.post_json(&acme.admin, "/v1/jobs/rewrap", &json!({"from_kek_id": old})),
        202,
    );
    assert_eq!(job["params"]["to_kek_id"], new.as_str());
    let job = api.wait_for_job(&acme.admin, job["id"].as_str().expect("id"));
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["progress"]["done"], 3);
    assert_eq!(job["progress"]["failed"], 0);

    // Headers rewritten, payload bytes untouched, content unchanged.
    for ((id, body), (old_kek, old_payload)) in ids.iter().zip(&bodies).zip(&before) {
        assert_eq!(old_kek, &old);
        let (kek, payload) = payload_of(id);
        assert_eq!(kek, new);
        assert_eq!(&payload, old_payload, "payload of {id} changed");
        let meta = expect_json(api.get(&acme.player, &format!("/v1/recordings/{id}")), 200);
        assert_eq!(meta["kek_id"], new.as_str());
        assert_eq!(&api.content(&acme.player, id), body);
    }

    // Now the old KEK is retired and can go.
    let kek = expect_json(api.get(&acme.admin, &format!("/v1/keks/{old}")), 200);
    assert_eq!(kek["state"], "retired");
    assert_eq!(kek["recordings"], 0);
    let response = api.delete(&acme.admin, &format!("/v1/keks/{old}"));
    assert_eq!(response.status().as_u16(), 204);
    expect_error(
        api.get(&acme.admin, &format!("/v1/keks/{old}")),
        404,
        "not_found",
    );
    assert_eq!(
        kek_ids(&expect_json(api.get(&acme.admin, "/v1/keks"), 200)),
        std::slice::from_ref(&new)
    );
    // The current KEK itself is never deleted.
    expect_error(
        api.delete(&acme.admin, &format!("/v1/keks/{new}")),
        409,
        "kek_in_use",
    );
    for id in &ids {
        assert_eq!(
            api.content(&acme.player, id).len(),
            bodies[ids.iter().position(|x| x == id).expect("i")].len()
        );
    }
}

/// Changes key now, then starts a job that moves every recording off the old KEK.
/// Returns the old KEK and the job.
fn rotate_and_rewrap(api: &crate::support::Api, admin: &str) -> (String, String) {
    let old = current_kek(api, admin);
    expect_json(api.post_json(admin, "/v1/keks", &json!({})), 201);
    let job = expect_json(
        api.post_json(admin, "/v1/jobs/rewrap", &json!({"from_kek_id": old})),
        202,
    );
    (old, job["id"].as_str().expect("id").to_string())
}

#[test]
fn a_rewrap_job_interrupted_by_a_crash_resumes_and_loses_nothing() {
    let (_dir, data, acme) = fixture();
    let slow = "[jobs]\nrewrap_pause_ms = 400";
    let server = Server::start(&data, slow);
    let api = server.api();
    let bodies: Vec<Vec<u8>> = (0..8)
        .map(|i| noise(3_000 + i * 100, i as u64 + 100))
        .collect();
    let ids = ingest_all(&api, &acme.recorder, "transcript", &bodies);
    let (old, job_id) = rotate_and_rewrap(&api, &acme.admin);

    // Crash once some, but not all, recordings have moved.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = expect_json(api.get(&acme.admin, &format!("/v1/jobs/{job_id}")), 200);
        let done = job["progress"]["done"].as_u64().unwrap_or(0);
        if done >= 2 {
            assert!(done < 8, "the job finished before the crash: {job}");
            break;
        }
        assert!(Instant::now() < deadline, "the job made no progress: {job}");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.crash();
    let staged = || -> Vec<_> {
        files_under(&data.join("recordings"))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(".tmp-"))
            .collect()
    };
    let interrupted = staged();

    // The writes the crash interrupted are swept at the restart (the resumed job
    // may be staging a new one meanwhile), nothing is lost: every recording plays
    // after the restart, and the job resumes and finishes.
    let server = Server::start(&data, slow);
    let api = server.api();
    let left: Vec<_> = interrupted.iter().filter(|p| p.exists()).collect();
    assert!(left.is_empty(), "staged writes left behind: {left:?}");
    for (id, body) in ids.iter().zip(&bodies) {
        assert_eq!(&api.content(&acme.player, id), body, "{id} after the crash");
    }
    let job = api.wait_for_job(&acme.admin, &job_id);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["progress"]["failed"], 0);
    let kek = expect_json(api.get(&acme.admin, &format!("/v1/keks/{old}")), 200);
    assert_eq!(kek["recordings"], 0);
    for (id, body) in ids.iter().zip(&bodies) {
        assert_eq!(&api.content(&acme.player, id), body, "{id} after the job");
    }
    assert_eq!(
        api.delete(&acme.admin, &format!("/v1/keks/{old}"))
            .status()
            .as_u16(),
        204
    );
    let rewraps = expect_json(
        api.get(&acme.admin, "/v1/audit?action=recording.rewrap&limit=1000"),
        200,
    );
    assert!(rewraps.as_array().expect("entries").len() >= 8);
}

#[test]
fn the_running_scheduler_rotates_a_kek_that_falls_due() {
    let (_dir, data, acme) = fixture();
    let server = Server::start(&data, "scheduler_interval_secs = 1");
    let api = server.api();
    let body = noise(2_000, 77);
    let meta = api.ingest(&acme.recorder, "message", "text/plain", &body);
    let before = current_kek(&api, &acme.admin);
    expect_json(
        api.put_json(
            &acme.admin,
            "/v1/rotation-schedule",
            &json!({"period": "WEEKLY"}),
        ),
        200,
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(current_kek(&api, &acme.admin), before, "not due yet");

    // Eight days pass while the server runs.
    let db = rusqlite::Connection::open(data.join("catalogue.sqlite3")).expect("db");
    db.execute("UPDATE keks SET created_at = created_at - 8 * 86400000", [])
        .expect("age the KEKs");
    drop(db);
    let deadline = Instant::now() + Duration::from_secs(30);
    while current_kek(&api, &acme.admin) == before {
        assert!(Instant::now() < deadline, "the scheduler did not rotate");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        api.content(&acme.player, meta["id"].as_str().expect("id")),
        body
    );
}

#[test]
fn recordings_play_while_a_rewrap_job_rewrites_them() {
    let (_dir, data, acme) = fixture();
    let server = Server::start(&data, "");
    let api = server.api();
    // Several batches each, so a read spans more than one request to the repository.
    let bodies: Vec<Vec<u8>> = (0..6)
        .map(|i| noise(2_500_000 + i * 1000, 300 + i as u64))
        .collect();
    let ids = ingest_all(&api, &acme.recorder, "call", &bodies);
    let (_, job_id) = rotate_and_rewrap(&api, &acme.admin);
    // Play everything, over and over, while the job adds a stanza to each envelope
    // (a longer header), re-points it, and drops the old stanza.
    let mut rounds = 0;
    loop {
        for (id, body) in ids.iter().zip(&bodies) {
            assert_eq!(&api.content(&acme.player, id), body, "{id} during the job");
        }
        rounds += 1;
        let job = expect_json(api.get(&acme.admin, &format!("/v1/jobs/{job_id}")), 200);
        if job["state"] == "done" {
            assert_eq!(job["progress"]["done"], 6, "{job}");
            break;
        }
        assert!(rounds < 500, "the job did not finish: {job}");
    }
    for (id, body) in ids.iter().zip(&bodies) {
        assert_eq!(&api.content(&acme.player, id), body, "{id} after the job");
    }
}
