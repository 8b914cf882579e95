//! Process helpers shared by the test binaries that run `tapeseal` services.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Spawns `command` with stdout piped and waits for its first line (a service's
/// `listening on URL`); stdout is drained after it. On failure the child is killed
/// and `log` (where its stderr went) is shown.
pub(crate) fn spawn_listening(command: &mut Command, log: &Path) -> (Child, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn tapeseal");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    let Ok(line) = rx.recv_timeout(Duration::from_secs(300)) else {
        let _ = child.kill();
        let text = std::fs::read_to_string(log).unwrap_or_default();
        unreachable!("the service did not start; its log:\n{text}");
    };
    let Some(url) = line.strip_prefix("listening on ") else {
        let _ = child.kill();
        unreachable!("unexpected first line {line:?}");
    };
    (child, url.to_string())
}

/// SIGTERM, then waits for the process to exit.
pub(crate) fn terminate(child: &mut Child) -> ExitStatus {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    child.wait().expect("wait")
}

/// An append-mode log file for a child's stderr.
pub(crate) fn log_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("log")
}
