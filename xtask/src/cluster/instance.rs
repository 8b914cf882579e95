//! One `tapeseal serve` instance of the demo cluster: its configuration, its
//! process and its log.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{BUCKET, INSTANCES, PORTS_TRIED, S3_SECRET};
use crate::ci::Res;
use crate::service::{Service, free_port};

/// What every instance's configuration shares.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) catalogue: String,
    pub(super) s3_endpoint: String,
    pub(super) master_key: String,
}

/// One `tapeseal serve` of the cluster. Dropping it stops it.
#[derive(Debug)]
pub(super) struct Instance {
    pub(super) name: String,
    pub(super) service: Service,
    /// The id the instance gives itself, from its `listening` log line.
    pub(super) id: Option<String>,
    pub(super) config: PathBuf,
    pub(super) log: PathBuf,
}

impl Instance {
    /// Writes `target/demo-cluster/instance-N/tapeseal.toml` (listening on `port` or
    /// the next free one) and starts `tapeseal serve` on it, its log in
    /// `tapeseal.log` beside it.
    pub(super) fn start(bin: &Path, dir: &Path, n: u16, port: u16, shared: &Shared) -> Res<Self> {
        let name = format!("instance-{n}");
        let home = dir.join(&name);
        let data = home.join("data");
        fs::create_dir_all(&data)?;
        let port = free_port(port, PORTS_TRIED)?;
        let config = home.join("tapeseal.toml");
        fs::write(
            &config,
            format!(
                "# cargo xtask demo --cluster: {name} of {INSTANCES}, sharing the catalogue and the bucket\n\
                 listen = \"127.0.0.1:{port}\"\n\
                 data_dir = {data}\n\
                 catalogue = {catalogue}\n\
                 \n\
                 [master_key]\n\
                 env = \"TAPESEAL_MASTER_KEY\"\n\
                 \n\
                 [repository.s3]\n\
                 bucket = \"{BUCKET}\"\n\
                 endpoint_url = {endpoint}\n\
                 region = \"us-east-1\"\n\
                 access_key_id = \"demo\"\n\
                 secret_access_key_env = \"TAPESEAL_S3_SECRET\"\n\
                 sse = \"AES256\"\n\
                 \n\
                 [jobs]\n\
                 lease_secs = 10\n",
                data = toml_string(&data.display().to_string()),
                catalogue = toml_string(&shared.catalogue),
                endpoint = toml_string(&shared.s3_endpoint),
            ),
        )?;
        let log = home.join("tapeseal.log");
        let stderr = fs::File::create(&log)?;
        let mut command = Command::new(bin);
        command
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("TAPESEAL_MASTER_KEY", &shared.master_key)
            .env("TAPESEAL_S3_SECRET", S3_SECRET)
            // `listening` (with the instance id) is an info line.
            .env(
                "TAPESEAL_LOG",
                std::env::var("TAPESEAL_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stderr(stderr);
        let service = Service::spawn(&mut command, &format!("{name} ({})", config.display()))
            .map_err(|e| format!("{e}; {}", log_tail(&log)))?;
        fs::write(home.join("tapeseal.pid"), format!("{}\n", service.pid()))?;
        let id = instance_id(&log);
        Ok(Self {
            name,
            service,
            id,
            config,
            log,
        })
    }

    pub(super) fn port(&self) -> Res<u16> {
        let addr = self.service.addr();
        addr.rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .ok_or_else(|| format!("no port in {addr}").into())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.service.terminate();
    }
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The `instance` field of the `listening` line the server logs once it listens
/// (`… listening … instance=ID`); none if it does not appear within 5 s.
fn instance_id(log: &Path) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        let found = text
            .lines()
            .filter(|line| line.contains("listening"))
            .find_map(|line| field(line, "instance"));
        if found.is_some() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of `name=value` in a text log line (quotes removed), where `name`
/// starts the field.
fn field(line: &str, name: &str) -> Option<String> {
    let key = format!("{name}=");
    line.match_indices(&key).find_map(|(at, _)| {
        let starts_field = line[..at]
            .chars()
            .next_back()
            .is_none_or(|c| c == ' ' || c == '{' || c == ',');
        if !starts_field {
            return None;
        }
        let value: String = line[at + key.len()..]
            .trim_start_matches('"')
            .chars()
            .take_while(|c| !matches!(c, ' ' | '"' | '}' | ',' | ':'))
            .collect();
        (!value.is_empty()).then_some(value)
    })
}

/// What a log file says of a failure, for an error message: the panic if there
/// was one, else its last lines.
pub(super) fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    if let Some(at) = lines.iter().position(|line| line.contains(" panicked at ")) {
        let panic = lines[at..lines.len().min(at + 2)].join("\n  ");
        return format!("it panicked (see {}):\n  {panic}", log.display());
    }
    let tail = lines[lines.len().saturating_sub(20)..].join("\n  ");
    format!("its log ({}) ends:\n  {tail}", log.display())
}
