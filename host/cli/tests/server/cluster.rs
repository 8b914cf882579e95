//! One deployment, three instances: three `tapeseal serve` processes share a real
//! PostgreSQL catalogue (a throwaway cluster on loopback) and a real S3 repository
//! (moto, IAM enforced), as several instances behind a load balancer do. Any
//! instance serves any request; what must happen once happens once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use tapeseal_testkit::{Account, Moto, Postgres};

use crate::support::{
    Api, Org, Server, expect_error, expect_json, metric, noise, org_in, partial_upload,
};

const BUCKET: &str = "recordings";

/// PostgreSQL, moto S3 and three instances configured alike.
struct Deployment {
    runtime: tokio::runtime::Runtime,
    moto: Moto,
    postgres: Postgres,
    url: String,
    servers: Vec<Option<Server>>,
    org: Org,
    dir: tempfile::TempDir,
    config: String,
    env: Vec<(String, String)>,
}

impl Deployment {
    fn start(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let moto = runtime.block_on(Moto::start(dir.path()));
        runtime.block_on(moto.create_bucket(Account::A, BUCKET));
        let postgres = Postgres::start(dir.path());
        let url = postgres.url();
        let s3 = moto.admin(Account::A).clone();
        let config = format!(
            "catalogue = \"{url}\"\nscheduler_interval_secs = 1\n{extra}\n\
             [master_key]\nenv = \"TAPESEAL_MASTER_KEY\"\n\
             [repository.s3]\nbucket = \"{BUCKET}\"\nendpoint_url = \"{}\"\nregion = \"{}\"\n\
             access_key_id = \"{}\"\nsecret_access_key_env = \"TAPESEAL_S3_SECRET\"\nsse = \"AES256\"\n",
            moto.endpoint(),
            Moto::REGION,
            s3.access_key_id,
        );
        let env = vec![
            (
                "TAPESEAL_MASTER_KEY".to_string(),
                "dGFwZXNlYWwtY2x1c3Rlci10ZXN0LW1hc3Rlci1rZXk=".to_string(),
            ),
            (
                "TAPESEAL_S3_SECRET".to_string(),
                s3.secret_access_key.clone(),
            ),
            // Rotations started together stay together (see the rotation steps).
            (
                "FAILPOINTS".to_string(),
                "rotation.before_insert=sleep(1500)".to_string(),
            ),
        ];
        let org = org_in(&["--catalogue", &url], "acme");
        let mut deployment = Self {
            runtime,
            moto,
            postgres,
            url,
            servers: Vec::new(),
            org,
            dir,
            config,
            env,
        };
        for n in 0..3 {
            let server = deployment.start_instance(n);
            deployment.servers.push(Some(server));
        }
        deployment
    }

    fn start_instance(&self, n: usize) -> Server {
        let data = self.dir.path().join(format!("instance-{n}"));
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Server::start_with(&data, &self.config, &env)
    }

    fn api(&self, n: usize) -> Api {
        self.servers[n].as_ref().expect("running").api()
    }

    fn objects(&self) -> Vec<String> {
        self.runtime
            .block_on(self.moto.list_objects(Account::A, BUCKET, ""))
    }

    fn uploads_in_progress(&self) -> Vec<String> {
        self.runtime
            .block_on(self.moto.list_multipart_uploads(Account::A, BUCKET))
    }

    fn sql(&self, statement: &str) -> String {
        self.postgres.psql(&self.url, statement)
    }
}

fn wait_until(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn three_instances_serve_one_deployment_with_no_stickiness() {
    let d = Deployment::start("");
    let acme = &d.org;

    // Ingest through one instance (past one S3 part: a multipart upload), play back
    // through the others, whole and by range.
    let body = noise(9 << 20, 7);
    let stored = d.api(0).ingest(&acme.recorder, "call", "audio/wav", &body);
    let id = stored["id"].as_str().expect("id").to_string();
    assert_eq!(
        d.api(2).content(&acme.player, &id),
        body,
        "whole, elsewhere"
    );
    let ranged = d.api(1).get_range(
        &acme.player,
        &format!("/v1/recordings/{id}/content"),
        "bytes=5000000-5100000",
    );
    assert_eq!(ranged.status().as_u16(), 206);
    assert_eq!(
        ranged.bytes().expect("range").as_ref(),
        &body[5_000_000..=5_100_000]
    );
    let objects = d.objects();
    assert_eq!(objects, vec![format!("orgs/{}/{id}.tseal", acme.id)]);
    let head = d
        .runtime
        .block_on(d.moto.head_object(Account::A, BUCKET, &objects[0]));
    assert_eq!(head.sse.as_deref(), Some("AES256"), "stored with SSE-S3");
    assert!(
        !crate::support::contains(
            &d.runtime
                .block_on(d.moto.get_object(Account::A, BUCKET, &objects[0])),
            &body[..4096]
        ),
        "the stored object is sealed"
    );

    // A media tier seals at the edge with the current KEK one instance gives it,
    // and uploads the envelope to another; a third plays it back.
    let kek = crate::support::edge::current_kek(&d.api(2), &acme.recorder, d.dir.path());
    let edge_body = noise(200_000, 8);
    let (edge_id, envelope) = crate::support::edge::seal(
        d.dir.path(),
        "edge",
        &acme.id,
        &kek.id,
        &kek.pem,
        &edge_body,
        &[],
    );
    let put =
        crate::support::edge::put_envelope(&d.api(0), &acme.recorder, &edge_id, envelope.clone());
    assert_eq!(put.status().as_u16(), 201);
    assert_eq!(d.api(1).content(&acme.player, &edge_id), edge_body);
    // The same id again, through yet another instance: refused, the first kept.
    let again = crate::support::edge::put_envelope(&d.api(1), &acme.recorder, &edge_id, envelope);
    expect_error(again, 409, "conflict");
    assert_eq!(d.api(2).content(&acme.player, &edge_id), edge_body);
    let objects: Vec<String> = d.objects();
    assert_eq!(objects.len(), 2, "{objects:?}");

    // An upload cut off half way leaves nothing: no object, no parts.
    let stream = partial_upload(
        &d.servers[1].as_ref().expect("up").url,
        &acme.recorder,
        20 << 20,
        12 << 20,
    );
    std::thread::sleep(Duration::from_millis(500));
    drop(stream);
    wait_until(
        "the aborted upload's parts are gone",
        Duration::from_secs(20),
        || d.uploads_in_progress().is_empty(),
    );
    assert_eq!(d.objects().len(), 2, "only the complete recordings");

    // A token revoked through one instance is refused by all of them at once.
    let created = expect_json(
        d.api(0).post_json(
            &acme.admin,
            "/v1/tokens",
            &json!({"role": "player", "label": "temp"}),
        ),
        201,
    );
    let (token, token_id) = (
        created["token"].as_str().expect("secret").to_string(),
        created["id"].as_str().expect("id").to_string(),
    );
    for n in 0..3 {
        assert_eq!(
            d.api(n).get(&token, "/v1/recordings").status().as_u16(),
            200
        );
    }
    let revoked = d
        .api(2)
        .delete(&acme.admin, &format!("/v1/tokens/{token_id}"));
    assert!(revoked.status().is_success(), "{}", revoked.status());
    for n in 0..3 {
        expect_error(d.api(n).get(&token, "/v1/recordings"), 401, "unauthorized");
    }

    // Decrypts on every instance at once: one audit log, numbered without gaps or
    // repeats.
    std::thread::scope(|scope| {
        for n in 0..3 {
            let (api, player, id) = (d.api(n), &acme.player, &id);
            scope.spawn(move || {
                for _ in 0..15 {
                    let r = api.get_range(
                        player,
                        &format!("/v1/recordings/{id}/content"),
                        "bytes=0-99",
                    );
                    assert_eq!(r.status().as_u16(), 206);
                }
            });
        }
    });
    let log = expect_json(d.api(1).get(&acme.admin, "/v1/audit?limit=1000"), 200);
    let seqs: Vec<i64> = log
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    assert!(seqs.len() > 45, "{} entries", seqs.len());
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "gap-free and unique"
    );

    // "Change key now" pressed on every instance at the same moment: one new KEK,
    // and every instance answers with it. (Built with failpoints, each rotation
    // holds 1.5 s between reading the current KEK and replacing it, so all three
    // surely race.)
    let keks_now = || {
        expect_json(d.api(0).get(&acme.admin, "/v1/keks"), 200)
            .as_array()
            .expect("keks")
            .len()
    };
    let before = keks_now();
    let barrier = std::sync::Barrier::new(3);
    let answers: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3)
            .map(|n| {
                let (api, admin, barrier) = (d.api(n), &acme.admin, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    let made = expect_json(api.post_json(admin, "/v1/keks", &json!({})), 201);
                    made["id"].as_str().expect("id").to_string()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let made = keks_now() - before;
    let distinct: std::collections::BTreeSet<&String> = answers.iter().collect();
    eprintln!("change key now on three instances at once: {made} new KEK(s), answers {answers:?}");
    assert_eq!(
        made,
        distinct.len(),
        "every new KEK is one a caller was answered with"
    );
    if cfg!(feature = "failpoints") {
        assert_eq!(made, 1, "one new KEK for three simultaneous requests");
    }

    // A rotation falls due while three instances check their schedules every
    // second: exactly one new KEK.
    expect_json(
        d.api(0).put_json(
            &acme.admin,
            "/v1/rotation-schedule",
            &json!({"period": "DAILY"}),
        ),
        200,
    );
    let before = keks_now();
    // The current KEK is made two days old, as if the deployment had run that long.
    d.sql(&format!(
        "UPDATE keks SET created_at = created_at - 172800000 WHERE org_id = '{}'",
        acme.id
    ));
    wait_until("the due rotation", Duration::from_secs(20), || {
        expect_json(d.api(1).get(&acme.admin, "/v1/keks"), 200)
            .as_array()
            .expect("keks")
            .len()
            > before
    });
    // Every instance has had several chances to rotate again.
    std::thread::sleep(Duration::from_secs(4));
    let keks = expect_json(d.api(2).get(&acme.admin, "/v1/keks"), 200);
    assert_eq!(keks.as_array().expect("keks").len(), before + 1, "{keks:#}");
    let created = d.sql(&format!(
        "SELECT count(*) FROM audit_log WHERE org_id = '{}' AND action = 'kek.create' AND actor = 'scheduler'",
        acme.id
    ));
    assert_eq!(created.trim(), "1", "one scheduled kek.create");
    eprintln!(
        "due rotation under three schedulers: {} KEKs after (was {before}), {} scheduled kek.create",
        keks.as_array().map_or(0, Vec::len),
        created.trim()
    );
}

#[test]
fn a_rewrap_job_moves_from_a_killed_instance_to_a_live_one() {
    let mut d = Deployment::start("[jobs]\nlease_secs = 2\nrewrap_pause_ms = 150\n");
    let acme = &d.org;
    const RECORDINGS: usize = 24;
    let bodies: Vec<Vec<u8>> = (0..RECORDINGS).map(|i| noise(3000 + i, i as u64)).collect();
    let ids: Vec<String> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            d.api(i % 3)
                .ingest(&acme.recorder, "call", "audio/wav", body)["id"]
                .as_str()
                .expect("id")
                .to_string()
        })
        .collect();
    let old = expect_json(d.api(0).get(&acme.admin, "/v1/keks"), 200)[0]["id"]
        .as_str()
        .expect("kek")
        .to_string();
    let new = expect_json(d.api(1).post_json(&acme.admin, "/v1/keks", &json!({})), 201)["id"]
        .as_str()
        .expect("kek")
        .to_string();
    let job = expect_json(
        d.api(0)
            .post_json(&acme.admin, "/v1/jobs/rewrap", &json!({"from_kek_id": old})),
        202,
    );
    let job_id = job["id"].as_str().expect("job").to_string();
    // The instance that took the job is killed part way.
    wait_until("some progress", Duration::from_secs(30), || {
        let job = expect_json(
            d.api(1).get(&acme.admin, &format!("/v1/jobs/{job_id}")),
            200,
        );
        job["progress"]["done"].as_u64().unwrap_or(0) >= 4
    });
    let owner = d.sql(&format!(
        "SELECT lease_owner FROM jobs WHERE id = '{job_id}'"
    ));
    assert!(owner.trim().starts_with("inst-"), "leased: {owner}");
    let runner = (0..3)
        .find(|n| {
            d.servers[*n]
                .as_ref()
                .is_some_and(|s| s.log().contains(owner.trim()))
        })
        .expect("the instance holding the lease");
    d.servers[runner].take().expect("running").crash();
    let done_at_kill = expect_json(
        d.api((runner + 1) % 3)
            .get(&acme.admin, &format!("/v1/jobs/{job_id}")),
        200,
    )["progress"]["done"]
        .as_u64()
        .expect("done");
    assert!(done_at_kill < RECORDINGS as u64, "killed part way");

    // Another instance takes it over once the lease runs out, and finishes it.
    let survivor = (runner + 1) % 3;
    let finished = {
        let api = d.api(survivor);
        let start = Instant::now();
        loop {
            let job = expect_json(api.get(&acme.admin, &format!("/v1/jobs/{job_id}")), 200);
            if job["state"] == "done" || job["state"] == "failed" {
                break job;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "{job:#}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    assert_eq!(finished["state"], "done", "{finished:#}");
    let new_owner = d.sql(&format!(
        "SELECT actor FROM audit_log WHERE action = 'job.rewrap.finish' AND detail LIKE 'job {job_id}%'"
    ));
    assert!(!new_owner.trim().is_empty(), "the finish is audited");
    assert!(
        (0..3).any(|n| n != runner
            && d.servers[n]
                .as_ref()
                .is_some_and(|s| s.log().contains("running job") && s.log().contains(&job_id))),
        "a live instance ran it"
    );
    // Every recording moved, and none was moved twice.
    let api = d.api(survivor);
    for (id, body) in ids.iter().zip(&bodies) {
        let meta = expect_json(api.get(&acme.admin, &format!("/v1/recordings/{id}")), 200);
        assert_eq!(meta["kek_id"], new.as_str(), "{id}");
        assert_eq!(&api.content(&acme.player, id), body, "{id}");
    }
    let moves = d.sql(&format!(
        "SELECT recording_id, count(*) FROM audit_log WHERE org_id = '{}' AND action = 'recording.rewrap' GROUP BY recording_id",
        acme.id
    ));
    let counts: HashMap<&str, &str> = moves.lines().filter_map(|l| l.split_once('|')).collect();
    assert_eq!(counts.len(), RECORDINGS, "{moves}");
    // One move is one or two catalogue updates (the stanza added, then the old one
    // dropped when that changes the stored size); never more.
    assert!(
        counts.values().all(|c| *c == "1" || *c == "2"),
        "a recording moved twice: {moves}"
    );
    // The live instances did only what the killed one had not recorded as done.
    let by_survivors: f64 = (0..3)
        .filter(|n| *n != runner)
        .map(|n| metric(&d.api(n), "tapeseal_rewrapped_total"))
        .sum();
    assert_eq!(by_survivors as u64, RECORDINGS as u64 - done_at_kill);
    eprintln!(
        "rewrap job {job_id}: instance {runner} killed after {done_at_kill} of {RECORDINGS}; \
         the others moved the remaining {by_survivors}"
    );
    assert_eq!(finished["progress"]["done"], RECORDINGS as u64);
    // A restarted instance joins again.
    d.servers[runner] = Some(d.start_instance(runner));
    let again = expect_json(
        d.api(runner)
            .get(&acme.admin, &format!("/v1/jobs/{job_id}")),
        200,
    );
    assert_eq!(again["state"], "done");
}
