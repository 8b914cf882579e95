//! `cargo xtask demo`: the core at work on sample recordings — a call (WAV tone), an
//! email and a chat transcript — sealed, inspected, opened and rewrapped onto a second
//! KEK, with every file left in `target/demo/` to look at.

use std::fs;
use std::path::Path;

use pkcs8::{EncodePrivateKey, LineEnding};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rsa::Oaep;
use spki::EncodePublicKey;
use tapeseal_core::{
    Dek, Header, KekPublicKey, MediaKind, Recipient, RewrapMode, SealParams, WrapAlgorithm,
    inspect, open, rewrap, seal,
};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

pub(crate) fn run(root: &Path) -> Res<()> {
    let dir = root.join("target/demo");
    fs::create_dir_all(&dir)?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("no OS randomness: {e}"))?;
    let mut rng = ChaCha20Rng::from_seed(seed);

    println!(
        "tapeseal demo: everything is written to {}\n",
        dir.display()
    );
    let kek1 = make_kek(&dir, "demo-kek-1", &mut rng)?;
    let kek2 = make_kek(&dir, "demo-kek-2", &mut rng)?;

    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let samples: [(&str, MediaKind, &str, Vec<u8>); 3] = [
        (
            "call.wav",
            MediaKind::Call,
            "audio/wav",
            wav_tone(440.0, 10.0),
        ),
        (
            "email.eml",
            MediaKind::Email,
            "message/rfc822",
            EMAIL.as_bytes().to_vec(),
        ),
        (
            "chat.json",
            MediaKind::Chat,
            "application/json",
            CHAT.as_bytes().to_vec(),
        ),
    ];

    println!(
        "{:<12} {:>10} {:>10} {:>7} {:<11} {:<8}",
        "recording", "plaintext", "envelope", "chunks", "kind", "KEK"
    );
    let mut sealed = Vec::new();
    for (name, kind, content_type, plain) in &samples {
        let dek = Dek::generate(&mut rng);
        let params = SealParams::new("demo-org", *name, *kind, *content_type, now_ms)
            .with_context("conversation-id", "demo-conversation-1");
        let recipient = Recipient::new(&kek1.id, kek1.public.clone());
        let envelope = seal(&mut rng, &dek, &params, &[recipient], plain)?;
        let path = dir.join(format!("{name}.tapeseal"));
        fs::write(&path, &envelope)?;
        let info = inspect(&envelope)?;
        let layout = info.layout.ok_or("sealed envelope has no layout")?;
        println!(
            "{:<12} {:>10} {:>10} {:>7} {:<11} {:<8}",
            name,
            plain.len(),
            envelope.len(),
            layout.chunk_count(),
            info.header.media_kind().name(),
            info.header.stanzas()[0].kek_id
        );
        fs::write(dir.join(name), plain)?;
        sealed.push((name, envelope, plain));
    }

    println!(
        "\nopening each envelope: unwrap the DEK with the KEK's private key, then open the payload"
    );
    for (name, envelope, plain) in &sealed {
        let header = Header::parse(envelope)?;
        let dek = unwrap(&kek1, &header.stanzas()[0].wrapped_dek)?;
        let opened = open(envelope, &dek)?;
        if opened != **plain {
            return Err(format!("{name}: opened bytes differ from the original").into());
        }
        fs::write(dir.join(format!("opened-{name}")), &opened)?;
        println!(
            "  {name}: {} bytes, identical to the original",
            opened.len()
        );
    }

    let (name, envelope, plain) = &sealed[0];
    let old_header = Header::parse(envelope)?;
    let dek = unwrap(&kek1, &old_header.stanzas()[0].wrapped_dek)?;
    let to =
        Recipient::new(&kek2.id, kek2.public.clone()).with_algorithm(WrapAlgorithm::RsaOaepSha1);
    let moved = rewrap(&mut rng, envelope, &dek, &[to], RewrapMode::Replace)?;
    let new_header = Header::parse(&moved)?;
    let same_payload = moved[new_header.header_len()..] == envelope[old_header.header_len()..];
    let dek2 = unwrap(&kek2, &new_header.stanzas()[0].wrapped_dek)?;
    let reopened = open(&moved, &dek2)?;
    fs::write(dir.join(format!("{name}.rewrapped.tapeseal")), &moved)?;
    println!(
        "\nrewrap {name} from {} to {} ({}): payload bytes identical: {same_payload}; opens with {}: {}",
        kek1.id,
        kek2.id,
        new_header.stanzas()[0].algorithm,
        kek2.id,
        reopened == **plain
    );
    println!("\nlisten: {}", dir.join("opened-call.wav").display());
    let d = dir.display();
    println!(
        "\nthe same with the tapeseal CLI (the core running in wasmtime, keys in aws-lc-rs):\n  \
         cargo run --release -p tapeseal-host -- inspect {d}/call.wav.tapeseal\n  \
         cargo run --release -p tapeseal-host -- open --key {d}/demo-kek-1.private.pem \\\n      \
         --in {d}/call.wav.tapeseal --out {d}/cli-call.wav"
    );
    println!(
        "\nNot built yet: the recording server (`tapeseal serve`), browser playback and the\n\
         reference LKM. `cargo xtask npm` builds the npm package."
    );
    Ok(())
}

struct DemoKek {
    id: String,
    public: KekPublicKey,
    private: rsa::PrivateKey,
}

fn make_kek(dir: &Path, id: &str, rng: &mut ChaCha20Rng) -> Res<DemoKek> {
    let private = rsa::PrivateKey::new(rng, 3072)?;
    let public_pem = private.to_public_key().to_public_key_pem(LineEnding::LF)?;
    fs::write(dir.join(format!("{id}.public.pem")), &public_pem)?;
    let private_path = dir.join(format!("{id}.private.pem"));
    fs::write(
        &private_path,
        private.to_pkcs8_pem(LineEnding::LF)?.as_bytes(),
    )?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&private_path, fs::Permissions::from_mode(0o600))?;
    }
    println!("KEK {id}: RSA-3072, public key {id}.public.pem");
    Ok(DemoKek {
        id: id.to_string(),
        public: KekPublicKey::from_pem(&public_pem)?,
        private,
    })
}

/// Demo-only unwrap with the `rsa` crate; the product's key services unwrap with
/// aws-lc-rs.
fn unwrap(kek: &DemoKek, wrapped: &[u8]) -> Res<Dek> {
    let bytes = kek
        .private
        .decrypt(Oaep::<sha2::Sha256>::new(), wrapped)
        .or_else(|_| kek.private.decrypt(Oaep::<sha1::Sha1>::new(), wrapped))
        .map_err(|_| "could not unwrap the DEK")?;
    Ok(Dek::from_slice(&bytes)?)
}

/// A mono 16-bit 8 kHz PCM WAV file holding a sine tone.
fn wav_tone(freq: f64, seconds: f64) -> Vec<u8> {
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
