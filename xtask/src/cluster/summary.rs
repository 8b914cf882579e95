//! What `cargo xtask demo --cluster` prints once the cluster is up: where each part
//! listens, the tokens, and what to try.

use std::path::Path;

use super::{BUCKET, INSTANCES, Instance};
use crate::demo::DemoOrg;

/// What the summary shows.
pub(super) struct Summary<'a> {
    pub(super) dir: &'a Path,
    pub(super) instances: &'a [Instance],
    pub(super) postgres: &'a crate::postgres::Cluster,
    pub(super) moto: &'a crate::moto::Server,
    pub(super) org: &'a DemoOrg,
    pub(super) env_file: &'a Path,
    pub(super) first_id: &'a str,
    /// Recordings of earlier runs, and how many of them play.
    pub(super) earlier: (usize, usize),
}

pub(super) fn print_summary(s: &Summary<'_>) {
    let relative = |path: &Path| -> String {
        let root = s.dir.parent().and_then(Path::parent).unwrap_or(s.dir);
        path.strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    println!(
        "\ntapeseal cluster demo: {INSTANCES} instances sharing one catalogue and one bucket\n"
    );
    println!(
        "  {:<11} {:<24} {:<38} log",
        "instance", "URL", "instance id"
    );
    for instance in s.instances {
        println!(
            "  {:<11} {:<24} {:<38} {}",
            instance.name,
            instance.service.url,
            instance.id.as_deref().unwrap_or("(not in its log)"),
            relative(&instance.log)
        );
    }
    println!(
        "  (configurations: {})",
        s.instances
            .iter()
            .map(|i| relative(&i.config))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "\n  catalogue   {}  (PostgreSQL; data in {}, log {})",
        s.postgres.url(),
        relative(&s.dir.join("postgres/data")),
        relative(s.postgres.log())
    );
    println!(
        "  recordings  s3://{BUCKET} at {}  (moto, SSE-S3; kept between runs by replaying {}, log {})",
        s.moto.endpoint(),
        relative(&s.dir.join("moto/requests.jsonl")),
        relative(s.moto.log())
    );
    println!(
        "  master key  {}  (the same for every instance, given as TAPESEAL_MASTER_KEY)",
        relative(&s.dir.join("master.key"))
    );
    let (earlier, playable) = s.earlier;
    if earlier > 0 {
        println!(
            "  recordings of earlier runs: {earlier}, of which {playable} play back{}",
            if playable == earlier {
                ""
            } else {
                " (the others' objects are no longer in the bucket)"
            }
        );
    }
    println!(
        "\n  organisation {}, this run's tokens (in {}):",
        s.org.name,
        relative(s.env_file)
    );
    for (role, token) in [
        ("admin", &s.org.admin),
        ("recorder", &s.org.recorder),
        ("player", &s.org.player),
    ] {
        println!("    {role:<9} {token}");
    }

    let url = |i: usize| {
        s.instances[i.min(s.instances.len() - 1)]
            .service
            .url
            .as_str()
    };
    let (one, two, three) = (url(0), url(1), url(2));
    let auth = |role: &str| format!("-H \"Authorization: Bearer $TAPESEAL_{role}\"");
    let (admin, recorder, player) = (auth("ADMIN"), auth("RECORDER"), auth("PLAYER"));
    let id = s.first_id;
    let commands = [
        format!("source {}", relative(s.env_file)),
        format!(
            "ID=$(curl -s {recorder} -H 'Content-Type: text/plain' --data-binary 'hello through instance 1' \
             '{one}/v1/recordings?kind=message' | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"id\"])')"
        ),
        format!("curl -s {player} {three}/v1/recordings/$ID/content; echo"),
        format!(
            "curl -s {player} -H 'Range: bytes=0-1023' {two}/v1/recordings/{id}/content | xxd | head"
        ),
        format!("curl -s {player} {two}/v1/recordings | python3 -m json.tool"),
        format!(
            "curl -s {admin} '{three}/v1/audit?action=recording.decrypt' | python3 -m json.tool"
        ),
        format!(
            "curl -s '{}/{BUCKET}?list-type=2' | python3 -c 'import re,sys; print(*re.findall(\"<Key>(.*?)</Key>\", sys.stdin.read()), sep=\"\\n\")'",
            s.moto.endpoint()
        ),
        format!("psql {} -c '\\dt'", s.postgres.url()),
    ];
    println!(
        "\nIngest through instance-1, play back through instance-3 (no stickiness: any instance \
         serves any recording):"
    );
    for command in commands {
        println!("  {command}");
    }
}
