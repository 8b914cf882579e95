//! `tapeseal inspect`: what an envelope's header says, as text or JSON, without a key;
//! and reading a header from the start of a file.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tapeseal_core::header::PREFIX_LEN;
use tapeseal_engine::{Inspection, Runtime, WrapAlgorithm};

use crate::exit::{Failure, Outcome};

/// Reads just the header from the start of a file.
pub(crate) fn read_header(runtime: &Runtime, path: &Path) -> Outcome<(Vec<u8>, u64)> {
    let mut file = File::open(path).map_err(|e| Failure::io("cannot open", path, e))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut header = vec![0u8; PREFIX_LEN];
    file.read_exact(&mut header).map_err(|_| {
        Failure::input(format!(
            "{}: too short to be a tapeseal envelope",
            path.display()
        ))
    })?;
    let total = runtime.header_length(&header)? as usize;
    header.resize(total, 0);
    file.read_exact(&mut header[PREFIX_LEN..]).map_err(|_| {
        Failure::input(format!(
            "{}: the file ends inside the header",
            path.display()
        ))
    })?;
    Ok((header, len))
}

pub(crate) fn inspect(runtime: &Runtime, path: &Path, json: bool) -> Outcome {
    let (header, len) = read_header(runtime, path)?;
    let mut info = runtime.inspect(&header)?;
    // The layout needs the length, not the payload bytes: recompute it from the file size.
    let layout = tapeseal_core::Header::parse(&header)
        .ok()
        .and_then(|h| tapeseal_core::Layout::new(&h, len).ok());
    info.payload_len = len.saturating_sub(header.len() as u64);
    info.plaintext_len = layout.map(|l| l.plaintext_len());
    info.chunk_count = layout.map(|l| l.chunk_count());
    if json {
        println!("{}", inspection_json(&info));
    } else {
        print!("{}", inspection_text(&info));
    }
    Ok(())
}

pub(crate) fn wrap_name(algorithm: WrapAlgorithm) -> &'static str {
    match algorithm {
        WrapAlgorithm::RsaOaepSha256 => "rsa-oaep-sha256",
        WrapAlgorithm::RsaOaepSha1 => "rsa-oaep-sha1",
    }
}

fn inspection_json(info: &Inspection) -> String {
    let h = &info.header;
    let value = serde_json::json!({
        "version": h.version,
        "suite": h.suite,
        "orgId": h.org_id,
        "recordingId": h.recording_id,
        "mediaKind": h.media_kind.name(),
        "contentType": h.content_type,
        "createdAt": h.created_at_ms,
        "chunkSize": h.chunk_size,
        "encryptionContext": h.context.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "stanzas": h.stanzas.iter().map(|s| serde_json::json!({
            "kekId": s.kek_id,
            "algorithm": wrap_name(s.algorithm),
            "wrappedDek": B64.encode(&s.wrapped_dek),
        })).collect::<Vec<_>>(),
        "headerLength": h.header_len,
        "payloadLength": info.payload_len,
        "plaintextLength": info.plaintext_len,
        "chunkCount": info.chunk_count,
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

fn inspection_text(info: &Inspection) -> String {
    let h = &info.header;
    let mut s = String::new();
    let mut line = |k: &str, v: String| s.push_str(&format!("  {k:<14} {v}\n"));
    line(
        "format",
        format!("tapeseal envelope v{} (suite {:#06x})", h.version, h.suite),
    );
    line("organisation", h.org_id.clone());
    line("recording", h.recording_id.clone());
    line("media kind", h.media_kind.name().into());
    line("content type", h.content_type.clone());
    line(
        "created",
        format!(
            "{} ({} ms)",
            tapeseal_store::time::utc(h.created_at_ms),
            h.created_at_ms
        ),
    );
    line("chunk size", format!("{} bytes", h.chunk_size));
    for (i, (k, v)) in h.context.iter().enumerate() {
        line(if i == 0 { "context" } else { "" }, format!("{k}={v}"));
    }
    line("header", format!("{} bytes", h.header_len));
    line(
        "payload",
        match (info.plaintext_len, info.chunk_count) {
            (Some(p), Some(c)) => format!(
                "{} bytes, {c} chunks, {p} bytes of plaintext",
                info.payload_len
            ),
            _ if info.payload_len == 0 => "none (header only)".into(),
            _ => format!(
                "{} bytes: not a length a complete envelope can have (truncated?)",
                info.payload_len
            ),
        },
    );
    line("key stanzas", h.stanzas.len().to_string());
    for st in &h.stanzas {
        line(
            "",
            format!(
                "{}  {}  {}-byte wrapped DEK",
                st.kek_id,
                wrap_name(st.algorithm),
                st.wrapped_dek.len()
            ),
        );
    }
    s
}
