//! Where each exported file goes:
//! `{prefix}/{orgId}/year=YYYY/month=MM/day=DD/hour=HH/conversation_id=ID/{recordingId}.{ext}`
//! and `{recordingId}_metadata.json` beside it (UTC, from the recording's creation
//! time), and a job's manifest at `{prefix}/{orgId}/_manifests/{jobId}.json`. The
//! `key=value` directories are the Hive partition style that Athena, Spark and
//! Glue read as columns.

use tapeseal_store::catalogue::RecordingRecord;
use tapeseal_store::time::civil_from_days;

/// The partition value of a recording without a conversation. A conversation id
/// never encodes to it: [`segment`] always escapes `_`.
pub const NO_CONVERSATION: &str = "_none";

/// The longest destination prefix accepted (the same as a repository's).
pub use tapeseal_store::s3::MAX_PREFIX_LEN;

/// A media type without its parameters, lower case (`Audio/WAV; x=y` → `audio/wav`).
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The file name extension of a media type (parameters ignored); `bin` when unknown.
pub fn extension(content_type: &str) -> &'static str {
    match essence(content_type).as_str() {
        "audio/wav" | "audio/wave" | "audio/x-wav" | "audio/vnd.wave" => "wav",
        "audio/mpeg" | "audio/mp3" => "mp3",
        "audio/ogg" => "ogg",
        "audio/opus" => "opus",
        "audio/webm" | "video/webm" => "webm",
        "audio/mp4" | "audio/m4a" | "audio/x-m4a" => "m4a",
        "audio/flac" | "audio/x-flac" => "flac",
        "audio/basic" => "au",
        "video/mp4" => "mp4",
        "message/rfc822" => "eml",
        "application/json" => "json",
        "application/xml" | "text/xml" => "xml",
        "application/pdf" => "pdf",
        "text/plain" => "txt",
        "text/html" => "html",
        "text/csv" => "csv",
        _ => "bin",
    }
}

/// One value made safe as a path segment: ASCII letters, digits and `-` stay, as
/// does `.` except in first place; every other byte of its UTF-8 is `%XX`
/// (so `_`, `/`, `%`, `=` and spaces never appear raw, and `.`/`..` cannot occur).
pub fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, byte) in value.bytes().enumerate() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || (byte == b'.' && i > 0) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Checks a destination prefix as a repository's is checked
/// ([`tapeseal_store::s3::check_prefix`]): empty, or `/`-separated segments of ASCII
/// letters, digits, `-`, `_` and `.` (never `.` or `..`), at most [`MAX_PREFIX_LEN`]
/// bytes. Returns it without leading or trailing `/`.
pub fn prefix(text: &str) -> Result<String, String> {
    tapeseal_store::s3::check_prefix(text)?;
    Ok(text.trim_matches('/').to_string())
}

/// The paths of one exported recording, relative to the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The recording's file.
    pub file: String,
    /// Its metadata companion.
    pub metadata: String,
    /// The file's own name (the literal data name inside an OpenPGP message).
    pub file_name: String,
}

fn join(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() {
        rest.to_string()
    } else {
        format!("{prefix}/{rest}")
    }
}

/// Where a recording goes under `prefix` (already checked by [`prefix`]); `.pgp` is
/// appended to an OpenPGP-encrypted file's name.
pub fn place(prefix: &str, record: &RecordingRecord, openpgp: bool) -> Placement {
    const HOUR: i64 = 3_600_000;
    let hours = record.created_at.div_euclid(HOUR);
    let (year, month, day) = civil_from_days(hours.div_euclid(24));
    let hour = hours.rem_euclid(24);
    let conversation = record
        .conversation_id
        .as_deref()
        .map_or_else(|| NO_CONVERSATION.to_string(), segment);
    let id = segment(&record.id);
    let dir = format!(
        "{}/year={year:04}/month={month:02}/day={day:02}/hour={hour:02}/conversation_id={conversation}",
        segment(&record.org_id)
    );
    let mut file_name = format!("{id}.{}", extension(&record.content_type));
    if openpgp {
        file_name.push_str(".pgp");
    }
    Placement {
        file: join(prefix, &format!("{dir}/{file_name}")),
        metadata: join(prefix, &format!("{dir}/{id}_metadata.json")),
        file_name,
    }
}

/// Where a job's manifest goes.
pub fn manifest(prefix: &str, org_id: &str, job_id: &str) -> String {
    join(
        prefix,
        &format!("{}/_manifests/{}.json", segment(org_id), segment(job_id)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(conversation: Option<&str>, created_at: i64, content_type: &str) -> RecordingRecord {
        RecordingRecord {
            id: "rec-00aa".into(),
            org_id: "org-01".into(),
            kek_id: Some("kek-1".into()),
            media_kind: "call".into(),
            content_type: content_type.into(),
            conversation_id: conversation.map(str::to_string),
            plaintext_len: 10,
            stored_len: 100,
            object_path: "orgs/org-01/rec-00aa.tseal".into(),
            created_at,
        }
    }

    #[test]
    fn a_recording_lands_in_its_hour_and_conversation() {
        // 2026-11-30T13:05:00Z
        let r = record(Some("conv-42"), 1_796_043_900_000, "audio/wav");
        let p = place("exports/2026", &r, false);
        assert_eq!(
            p.file,
            "exports/2026/org-01/year=2026/month=11/day=30/hour=13/conversation_id=conv-42/rec-00aa.wav"
        );
        assert_eq!(
            p.metadata,
            "exports/2026/org-01/year=2026/month=11/day=30/hour=13/conversation_id=conv-42/rec-00aa_metadata.json"
        );
        let p = place("", &record(None, 0, "message/rfc822; charset=utf-8"), true);
        assert_eq!(
            p.file,
            "org-01/year=1970/month=01/day=01/hour=00/conversation_id=_none/rec-00aa.eml.pgp"
        );
        assert_eq!(p.file_name, "rec-00aa.eml.pgp");
        assert_eq!(
            manifest("", "org-01", "job-9"),
            "org-01/_manifests/job-9.json"
        );
    }

    #[test]
    fn conversation_ids_cannot_escape_their_directory_or_collide_with_none() {
        assert_eq!(segment("a/b"), "a%2Fb");
        assert_eq!(segment(".."), "%2E.");
        assert_eq!(segment("_none"), "%5Fnone");
        assert_eq!(segment("x=y z%"), "x%3Dy%20z%25");
        assert_eq!(segment("é"), "%C3%A9");
        assert_eq!(segment("v1.2"), "v1.2");
    }

    #[test]
    fn prefixes_are_checked() {
        assert_eq!(prefix("/a/b_c/"), Ok("a/b_c".to_string()));
        assert_eq!(prefix(""), Ok(String::new()));
        for bad in ["a//b", "../x", "a/./b", "a b", "a/é", "x\\y"] {
            assert!(prefix(bad).is_err(), "{bad}");
        }
        assert!(prefix(&"a".repeat(MAX_PREFIX_LEN + 1)).is_err());
    }

    #[test]
    fn media_types_get_their_usual_extensions() {
        assert_eq!(extension("audio/wav"), "wav");
        assert_eq!(extension("Audio/MPEG"), "mp3");
        assert_eq!(extension("text/plain; charset=utf-8"), "txt");
        assert_eq!(extension("application/x-unknown"), "bin");
    }
}
