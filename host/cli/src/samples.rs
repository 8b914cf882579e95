//! Sample recordings for trying tapeseal without real ones: a call (a WAV tone), an
//! email and a chat transcript. `tapeseal samples` writes them; the demo and the
//! tests ingest them.

/// One sample recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// File name to write it under.
    pub file_name: &'static str,
    /// Media kind to ingest it as.
    pub kind: &'static str,
    /// Its MIME type.
    pub content_type: &'static str,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// A mono 16-bit 8 kHz PCM WAV file holding a sine tone.
pub fn wav_tone(freq: f64, seconds: f64) -> Vec<u8> {
    let rate = 8000u32;
    let samples = (f64::from(rate) * seconds) as u32;
    let mut out = Vec::with_capacity(44 + samples as usize * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + samples * 2).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(samples * 2).to_le_bytes());
    for n in 0..samples {
        let t = f64::from(n) / f64::from(rate);
        let v = (t * freq * std::f64::consts::TAU).sin() * 0.3 * f64::from(i16::MAX);
        out.extend_from_slice(&(v as i16).to_le_bytes());
    }
    out
}

const EMAIL: &str = "From: customer@example.com\r\nTo: support@example.com\r\n\
Subject: Card replacement\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
Hello, my card was damaged. Could you send a replacement to the address on file?\r\n";

const CHAT: &str = r#"{"conversationId":"demo-conversation-1","messages":[
{"from":"customer","at":"2026-11-28T09:00:01Z","text":"Hi, I was double charged."},
{"from":"agent","at":"2026-11-28T09:00:09Z","text":"Sorry about that, let me look."},
{"from":"agent","at":"2026-11-28T09:01:30Z","text":"Refund issued; it will show in 3 days."}]}"#;

/// The samples: a 10-second 440 Hz call, an email and a chat transcript.
pub fn all() -> Vec<Sample> {
    vec![
        Sample {
            file_name: "call.wav",
            kind: "call",
            content_type: "audio/wav",
            bytes: wav_tone(440.0, 10.0),
        },
        Sample {
            file_name: "email.eml",
            kind: "email",
            content_type: "message/rfc822",
            bytes: EMAIL.as_bytes().to_vec(),
        },
        Sample {
            file_name: "chat.json",
            kind: "chat",
            content_type: "application/json",
            bytes: CHAT.as_bytes().to_vec(),
        },
    ]
}
