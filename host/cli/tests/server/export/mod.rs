//! Bulk export end to end: the real `tapeseal serve` writes decrypted recordings to
//! a directory and to moto's S3 (with SSE-S3 and SSE-KMS, as S3 itself reports
//! them), OpenPGP-encrypted files that real GnuPG decrypts, the layout, metadata and
//! manifest; a damaged recording fails alone and is retried by a resume; a job
//! killed with SIGKILL midway resumes on restart without duplicating or skipping a
//! file; a cancelled job stops and resumes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::lkm::Lkm;
use crate::support::{
    Org, Server, audit_actions, expect_error, expect_json, files_under, fixture, noise, read,
};
use tapeseal_testkit::{Account, Moto};

mod pgp;

/// Ingests a recording with an optional conversation; returns its id.
fn ingest(
    api: &crate::support::Api,
    org: &Org,
    kind: &str,
    content_type: &str,
    conversation: Option<&str>,
    body: &[u8],
) -> String {
    let mut query = format!("kind={kind}");
    if let Some(c) = conversation {
        query.push_str(&format!("&conversation_id={c}"));
    }
    let response = api.upload(&org.recorder, &query, content_type, body.to_vec());
    expect_json(response, 201)["id"]
        .as_str()
        .expect("id")
        .to_string()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Starts an export job; returns its id.
fn start(api: &crate::support::Api, admin: &str, request: &Value) -> String {
    let job = expect_json(api.post_json(admin, "/v1/jobs/export", request), 202);
    assert_eq!(job["kind"], "export");
    job["id"].as_str().expect("job id").to_string()
}

/// The manifest of a finished job, read from a directory destination.
fn manifest(root: &Path, job: &Value) -> Value {
    let path = job["progress"]["manifest"].as_str().expect("manifest path");
    serde_json::from_slice(&read(&root.join(path))).expect("manifest JSON")
}

/// Exports everything under `prefix`; expects the job to fail with `exported`
/// recordings written and one failed. Returns the job id and the job.
fn export_with_one_failure(
    api: &crate::support::Api,
    admin: &str,
    prefix: &str,
    exported: u64,
) -> (String, Value) {
    let job = start(
        api,
        admin,
        &json!({ "destination": { "type": "directory", "prefix": prefix } }),
    );
    let failed = api.wait_for_job(admin, &job);
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["progress"]["exported"], exported);
    assert_eq!(failed["progress"]["failed"], 1);
    (job, failed)
}

/// The recording ids of a manifest's files, in its order.
fn listed(manifest: &Value) -> Vec<String> {
    manifest["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["recording_id"].as_str().map(str::to_string))
        .collect()
}

/// Checks that every file the manifest lists exists under `root` with the bytes of
/// the original and the SHA-256s it states, and its metadata beside it.
fn check_files(root: &Path, manifest: &Value, originals: &BTreeMap<String, Vec<u8>>) {
    for entry in manifest["files"].as_array().expect("files") {
        let id = entry["recording_id"].as_str().expect("id");
        let original = &originals[id];
        let bytes = read(&root.join(entry["path"].as_str().expect("path")));
        assert_eq!(&bytes, original, "exported bytes of {id}");
        assert_eq!(entry["plaintext_sha256"], sha256_hex(original));
        assert_eq!(entry["file_sha256"], sha256_hex(&bytes));
        let metadata: Value = serde_json::from_slice(&read(
            &root.join(entry["metadata_path"].as_str().expect("metadata path")),
        ))
        .expect("metadata JSON");
        assert_eq!(metadata["recording_id"], id);
        assert_eq!(metadata["plaintext_bytes"], original.len());
        assert_eq!(metadata["plaintext_sha256"], sha256_hex(original));
        assert_eq!(metadata["encryption"], "none");
    }
}

#[test]
fn a_directory_export_writes_the_layout_metadata_and_manifest_and_a_damaged_recording_fails_alone()
{
    let (dir, data, acme) = fixture();
    let server = Server::start(&data, "");
    let api = server.api();
    let mut originals = BTreeMap::new();
    let call = noise(300_000, 1);
    let call_id = ingest(&api, &acme, "call", "audio/wav", Some("conv/42"), &call);
    originals.insert(call_id.clone(), call);
    let email = b"From: a@example.com\r\n\r\nhello".to_vec();
    let email_id = ingest(
        &api,
        &acme,
        "email",
        "message/rfc822",
        Some("conv/42"),
        &email,
    );
    originals.insert(email_id.clone(), email);
    let chat_id = ingest(&api, &acme, "chat", "application/json", None, b"[]");
    originals.insert(chat_id.clone(), b"[]".to_vec());
    let screen = noise(70_000, 2);
    let screen_id = ingest(&api, &acme, "screen", "video/webm", None, &screen);
    originals.insert(screen_id.clone(), screen);
    let empty_id = ingest(&api, &acme, "transcript", "text/plain", None, b"");
    originals.insert(empty_id.clone(), Vec::new());
    // Another organisation's recording is never selected.
    let other = crate::support::org(&data, "other");
    ingest(&api, &other, "call", "audio/wav", None, b"not acme's");

    // Only admins export, and bad requests are refused before a job exists.
    let request = json!({ "destination": { "type": "directory", "prefix": "all" } });
    expect_error(
        api.post_json(&acme.player, "/v1/jobs/export", &request),
        403,
        "forbidden",
    );
    for bad in [
        json!({ "destination": { "type": "directory", "prefix": "../x" } }),
        json!({ "destination": { "type": "s3", "bucket": "b", "sse": "none" } }),
        json!({ "select": { "media_kinds": ["video"] }, "destination": { "type": "directory" } }),
        json!({ "destination": { "type": "directory" }, "openpgp_public_key": "nope" }),
        json!({ "destination": { "type": "directory" }, "parallel": 99 }),
    ] {
        expect_error(
            api.post_json(&acme.admin, "/v1/jobs/export", &bad),
            400,
            "bad_request",
        );
    }

    let job = start(&api, &acme.admin, &request);
    let done = api.wait_for_job(&acme.admin, &job);
    assert_eq!(done["state"], "done", "{done}");
    let p = &done["progress"];
    assert_eq!(
        (p["total"].as_u64(), p["exported"].as_u64()),
        (Some(5), Some(5))
    );
    let total_bytes: usize = originals.values().map(Vec::len).sum();
    assert_eq!(p["bytes"], total_bytes);
    let root = data.join("exports");
    let m = manifest(&root, &done);
    assert_eq!(m["format"], "tapeseal-export-manifest/1");
    assert_eq!(m["exported"], 5);
    assert_eq!(m["files"].as_array().map(Vec::len), Some(5));
    check_files(&root, &m, &originals);
    // The layout: org, UTC hour partitions, the conversation (escaped), the id.
    let call_entry = m["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["recording_id"] == call_id.as_str())
        .expect("the call")
        .clone();
    let call_path = call_entry["path"].as_str().expect("path");
    let metadata: Value = serde_json::from_slice(&read(
        &root.join(call_entry["metadata_path"].as_str().expect("metadata")),
    ))
    .expect("metadata");
    let at = metadata["created_at"].as_str().expect("created_at");
    let expected = format!(
        "all/{}/year={}/month={}/day={}/hour={}/conversation_id=conv%2F42/{call_id}.wav",
        acme.id,
        &at[0..4],
        &at[5..7],
        &at[8..10],
        &at[11..13]
    );
    assert_eq!(call_path, expected);
    assert_eq!(metadata["media_kind"], "call");
    assert_eq!(metadata["content_type"], "audio/wav");
    assert_eq!(metadata["conversation_id"], "conv/42");
    assert!(
        metadata["kek_id"]
            .as_str()
            .expect("kek")
            .starts_with("kek-")
    );
    let email_path = m["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["recording_id"] == email_id.as_str())
        .and_then(|f| f["path"].as_str())
        .expect("the email")
        .to_string();
    assert!(
        email_path.ends_with(&format!("/{email_id}.eml")),
        "{email_path}"
    );
    let none = format!("conversation_id=_none/{chat_id}.json");
    assert!(files_under(&root).iter().any(|f| f.ends_with(&none)));
    let exports = audit_actions(&api, &acme.admin)
        .iter()
        .filter(|a| *a == "recording.export")
        .count();
    assert_eq!(exports, 5);

    // A selection: one conversation's calls only.
    let job = start(
        &api,
        &acme.admin,
        &json!({
            "select": { "media_kinds": ["call"], "conversation_ids": ["conv/42"] },
            "destination": { "type": "directory", "prefix": "calls" },
        }),
    );
    let done = api.wait_for_job(&acme.admin, &job);
    let m = manifest(&root, &done);
    assert_eq!(listed(&m), vec![call_id.clone()]);

    // A damaged envelope fails alone; the others are exported; a resume after the
    // repair retries it only.
    let stored = files_under(&data)
        .into_iter()
        .find(|f| f.ends_with(format!("{call_id}.tseal")))
        .expect("the call's envelope");
    let good = read(&stored);
    let mut bad = good.clone();
    let at = bad.len() - 100;
    bad[at] ^= 1;
    std::fs::write(&stored, &bad).expect("damage");
    let (job, failed) = export_with_one_failure(&api, &acme.admin, "damaged", 4);
    let m = manifest(&root, &failed);
    assert_eq!(m["failures"][0]["recording_id"], call_id.as_str());
    assert_eq!(
        m["failures"][0]["error"],
        "the recording could not be decrypted"
    );
    assert!(
        !files_under(&root.join("damaged")).iter().any(
            |f| f.to_string_lossy().contains(&call_id) || f.to_string_lossy().contains(".tmp-")
        ),
        "nothing of the damaged recording is visible"
    );
    std::fs::write(&stored, &good).expect("repair");
    expect_json(
        api.post_json(&acme.admin, &format!("/v1/jobs/{job}/resume"), &json!({})),
        202,
    );
    let done = api.wait_for_job(&acme.admin, &job);
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["progress"]["exported"], 5);
    assert_eq!(done["progress"]["failed"], 0);
    let m = manifest(&root, &done);
    assert_eq!(m["files"].as_array().map(Vec::len), Some(5));
    assert_eq!(m["failures"], json!([]));
    check_files(&root, &m, &originals);
    drop(dir);
}

#[test]
fn an_export_killed_midway_resumes_without_duplicating_or_skipping_and_cancels() {
    let (_dir, data, acme) = fixture();
    let config = "[export]\npause_ms = 60\nparallel = 3\n";
    let server = Server::start(&data, config);
    let api = server.api();
    let mut originals = BTreeMap::new();
    for i in 0..40 {
        let body = noise(20_000 + i * 997, i as u64 + 10);
        let id = ingest(
            &api,
            &acme,
            "call",
            "audio/wav",
            Some(&format!("c{}", i % 4)),
            &body,
        );
        originals.insert(id, body);
    }
    let request = json!({ "destination": { "type": "directory", "prefix": "big" } });
    let job = start(&api, &acme.admin, &request);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = expect_json(api.get(&acme.admin, &format!("/v1/jobs/{job}")), 200);
        if j["progress"]["exported"].as_u64().unwrap_or(0) >= 8 {
            break;
        }
        assert!(Instant::now() < deadline, "no progress: {j}");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.crash();

    let server = Server::start(&data, config);
    let api = server.api();
    let done = api.wait_for_job(&acme.admin, &job);
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["progress"]["exported"], 40);
    let root = data.join("exports");
    let m = manifest(&root, &done);
    let expected: Vec<String> = originals.keys().cloned().collect();
    assert_eq!(listed(&m), expected, "every recording exactly once");
    check_files(&root, &m, &originals);
    let files = files_under(&root.join("big"));
    assert_eq!(
        files.len(),
        40 * 2 + 1,
        "files, metadata and the manifest only"
    );
    assert!(!files.iter().any(|f| f.to_string_lossy().contains(".tmp-")));
    let exports = audit_actions(&api, &acme.admin)
        .iter()
        .filter(|a| *a == "recording.export")
        .count();
    assert_eq!(exports, 40, "each recording's export audited once");

    // Cancel stops a job; resume finishes it.
    let job = start(
        &api,
        &acme.admin,
        &json!({ "destination": { "type": "directory", "prefix": "cancelled" } }),
    );
    let cancelled = expect_json(
        api.post_json(&acme.admin, &format!("/v1/jobs/{job}/cancel"), &json!({})),
        200,
    );
    assert_eq!(cancelled["state"], "cancelled");
    std::thread::sleep(Duration::from_millis(300));
    let still = expect_json(api.get(&acme.admin, &format!("/v1/jobs/{job}")), 200);
    assert_eq!(still["state"], "cancelled");
    assert!(
        still["progress"]["exported"].as_u64().unwrap_or(0) < 40,
        "{still}"
    );
    expect_error(
        api.post_json(&acme.admin, &format!("/v1/jobs/{job}/cancel"), &json!({})),
        409,
        "conflict",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = api.post_json(&acme.admin, &format!("/v1/jobs/{job}/resume"), &json!({}));
        if r.status().as_u16() == 202 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "resume refused: {}",
            r.text().unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let done = api.wait_for_job(&acme.admin, &job);
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["progress"]["exported"], 40);
    let actions = audit_actions(&api, &acme.admin);
    assert!(actions.iter().any(|a| a == "job.cancel"));
    assert!(actions.iter().any(|a| a == "job.resume"));
}

#[test]
fn an_lkm_organisation_exports_through_its_lkm_and_a_refused_key_fails_alone() {
    let (dir, data, acme) = fixture();
    let lkm = Lkm::start(&dir.path().join("lkm"));
    let credentials = lkm.credentials("tapeseal-server");
    let server = Server::start(&data, "");
    let api = server.api();
    let body = json!({
        "decrypt_url": lkm.decrypt_url(),
        "hawk_id": credentials["id"],
        "hawk_key": credentials["authKey"],
        "fingerprint": lkm.fingerprint(),
    });
    expect_json(api.put_json(&acme.admin, "/v1/lkm", &body), 200);
    let keypair = lkm.create_keypair();
    let register = json!({"id": keypair["id"], "public_key": keypair["publicKey"]});
    expect_json(
        api.post_json(&acme.admin, "/v1/lkm/keypairs", &register),
        201,
    );
    let mut originals = BTreeMap::new();
    for i in 0..4 {
        let body = noise(40_000 + i, i as u64 + 20);
        let id = ingest(&api, &acme, "chat", "text/plain", Some("lkm"), &body);
        originals.insert(id, body);
    }
    // One envelope's wrapped DEK no longer unwraps: the LKM refuses that one.
    let refused = originals.keys().next().expect("a recording").clone();
    let stored = files_under(&data)
        .into_iter()
        .find(|f| f.ends_with(format!("{refused}.tseal")))
        .expect("its envelope");
    let mut envelope = read(&stored);
    let kek_id = keypair["id"].as_str().expect("key pair id").as_bytes();
    let at = envelope
        .windows(kek_id.len())
        .position(|w| w == kek_id)
        .expect("the stanza")
        + kek_id.len()
        + 3
        + 100;
    envelope[at] ^= 0x55;
    std::fs::write(&stored, &envelope).expect("tamper");

    let (_, failed) = export_with_one_failure(&api, &acme.admin, "lkm", 3);
    let root = data.join("exports");
    let m = manifest(&root, &failed);
    assert_eq!(m["failures"][0]["recording_id"], refused.as_str());
    assert_eq!(
        m["failures"][0]["error"],
        "the key service refused to unwrap its DEK"
    );
    originals.remove(&refused);
    assert_eq!(listed(&m), originals.keys().cloned().collect::<Vec<_>>());
    check_files(&root, &m, &originals);
    assert!(
        audit_actions(&api, &acme.admin)
            .iter()
            .any(|a| a == "recording.decrypt_failed")
    );
}

#[test]
fn an_s3_export_is_encrypted_server_side_as_asked() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (dir, data, acme) = fixture();
    let moto = runtime.block_on(Moto::start(dir.path()));
    let (kms_key, kek_key, kms_user) = runtime.block_on(async {
        moto.create_bucket(Account::A, "exports").await;
        let sse_key = moto.create_key(Account::A).await;
        let kek_key = moto.create_key(Account::A).await;
        (sse_key, kek_key, moto.user(Account::A, "tapeseal").await)
    });
    let admin = moto.admin(Account::A).clone();
    let server = Server::start(
        &data,
        &format!(
            "[export]\ns3_endpoint_url = \"{0}\"\n[kms]\nendpoint_url = \"{0}\"\nregion = \"{1}\"\n",
            moto.endpoint(),
            Moto::REGION
        ),
    );
    let api = server.api();
    // The organisation's KEKs are under AWS KMS: every export unwraps through it.
    let kms = json!({
        "key_id": kek_key,
        "access_key_id": kms_user.access_key_id,
        "secret_access_key": kms_user.secret_access_key,
    });
    expect_json(api.put_json(&acme.admin, "/v1/kms", &kms), 200);
    let mut originals = BTreeMap::new();
    for i in 0..5 {
        let body = noise(100_000 * i + 10, i as u64 + 40);
        let id = ingest(&api, &acme, "call", "audio/wav", Some("s3"), &body);
        originals.insert(id, body);
    }
    // Large enough for a multipart upload (parts of 8 MiB).
    let big = noise(9 << 20, 77);
    let big_id = ingest(&api, &acme, "call", "audio/wav", None, &big);
    originals.insert(big_id, big);

    for (prefix, sse, kms) in [
        ("sse-s3", "AES256", None),
        ("sse-kms", "aws:kms", Some(&kms_key)),
    ] {
        let mut destination = json!({
            "type": "s3", "bucket": "exports", "prefix": prefix, "sse": sse,
            "access_key_id": admin.access_key_id,
            "secret_access_key": admin.secret_access_key,
        });
        if let Some(key) = kms {
            destination["sse_kms_key_id"] = json!(key);
        }
        let job = start(&api, &acme.admin, &json!({ "destination": destination }));
        let done = api.wait_for_job(&acme.admin, &job);
        assert_eq!(done["state"], "done", "{done}");
        assert!(!done.to_string().contains(&admin.secret_access_key));
        assert!(
            done["params"].get("sealed_secret_access_key").is_none(),
            "{done}"
        );
        let manifest_key = done["progress"]["manifest"].as_str().expect("manifest");
        let keys = runtime.block_on(moto.list_objects(Account::A, "exports", prefix));
        assert_eq!(keys.len(), originals.len() * 2 + 1, "{keys:?}");
        let m: Value = serde_json::from_slice(&runtime.block_on(moto.get_object(
            Account::A,
            "exports",
            manifest_key,
        )))
        .expect("manifest");
        for key in &keys {
            let head = runtime.block_on(moto.head_object(Account::A, "exports", key));
            assert_eq!(head.sse.as_deref(), Some(sse), "{key}: {head:?}");
            if let Some(kms) = kms {
                let reported = head.sse_kms_key_id.clone().unwrap_or_default();
                assert!(
                    reported.ends_with(kms.rsplit('/').next().unwrap_or(kms)),
                    "{key}: {reported} vs {kms}"
                );
            }
        }
        for entry in m["files"].as_array().expect("files") {
            let id = entry["recording_id"].as_str().expect("id");
            let bytes = runtime.block_on(moto.get_object(
                Account::A,
                "exports",
                entry["path"].as_str().expect("path"),
            ));
            assert_eq!(bytes, originals[id], "{id}");
            assert_eq!(entry["file_sha256"], sha256_hex(&bytes));
        }
    }

    // A bucket the key cannot reach stops the job with the cause; nothing else.
    let job = start(
        &api,
        &acme.admin,
        &json!({ "destination": {
            "type": "s3", "bucket": "no-such-bucket",
            "access_key_id": admin.access_key_id,
            "secret_access_key": admin.secret_access_key,
        }}),
    );
    let failed = api.wait_for_job(&acme.admin, &job);
    assert_eq!(failed["state"], "failed", "{failed}");
    let error = failed["progress"]["error"].as_str().expect("error");
    assert!(error.contains("destination"), "{error}");
    assert_eq!(failed["progress"]["exported"], 0);
}
