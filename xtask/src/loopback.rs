//! A minimal HTTP/1.1 client for loopback services (the demo's server and LKM):
//! one request per connection, a bearer token when given, the whole answer read.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::ci::Res;

/// One HTTP/1.1 request on loopback; returns the status and body.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Res<(u16, Vec<u8>)> {
    http_full(addr, method, path, token, headers, body).map(|(status, _, body)| (status, body))
}

/// One HTTP/1.1 request on loopback (with a bearer token unless it is empty);
/// returns the status, the response head and the body.
pub(crate) fn http_full(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Res<(u16, String, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr)?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if !token.is_empty() {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Err("unexpected chunked response".into());
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no HTTP status")?;
    Ok((status, head, response[split + 4..].to_vec()))
}
