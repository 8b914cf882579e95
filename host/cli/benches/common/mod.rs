//! The real `tapeseal serve` binary as a child process on a loopback port, with a
//! data directory of its own and one organisation with a token per role. Each bench
//! uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use tapeseal_store::catalogue::{Catalogue, Role};

/// A running server; dropping it kills the process and removes its data.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
    pub(crate) dir: tempfile::TempDir,
}

impl Server {
    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The organisation's tokens.
pub(crate) struct Tokens {
    pub(crate) admin: String,
    pub(crate) recorder: String,
    pub(crate) player: String,
}

/// Starts a server with extra TOML `config` lines.
pub(crate) fn start(config: &str) -> (Server, Tokens) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data");
    let catalogue = Catalogue::open(&data.join("catalogue.sqlite3")).expect("catalogue");
    catalogue.create_org("bench", "bench").expect("org");
    let token = |role| {
        catalogue
            .create_token("bench", role, "", "bench")
            .expect("token")
            .secret
            .to_string()
    };
    let tokens = Tokens {
        admin: token(Role::Admin),
        recorder: token(Role::Recorder),
        player: token(Role::Player),
    };
    drop(catalogue);
    let file = dir.path().join("server.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{config}\n",
            data.display()
        ),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tapeseal"))
        .args(["serve", "--config"])
        .arg(&file)
        .env("TAPESEAL_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = lines.next().expect("a line").expect("listening");
    std::thread::spawn(move || for _ in lines {});
    let url = line.trim_start_matches("listening on ").to_string();
    (Server { child, url, dir }, tokens)
}
