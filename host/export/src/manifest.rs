//! What an export writes beside the recordings: a metadata companion per recording
//! and one manifest per job, listing every file with its SHA-256 and every recording
//! that failed. The manifest is produced piece by piece (its entries are paged out of
//! the catalogue), so its size never bounds the server's memory.

use serde::Serialize;
use tapeseal_store::catalogue::{ExportSelection, ExportedFile, RecordingRecord};
use tapeseal_store::time::utc;

/// The manifest format's name and version.
pub const MANIFEST_FORMAT: &str = "tapeseal-export-manifest/1";

/// The `{recordingId}_metadata.json` companion of an exported recording.
#[derive(Debug, Clone, Serialize)]
pub struct RecordingMetadata<'a> {
    /// Recording id.
    pub recording_id: &'a str,
    /// Organisation id.
    pub org_id: &'a str,
    /// Its conversation, if any.
    pub conversation_id: Option<&'a str>,
    /// `call`, `email`, `chat`, `message`, `transcript`, `other` or `screen`.
    pub media_kind: &'a str,
    /// The media type it was ingested with.
    pub content_type: &'a str,
    /// When it was stored, UTC (ISO 8601).
    pub created_at: String,
    /// The same, Unix milliseconds.
    pub created_at_ms: i64,
    /// Bytes of the recording.
    pub plaintext_bytes: u64,
    /// Bytes of its sealed envelope in the repository.
    pub stored_bytes: u64,
    /// The file this describes (its name beside this one).
    pub file: &'a str,
    /// Bytes of that file.
    pub file_bytes: u64,
    /// `none`, or `openpgp` when the file is an OpenPGP message.
    pub encryption: &'static str,
    /// The OpenPGP recipient's primary key fingerprint, when encrypted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openpgp_recipient: Option<&'a str>,
    /// The key that unwrapped its DEK (the organisation's KEK, or the server's
    /// storage key for screen recordings).
    pub kek_id: &'a str,
    /// SHA-256 of the recording (of the plaintext, before any OpenPGP encryption), hex.
    pub plaintext_sha256: &'a str,
    /// SHA-256 of the file, hex.
    pub file_sha256: &'a str,
    /// The export job.
    pub job_id: &'a str,
    /// When it was exported, UTC.
    pub exported_at: String,
}

impl<'a> RecordingMetadata<'a> {
    /// The metadata of `record`, written as `file` by job `job_id`.
    pub fn new(
        record: &'a RecordingRecord,
        file_name: &'a str,
        written: &'a ExportedFile,
        openpgp_recipient: Option<&'a str>,
        job_id: &'a str,
        now_ms: i64,
    ) -> Self {
        Self {
            recording_id: &record.id,
            org_id: &record.org_id,
            conversation_id: record.conversation_id.as_deref(),
            media_kind: &record.media_kind,
            content_type: &record.content_type,
            created_at: utc(record.created_at.unsigned_abs()),
            created_at_ms: record.created_at,
            plaintext_bytes: record.plaintext_len,
            stored_bytes: record.stored_len,
            file: file_name,
            file_bytes: written.bytes,
            encryption: if openpgp_recipient.is_some() {
                "openpgp"
            } else {
                "none"
            },
            openpgp_recipient,
            kek_id: &written.kek_id,
            plaintext_sha256: &written.plaintext_sha256,
            file_sha256: &written.file_sha256,
            job_id,
            exported_at: utc(now_ms.unsigned_abs()),
        }
    }

    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

/// The head of a manifest: everything but its lists.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestHead<'a> {
    /// [`MANIFEST_FORMAT`].
    pub format: &'static str,
    /// The export job.
    pub job_id: &'a str,
    /// Organisation id.
    pub org_id: &'a str,
    /// `done`, or `failed` when some recordings could not be exported.
    pub state: &'a str,
    /// When the job was created, UTC.
    pub created_at: String,
    /// When it finished, UTC.
    pub finished_at: String,
    /// Where the files are.
    pub destination: &'a str,
    /// Which recordings the job took.
    pub selection: &'a ExportSelection,
    /// The OpenPGP recipient's primary key fingerprint, when files are encrypted.
    pub openpgp_recipient: Option<&'a str>,
    /// Recordings selected.
    pub recordings: u64,
    /// Recordings exported.
    pub exported: u64,
    /// Recordings that failed.
    pub failed: u64,
    /// Bytes of the exported recordings.
    pub plaintext_bytes: u64,
    /// Bytes of the files written (recordings only).
    pub file_bytes: u64,
}

/// One exported recording in a manifest.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestFile<'a> {
    /// Recording id.
    pub recording_id: &'a str,
    /// What was written.
    #[serde(flatten)]
    pub file: &'a ExportedFile,
}

/// One recording that was not exported, and why.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestFailure<'a> {
    /// Recording id.
    pub recording_id: &'a str,
    /// Why (no key material).
    pub error: &'a str,
}

/// Builds a manifest's JSON text piece by piece: [`ManifestText::head`], then
/// [`ManifestText::file`] for each file, [`ManifestText::failures`], then
/// [`ManifestText::failure`] for each failure, then [`ManifestText::end`].
#[derive(Debug, Default)]
pub struct ManifestText {
    first: bool,
}

impl ManifestText {
    /// The opening: the head's fields, then the start of the `files` list.
    pub fn head(&mut self, head: &ManifestHead<'_>) -> String {
        self.first = true;
        let mut text = serde_json::to_string_pretty(head).unwrap_or_else(|_| "{}".into());
        text.truncate(text.trim_end().trim_end_matches('}').trim_end().len());
        text.push_str(",\n  \"files\": [");
        text
    }

    fn item(&mut self, json: String) -> String {
        let sep = if self.first { "\n    " } else { ",\n    " };
        self.first = false;
        format!("{sep}{json}")
    }

    /// One file entry.
    pub fn file(&mut self, entry: &ManifestFile<'_>) -> String {
        self.item(serde_json::to_string(entry).unwrap_or_default())
    }

    /// Closes `files` and opens `failures`.
    pub fn failures(&mut self) -> String {
        self.first = true;
        "\n  ],\n  \"failures\": [".to_string()
    }

    /// One failure entry.
    pub fn failure(&mut self, entry: &ManifestFailure<'_>) -> String {
        self.item(serde_json::to_string(entry).unwrap_or_default())
    }

    /// The closing.
    pub fn end(&mut self) -> String {
        "\n  ]\n}\n".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_built_piece_by_piece_is_one_json_document() {
        let selection = ExportSelection::default();
        let head = ManifestHead {
            format: MANIFEST_FORMAT,
            job_id: "job-1",
            org_id: "org-1",
            state: "failed",
            created_at: utc(0),
            finished_at: utc(1000),
            destination: "export directory /x",
            selection: &selection,
            openpgp_recipient: None,
            recordings: 3,
            exported: 2,
            failed: 1,
            plaintext_bytes: 20,
            file_bytes: 20,
        };
        let file = ExportedFile {
            path: "a/b.wav".into(),
            metadata_path: "a/b_metadata.json".into(),
            bytes: 10,
            plaintext_len: 10,
            plaintext_sha256: "00".into(),
            file_sha256: "00".into(),
            kek_id: "kek-1".into(),
        };
        let mut m = ManifestText::default();
        let mut text = m.head(&head);
        for id in ["rec-1", "rec-2"] {
            text += &m.file(&ManifestFile {
                recording_id: id,
                file: &file,
            });
        }
        text += &m.failures();
        text += &m.failure(&ManifestFailure {
            recording_id: "rec-3",
            error: "the key service refused",
        });
        text += &m.end();
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["format"], MANIFEST_FORMAT);
        assert_eq!(v["files"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["files"][1]["recording_id"], "rec-2");
        assert_eq!(v["files"][1]["path"], "a/b.wav");
        assert_eq!(v["failures"][0]["recording_id"], "rec-3");
        let mut empty = ManifestText::default();
        let text = empty.head(&head) + &empty.failures() + &empty.end();
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["files"], serde_json::json!([]));
    }
}
