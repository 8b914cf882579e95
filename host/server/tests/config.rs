//! Server configuration: the embedded defaults, and the example in docs/SERVER.md,
//! which must stay a configuration the server accepts.

use std::net::SocketAddr;
use std::path::PathBuf;

use tapeseal_server::Config;

#[test]
fn the_defaults_need_nothing_installed_and_listen_on_loopback() {
    let config = Config::default();
    assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 8750)));
    assert!(config.tls.is_none());
    assert_eq!(
        config.data().catalogue_path(),
        PathBuf::from("tapeseal-data/catalogue.sqlite3")
    );
    assert_eq!(
        config.repository_path(),
        PathBuf::from("tapeseal-data/recordings")
    );
    assert_eq!(
        config.master_key_path(),
        PathBuf::from("tapeseal-data/master.key")
    );
    assert_eq!(Config::from_toml("").expect("empty file"), config);
}

#[test]
fn the_documented_example_is_a_valid_configuration() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/SERVER.md"))
        .expect("docs/SERVER.md");
    let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("its end");
    let config = Config::from_toml(&doc[start..end]).expect("the documented example parses");
    assert_eq!(config.repository_path(), PathBuf::from("/srv/recordings"));
    assert_eq!(
        config.tls.expect("tls").cert,
        PathBuf::from("/etc/tapeseal/server.crt")
    );
    assert_eq!(
        config.master_key.env.as_deref(),
        Some("TAPESEAL_MASTER_KEY")
    );
}

#[test]
fn mistakes_are_refused_with_a_reason() {
    for (text, says) in [
        ("lisen = \"127.0.0.1:1\"", "unknown field"),
        ("listen = \"not an address\"", "invalid socket address"),
        ("chunk_size = 8", "chunk_size"),
        ("max_upload_bytes = 0", "max_upload_bytes"),
        ("scheduler_interval_secs = 0", "scheduler_interval_secs"),
        ("[tls]\ncert = \"a.pem\"", "missing field `key`"),
        (
            "[limits]\nlisten_backlog = 0",
            "listen_backlog must be 1 to 65535",
        ),
        (
            "[limits]\nlisten_backlog = 70000",
            "listen_backlog must be 1 to 65535",
        ),
        (
            "[limits]\nguest_operations = 0",
            "guest_operations must be 1 to 200",
        ),
        (
            "[limits]\nheader_read_timeout_secs = 0",
            "timeouts must be positive",
        ),
    ] {
        let err = Config::from_toml(text).expect_err(text).to_string();
        assert!(err.contains(says), "{text}: {err}");
    }
}
