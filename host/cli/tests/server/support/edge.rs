//! What a media tier does to seal at the edge: fetch the current KEK
//! (`GET /v1/keks/current`), seal with the real `tapeseal seal`, and upload the
//! envelope (`PUT /v1/recordings/{id}/envelope`).

use std::path::{Path, PathBuf};

use reqwest::blocking::{Client, Response};

use super::{Api, cli, expect_json, read};

/// The current KEK as `GET /v1/keks/current` gives it, its public key saved where
/// `tapeseal seal` reads it.
pub(crate) struct Kek {
    pub(crate) id: String,
    pub(crate) pem: PathBuf,
}

pub(crate) fn current_kek(api: &Api, token: &str, dir: &Path) -> Kek {
    let kek = expect_json(api.get(token, "/v1/keks/current"), 200);
    let id = kek["id"].as_str().expect("id").to_string();
    let pem = dir.join(format!("{id}.public.pem"));
    std::fs::write(&pem, kek["public_key_pem"].as_str().expect("pem")).expect("write PEM");
    Kek { id, pem }
}

/// Seals `plaintext` with the `tapeseal seal` binary for organisation `org_id` and
/// KEK `kek_id` (public key `pem`), with `extra` arguments; without
/// `--recording-id` among them it asks for a new id. Returns the recording id and
/// the envelope.
pub(crate) fn seal(
    dir: &Path,
    name: &str,
    org_id: &str,
    kek_id: &str,
    pem: &Path,
    plaintext: &[u8],
    extra: &[&str],
) -> (String, Vec<u8>) {
    let input = dir.join(format!("{name}.wav"));
    let output = dir.join(format!("{name}.tapeseal"));
    std::fs::write(&input, plaintext).expect("write plaintext");
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    let (pem, input_arg, output_arg) = (path(pem), path(&input), path(&output));
    let mut args = vec![
        "seal",
        "--kek",
        &pem,
        "--kek-id",
        kek_id,
        "--org",
        org_id,
        "--in",
        &input_arg,
        "--out",
        &output_arg,
        "--media-kind",
        "call",
    ];
    if !extra.contains(&"--content-type") {
        args.extend_from_slice(&["--content-type", "audio/wav"]);
    }
    let chosen = extra
        .iter()
        .position(|a| *a == "--recording-id")
        .map(|i| extra[i + 1].to_string());
    if chosen.is_none() {
        args.push("--new-recording-id");
    }
    args.extend_from_slice(extra);
    let stdout = cli(&args);
    let id = chosen.unwrap_or_else(|| stdout.trim().to_string());
    assert!(
        id.starts_with("rec-") && id.len() == 36,
        "a recording id: {stdout:?}"
    );
    (id, read(&output))
}

/// `PUT /v1/recordings/{id}/envelope` with `body`.
pub(crate) fn put_envelope(api: &Api, token: &str, id: &str, body: Vec<u8>) -> Response {
    Client::new()
        .put(api.url(&format!("/v1/recordings/{id}/envelope")))
        .bearer_auth(token)
        .header("Content-Type", "application/vnd.tapeseal.envelope")
        .body(body)
        .send()
        .expect("PUT envelope")
}
