//! Processes the demos start and stop: a `tapeseal` service that announces where it
//! listens, stopping a child with a signal and then patience, and finding a free
//! loopback port.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::ci::Res;

/// A `tapeseal` process that prints `listening on URL` first (the server, or the
/// reference LKM).
#[derive(Debug)]
pub(crate) struct Service {
    child: Child,
    pub(crate) url: String,
}

/// How long a service gets to stop after SIGTERM (the server's default grace period
/// for requests in flight is 30 s) before it is killed.
const STOP_PATIENCE: Duration = Duration::from_secs(60);

impl Service {
    pub(crate) fn start(bin: &Path, args: &[String]) -> Res<Self> {
        let mut command = Command::new(bin);
        command
            .args(args)
            .env(
                "TAPESEAL_LOG",
                std::env::var("TAPESEAL_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stderr(Stdio::inherit());
        Self::spawn(&mut command, &format!("tapeseal {}", args.join(" ")))
    }

    /// Starts `command` (named `what` in errors), its standard output piped, and
    /// waits for its first line, `listening on URL`.
    pub(crate) fn spawn(command: &mut Command, what: &str) -> Res<Self> {
        let mut child = command.stdout(Stdio::piped()).spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = match lines.next() {
            Some(Ok(line)) if line.starts_with("listening on ") => {
                std::thread::spawn(move || for _ in lines {});
                line.trim_start_matches("listening on ").to_string()
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} did not start").into());
            }
        };
        Ok(Self { child, url })
    }

    /// `host:port` of the URL.
    pub(crate) fn addr(&self) -> &str {
        self.url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Asks the process to shut down (SIGTERM) and waits for it; kills it after
    /// [`STOP_PATIENCE`]. A process that had exited is only reaped.
    pub(crate) fn terminate(&mut self) -> Res<ExitStatus> {
        Ok(stop_child(&mut self.child, "TERM", STOP_PATIENCE)?)
    }

    /// Asks the process to shut down (SIGTERM) and waits for it.
    pub(crate) fn stop(mut self) -> Res<()> {
        let exit = self.terminate()?;
        if exit.success() {
            Ok(())
        } else {
            Err(format!("tapeseal exited with {exit}").into())
        }
    }

    pub(crate) fn wait(mut self) -> Res<()> {
        self.child.wait()?;
        Ok(())
    }
}

/// Sends `signal` (a name `kill -s` takes: TERM, INT) to `child` unless it has
/// exited, and waits for it; kills it when it is still running after `patience`.
pub(crate) fn stop_child(
    child: &mut Child,
    signal: &str,
    patience: Duration,
) -> std::io::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    let asked = Command::new("kill")
        .args(["-s", signal, &child.id().to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let since = Instant::now();
    while asked && since.elapsed() < patience {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait()
}

/// The first port from `from` on (trying `tries` ports) that 127.0.0.1 can listen on
/// now.
pub(crate) fn free_port(from: u16, tries: u16) -> Res<u16> {
    (from..from.saturating_add(tries))
        .find(|port| TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).is_ok())
        .ok_or_else(|| {
            format!(
                "no free port on 127.0.0.1 from {from} to {}",
                from.saturating_add(tries) - 1
            )
            .into()
        })
}
