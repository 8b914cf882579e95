//! Crash safety, proven with failpoints: the server is built with the `failpoints`
//! feature, started with `FAILPOINTS=<point>=return` so that it aborts at that point
//! (as a power cut or `kill -9` would stop it), then restarted without it. At every
//! point the invariant holds: every catalogued recording plays, byte for byte, and no
//! KEK that a stored envelope needs can be deleted. Run with
//! `cargo test -p tapeseal --features failpoints --test server crash`.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::keys::{current_kek, ingest_all};
use crate::support::{Api, Org, Server, expect_json, files_under, fixture, noise};

/// Starts a server that aborts at `point` (`name=actions` in the `fail` crate's
/// syntax; a bare name aborts the first time the point is reached).
fn armed(data: &Path, point: &str) -> Server {
    let failpoints = if point.contains('=') {
        point.to_string()
    } else {
        format!("{point}=return")
    };
    Server::start_with(data, "", &[("FAILPOINTS", failpoints.as_str())])
}

/// Waits for an armed server to die at its point; panics if it lives on.
fn died(mut server: Server, point: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server.exited() {
        assert!(
            Instant::now() < deadline,
            "the server did not stop at {point}; its log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The invariant after a restart: no staging file is left, every catalogued
/// recording plays as it went in, and after deleting every KEK the server lets go
/// of, every recording still plays.
fn check_invariant(api: &Api, org: &Org, originals: &[(String, Vec<u8>)], point: &str) {
    let listed = expect_json(api.get(&org.admin, "/v1/recordings?limit=1000"), 200);
    let catalogued: Vec<String> = listed
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect();
    let plays = |when: &str| {
        for id in &catalogued {
            let response = api.get(&org.player, &format!("/v1/recordings/{id}/content"));
            assert_eq!(
                response.status().as_u16(),
                200,
                "{point}: catalogued {id} does not play {when}"
            );
            let body = response.bytes().expect("body");
            if let Some((_, original)) = originals.iter().find(|(o, _)| o == id) {
                assert_eq!(&body[..], &original[..], "{point}: {id} changed {when}");
            }
        }
    };
    plays("after the restart");
    let keks = expect_json(api.get(&org.admin, "/v1/keks"), 200);
    for kek in keks.as_array().expect("keks") {
        let id = kek["id"].as_str().expect("id");
        let status = api
            .delete(&org.admin, &format!("/v1/keks/{id}"))
            .status()
            .as_u16();
        assert!(
            [204, 409].contains(&status),
            "{point}: deleting {id} answered {status}"
        );
    }
    plays("after every deletable KEK was deleted");
}

/// The invariant read straight from disk, with no server running (so no resumed job
/// can mend anything first): every catalogued recording's envelope has a stanza for
/// the KEK the catalogue names, and that KEK exists. The deletion guard protects any
/// KEK a catalogued recording names, so no KEK an envelope needs is then deletable.
fn offline_invariant(data: &Path, point: &str) {
    let db = rusqlite::Connection::open(data.join("catalogue.sqlite3")).expect("catalogue");
    let mut stmt = db
        .prepare(
            "SELECT r.id, r.kek_id, r.object_path, k.id FROM recordings r
             LEFT JOIN keks k ON k.org_id = r.org_id AND k.id = r.kek_id
             WHERE r.kek_id IS NOT NULL",
        )
        .expect("query");
    let rows: Vec<(String, String, String, Option<String>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(!rows.is_empty(), "{point}: recordings are catalogued");
    for (id, kek, path, exists) in rows {
        assert!(
            exists.is_some(),
            "{point}: {id} names KEK {kek}, which is gone"
        );
        let bytes = std::fs::read(data.join("recordings").join(&path)).expect("object");
        let header = tapeseal_core::Header::parse(&bytes).expect("header");
        let stanzas: Vec<&str> = header.stanzas().iter().map(|s| s.kek_id.as_str()).collect();
        assert!(
            stanzas.contains(&kek.as_str()),
            "{point}: {id} is catalogued under {kek} but its envelope opens only with {stanzas:?}"
        );
    }
}

fn no_staging_left(data: &Path, point: &str) {
    let staged: Vec<_> = files_under(&data.join("recordings"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(staged.is_empty(), "{point}: staged writes left: {staged:?}");
}

fn originals(ids: &[String], bodies: &[Vec<u8>]) -> Vec<(String, Vec<u8>)> {
    ids.iter().cloned().zip(bodies.iter().cloned()).collect()
}

/// Ingest, with the server aborting at `point` during the second upload.
fn ingest_crash(point: &str) {
    let (_dir, data, acme) = fixture();
    let bodies: Vec<Vec<u8>> = (0..3).map(|i| noise(70_000 + i * 10, i as u64)).collect();
    let server = Server::start(&data, "");
    let ids = ingest_all(&server.api(), &acme.recorder, "call", &bodies[..1]);
    server.terminate();

    let server = armed(&data, point);
    let api = server.api();
    let cut = api.try_upload(&acme.recorder, "kind=call", "audio/wav", bodies[1].clone());
    assert!(
        cut.is_none_or(|r| !r.status().is_success()),
        "{point}: the upload succeeded without reaching the point"
    );
    died(server, point);
    offline_invariant(&data, point);

    let server = Server::start(&data, "");
    no_staging_left(&data, point);
    let api = server.api();
    check_invariant(&api, &acme, &originals(&ids, &bodies), point);
    // Still takes new recordings.
    ingest_all(&api, &acme.recorder, "call", &bodies[2..]);
}

/// A rewrap job, with the server aborting at `point` while it moves recordings.
fn rewrap_crash(point: &str) {
    let (_dir, data, acme) = fixture();
    let bodies: Vec<Vec<u8>> = (0..4)
        .map(|i| noise(5_000 + i * 100, 50 + i as u64))
        .collect();
    let server = Server::start(&data, "");
    let api = server.api();
    let ids = ingest_all(&api, &acme.recorder, "transcript", &bodies);
    let old = current_kek(&api, &acme.admin);
    expect_json(api.post_json(&acme.admin, "/v1/keks", &json!({})), 201);
    server.terminate();

    let server = armed(&data, point);
    // The worker may reach the point before the 202 leaves: the answer is optional.
    let _ =
        server
            .api()
            .try_post_json(&acme.admin, "/v1/jobs/rewrap", &json!({"from_kek_id": old}));
    died(server, point);
    offline_invariant(&data, point);

    let server = Server::start(&data, "");
    no_staging_left(&data, point);
    let api = server.api();
    let jobs = expect_json(api.get(&acme.admin, "/v1/jobs"), 200);
    let job_id = jobs[0]["id"]
        .as_str()
        .expect("the job was recorded")
        .to_string();
    let finished = api.wait_for_job(&acme.admin, &job_id);
    assert_eq!(finished["state"], "done", "{point}: {finished}");
    check_invariant(&api, &acme, &originals(&ids, &bodies), point);
    let keks: Value = expect_json(api.get(&acme.admin, "/v1/keks"), 200);
    assert!(
        keks.as_array()
            .expect("keks")
            .iter()
            .all(|k| k["id"] != old.as_str()),
        "{point}: the old KEK was retired and deleted once nothing needed it: {keks}"
    );
}

/// "Change key now", with the server aborting at `point`.
fn rotation_crash(point: &str) {
    let (_dir, data, acme) = fixture();
    let bodies: Vec<Vec<u8>> = (0..2).map(|i| noise(9_000, 90 + i as u64)).collect();
    let server = Server::start(&data, "");
    let ids = ingest_all(&server.api(), &acme.recorder, "email", &bodies);
    server.terminate();

    let server = armed(&data, point);
    let cut = server.api().try_post(&acme.admin, "/v1/keks");
    assert!(
        cut.is_none_or(|r| !r.status().is_success()),
        "{point}: the rotation answered without reaching the point"
    );
    died(server, point);
    offline_invariant(&data, point);

    let server = Server::start(&data, "");
    let api = server.api();
    check_invariant(&api, &acme, &originals(&ids, &bodies), point);
    current_kek(&api, &acme.admin);
    ingest_all(&api, &acme.recorder, "email", &bodies[..1]);
}

#[test]
fn ingest_repo_commit_before_rename() {
    ingest_crash("repo.commit.before_rename");
}

#[test]
fn ingest_repo_commit_after_rename() {
    ingest_crash("repo.commit.after_rename");
}

#[test]
fn ingest_before_catalogue() {
    ingest_crash("ingest.before_catalogue");
}

#[test]
fn ingest_after_catalogue() {
    ingest_crash("ingest.after_catalogue");
}

#[test]
fn rewrap_repo_commit_before_rename() {
    rewrap_crash("repo.commit.before_rename");
}

#[test]
fn rewrap_after_add() {
    rewrap_crash("rewrap.after_add");
}

#[test]
fn rewrap_after_catalogue() {
    rewrap_crash("rewrap.after_catalogue");
}

#[test]
fn rewrap_repo_commit_after_rename() {
    rewrap_crash("repo.commit.after_rename");
}

/// The third step's write: the envelope losing its old stanza (the second commit).
#[test]
fn rewrap_drop_commit_before_rename() {
    rewrap_crash("repo.commit.before_rename=1*off->return");
}

#[test]
fn rewrap_drop_commit_after_rename() {
    rewrap_crash("repo.commit.after_rename=1*off->return");
}

#[test]
fn rotation_before_insert() {
    rotation_crash("rotation.before_insert");
}

#[test]
fn rotation_after_insert() {
    rotation_crash("rotation.after_insert");
}
