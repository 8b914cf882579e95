//! Bounded resources over real HTTP: one organisation holding hundreds of slow
//! downloads does not stop another organisation's playback or `/healthz`, a request
//! the server cannot take now gets a prompt 503 `busy` with `Retry-After` (never a
//! hang, never a "damaged recording"), and a slow reader holds no guest instance.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{Server, expect_json, fixture, noise, org};

/// Connections that ask for the big recording and then stop reading.
const SLOW: usize = 300;
/// The big recording.
const BIG: usize = 40 << 20;

/// Sends a GET and reads only what arrives within a moment: the status line and a
/// little of the body. Returns the socket (kept open, unread) and what was read.
fn slow_get(addr: &str, path: &str, token: &str) -> (TcpStream, Vec<u8>) {
    let mut socket = TcpStream::connect(addr).expect("connect");
    write!(
        socket,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .expect("send");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut head = [0u8; 512];
    let head = match socket.read(&mut head) {
        Ok(0) => b"(closed before any response)".to_vec(),
        Ok(n) => head[..n].to_vec(),
        Err(e) => format!("(read failed: {e})").into_bytes(),
    };
    (socket, head)
}

/// The last `n` bytes of `text` (at a character boundary).
fn tail(text: &str, n: usize) -> &str {
    let mut start = text.len().saturating_sub(n);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[test]
fn slow_downloads_of_one_organisation_do_not_stop_another_or_healthz() {
    let (_dir, data, acme) = fixture();
    let other = org(&data, "other");
    let server = Server::start(&data, "");
    let api = server.api();
    let big = noise(BIG, 40);
    let big_id = api.ingest(&acme.recorder, "call", "audio/wav", &big)["id"]
        .as_str()
        .expect("id")
        .to_string();
    let small = noise(200_000, 41);
    let small_id = api.ingest(&other.recorder, "call", "audio/wav", &small)["id"]
        .as_str()
        .expect("id")
        .to_string();
    let addr = server.url.trim_start_matches("http://").to_string();
    let path = format!("/v1/recordings/{big_id}/content");

    let started = Instant::now();
    let handles: Vec<_> = (0..SLOW)
        .map(|_| {
            let (addr, path, token) = (addr.clone(), path.clone(), acme.player.clone());
            std::thread::spawn(move || slow_get(&addr, &path, &token))
        })
        .collect();
    let held: Vec<(TcpStream, Vec<u8>)> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let opened = started.elapsed();
    // The status code, or what came instead of a status line.
    let status = |head: &[u8]| {
        let text = String::from_utf8_lossy(head);
        match text.strip_prefix("HTTP/1.1 ") {
            Some(rest) => rest.chars().take(3).collect(),
            None => text.chars().take(80).collect::<String>(),
        }
    };
    let text = |head: &[u8]| String::from_utf8_lossy(head).to_string();
    let ok = held.iter().filter(|(_, h)| status(h) == "200").count();
    let busy: Vec<String> = held
        .iter()
        .filter(|(_, h)| status(h) == "503")
        .map(|(_, h)| text(h))
        .collect();
    eprintln!(
        "{SLOW} slow connections in {opened:?}: {ok} streaming (unread), {} refused with 503",
        busy.len()
    );
    assert_eq!(
        ok + busy.len(),
        SLOW,
        "every slow request got 200 or a prompt 503: {:?}\nthe server's log ends:\n{}",
        held.iter()
            .map(|(_, h)| status(h))
            .filter(|s| s != "200" && s != "503")
            .collect::<Vec<_>>(),
        tail(&server.log(), 4000)
    );
    assert!(ok > 0, "some of the slow downloads stream");
    for head in &busy {
        assert!(head.contains("busy"), "503 says busy: {head}");
        assert!(
            head.to_ascii_lowercase().contains("retry-after"),
            "503 carries Retry-After: {head}"
        );
    }

    // With all of those held open and unread, the other organisation plays back,
    // and the health check answers, promptly.
    let t = Instant::now();
    let health = api.get("", "/healthz");
    assert_eq!(health.status().as_u16(), 200);
    let healthz = t.elapsed();
    let t = Instant::now();
    assert_eq!(api.content(&other.player, &small_id), small);
    let playback = t.elapsed();
    // The same organisation's small requests are not refused as damaged either.
    let meta = expect_json(
        api.get(&acme.player, &format!("/v1/recordings/{big_id}")),
        200,
    );
    assert_eq!(meta["size"], BIG as u64);
    eprintln!(
        "while held: /healthz in {healthz:?}, another organisation's playback in {playback:?}"
    );
    assert!(
        healthz < Duration::from_secs(5) && playback < Duration::from_secs(10),
        "healthz {healthz:?}, playback {playback:?}"
    );

    // A slow reader that finally reads gets the whole recording, authenticated.
    let (mut socket, head) = held
        .into_iter()
        .find(|(_, h)| status(h) == "200")
        .expect("a streaming one");
    let mut rest = Vec::new();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let header_end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .expect("the headers arrived whole");
    let already = head.len() - header_end;
    assert_eq!(&head[header_end..], &big[..already]);
    let mut buf = vec![0u8; 1 << 20];
    while rest.len() + already < BIG {
        let n = socket.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        rest.extend_from_slice(&buf[..n]);
    }
    assert_eq!(rest.len() + already, BIG, "the slow reader got every byte");
    assert!(rest[..] == big[already..], "and the right ones");
    let log = server.log();
    assert!(
        !log.contains("unreadable"),
        "a resource limit was reported as a damaged recording"
    );
}

#[test]
fn slow_clients_are_cut_off_and_leave_nothing() {
    let (_dir, data, acme) = fixture();
    let server = Server::start(
        &data,
        "[limits]\nheader_read_timeout_secs = 1\nbody_idle_timeout_secs = 1",
    );
    let addr = server.url.trim_start_matches("http://").to_string();

    // Headers that never finish: the server closes the connection.
    let mut socket = TcpStream::connect(&addr).expect("connect");
    write!(socket, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\n").expect("part of the headers");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = socket.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(8),
        "a client that never finishes its headers is dropped (after {waited:?})"
    );

    // An upload that stalls: 504 `timeout`, and nothing stored.
    let mut upload = crate::support::partial_upload(&server.url, &acme.recorder, 100_000, 10_000);
    upload
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answer = Vec::new();
    let _ = upload.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(answer.contains("\"timeout\""), "{answer}");
    let api = server.api();
    let listed = expect_json(api.get(&acme.admin, "/v1/recordings"), 200);
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "nothing stored");
}
