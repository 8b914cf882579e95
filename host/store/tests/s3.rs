//! The S3 recording repository against moto's S3: a write is invisible until it
//! commits, whether one PUT or a multipart upload begun once it passes one part;
//! an abort, or a writer dropped without a commit, leaves neither an object nor
//! an upload's parts; reads are ranged GETs that return exactly the bytes asked; a
//! pinned read never mixes two versions; every object carries the SSE asked for;
//! a prefix is honoured; a missing bucket says so at first use.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use tapeseal_store::repo::{PART, ReadError, Repository};
use tapeseal_store::s3::{S3Settings, Secret, Sse};
use tapeseal_testkit::{Account, Moto};

const BUCKET: &str = "recordings";

/// moto with the bucket `recordings` in account A, and a directory for its log.
async fn moto() -> (Moto, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start(dir.path()).await;
    moto.create_bucket(Account::A, BUCKET).await;
    (moto, dir)
}

/// The bucket as the admin of account A reaches it, with SSE-S3.
fn settings(moto: &Moto, bucket: &str) -> S3Settings {
    let admin = moto.admin(Account::A);
    S3Settings {
        bucket: bucket.into(),
        prefix: None,
        region: Moto::REGION.into(),
        endpoint_url: Some(moto.endpoint().into()),
        access_key_id: Some(admin.access_key_id.clone()),
        secret_access_key: Some(Secret::new(admin.secret_access_key.clone())),
        sse: Some(Sse::S3),
    }
}

fn repository(moto: &Moto) -> Repository {
    Repository::s3(&settings(moto, BUCKET)).expect("an S3 repository")
}

/// `len` bytes that differ from any other `seed`'s (xorshift).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `bytes` in pieces of 1 MiB, as ingest does, without committing.
async fn write(repo: &Repository, path: &str, bytes: &[u8]) -> tapeseal_store::repo::ObjectWriter {
    let mut writer = repo.writer(path).await.expect("writer");
    for piece in bytes.chunks(1 << 20) {
        writer
            .put(Bytes::copy_from_slice(piece))
            .await
            .expect("put");
    }
    assert_eq!(writer.written(), bytes.len() as u64);
    writer
}

/// Waits (up to 10 s) until the bucket has no unfinished multipart upload.
async fn no_uploads_left(moto: &Moto, bucket: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let uploads = moto.list_multipart_uploads(Account::A, bucket).await;
        if uploads.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "multipart uploads left behind: {uploads:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_invisible_until_it_commits_below_and_above_one_part() {
    let (moto, _dir) = moto().await;
    let repo = repository(&moto);
    for (name, len, multipart) in [
        ("orgs/a/small.tseal", 100_000, false),
        ("orgs/a/one-part.tseal", PART, false),
        ("orgs/a/three-parts.tseal", 2 * PART + 12_345, true),
    ] {
        let bytes = noise(len, len as u64);
        let writer = write(&repo, name, &bytes).await;
        assert!(
            moto.list_objects(Account::A, BUCKET, name).await.is_empty(),
            "{name} is visible before its commit"
        );
        // Past one part, the bytes already stream into a multipart upload.
        let uploads = moto.list_multipart_uploads(Account::A, BUCKET).await;
        let expected: Vec<String> = if multipart {
            vec![name.to_string()]
        } else {
            Vec::new()
        };
        assert_eq!(uploads, expected, "{name}");
        assert!(matches!(repo.pin(name).await, Err(ReadError::NotFound)));

        writer.commit().await.expect("commit");
        assert_eq!(
            moto.list_objects(Account::A, BUCKET, name).await,
            vec![name.to_string()]
        );
        assert!(
            moto.get_object(Account::A, BUCKET, name).await == bytes,
            "{name}"
        );
        assert_eq!(repo.size(name).await.expect("size"), len as u64);
        no_uploads_left(&moto, BUCKET).await;
    }

    // A replacement in progress leaves the old object as it was until it commits.
    let name = "orgs/a/three-parts.tseal";
    let newer = noise(PART + 1, 99);
    let writer = write(&repo, name, &newer).await;
    let before = moto.get_object(Account::A, BUCKET, name).await;
    assert_eq!(before.len(), 2 * PART + 12_345);
    writer.commit().await.expect("commit");
    assert!(moto.get_object(Account::A, BUCKET, name).await == newer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_or_a_drop_without_commit_leaves_no_object_and_no_upload() {
    let (moto, _dir) = moto().await;
    let repo = repository(&moto);
    for len in [50_000, PART + 1, 3 * PART] {
        let name = format!("orgs/a/aborted-{len}.tseal");
        let writer = write(&repo, &name, &noise(len, 1)).await;
        if len > PART {
            assert_eq!(
                moto.list_multipart_uploads(Account::A, BUCKET).await,
                vec![name.clone()]
            );
        }
        writer.abort().await.expect("abort");
        assert_eq!(
            moto.list_multipart_uploads(Account::A, BUCKET).await,
            Vec::<String>::new(),
            "{name}"
        );
    }

    // A client that goes away mid-upload: the writer is dropped, never committed.
    for len in [50_000, 2 * PART + 1] {
        let name = format!("orgs/a/dropped-{len}.tseal");
        let writer = write(&repo, &name, &noise(len, 2)).await;
        if len > PART {
            assert_eq!(
                moto.list_multipart_uploads(Account::A, BUCKET).await,
                vec![name.clone()]
            );
        }
        drop(writer);
        no_uploads_left(&moto, BUCKET).await;
    }
    // So does an upload dropped inside a task that is cancelled, as a request
    // handler is when its client disconnects.
    let name = "orgs/a/cancelled.tseal";
    let task = {
        let repo = repo.clone();
        tokio::spawn(async move {
            let writer = write(&repo, name, &noise(PART + 5, 3)).await;
            std::future::pending::<()>().await;
            drop(writer);
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while moto
        .list_multipart_uploads(Account::A, BUCKET)
        .await
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the upload never began");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    assert!(task.await.expect_err("cancelled").is_cancelled());
    no_uploads_left(&moto, BUCKET).await;

    assert_eq!(
        moto.list_objects(Account::A, BUCKET, "").await,
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_ranged_gets_of_exactly_the_bytes_asked() {
    let (moto, _dir) = moto().await;
    let repo = repository(&moto);
    let name = "orgs/a/ranged.tseal";
    let bytes = noise(3 << 20, 7);
    write(&repo, name, &bytes)
        .await
        .commit()
        .await
        .expect("commit");
    let len = bytes.len() as u64;
    let pinned = repo.pin(name).await.expect("pin");
    assert_eq!(pinned.size(), len);
    for range in [
        0..1,
        5..100_005,
        (1 << 20) - 3..(2 << 20) + 3,
        len - 10..len,
        0..len,
    ] {
        let want = &bytes[range.start as usize..range.end as usize];
        let got = repo.read(name, range.clone()).await.expect("read");
        assert!(got == want, "read {range:?}: {} bytes", got.len());
        let got = pinned.read(range.clone()).await.expect("pinned read");
        assert!(got == want, "pinned read {range:?}: {} bytes", got.len());
        let mut streamed = Vec::new();
        let mut stream = pinned.stream(range.clone());
        while let Some(piece) = stream.next().await {
            streamed.extend_from_slice(&piece.expect("piece"));
        }
        assert!(streamed == want, "pinned stream {range:?}");
        let mut streamed = Vec::new();
        let mut stream = repo
            .stream(name, Some(range.clone()))
            .await
            .expect("stream");
        while let Some(piece) = stream.next().await {
            streamed.extend_from_slice(&piece.expect("piece"));
        }
        assert!(streamed == want, "stream {range:?}");
    }
    assert!(matches!(
        pinned.read(len - 1..len + 1).await,
        Err(ReadError::Truncated(_))
    ));
    assert!(repo.read(name, 4..4).await.expect("empty").is_empty());

    // Every GET of the object was a ranged one, answered 206 Partial Content (moto
    // logs each request, colouring some; a GET of the whole object would be a 200).
    let log = std::fs::read_to_string(moto.log_path()).expect("moto's log");
    let gets: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&format!("GET /{BUCKET}/{name} HTTP/")))
        .collect();
    assert!(gets.len() >= 5 * 4, "{gets:?}");
    assert!(
        gets.iter().all(|l| l.contains("\" 206 ")),
        "a GET that was not ranged: {gets:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_read_never_mixes_two_versions() {
    let (moto, _dir) = moto().await;
    moto.create_bucket(Account::A, "versioned").await;
    moto.enable_versioning(Account::A, "versioned").await;
    for bucket in [BUCKET, "versioned"] {
        let repo = Repository::s3(&settings(&moto, bucket)).expect("repository");
        let name = "orgs/a/rewrapped.tseal";
        let first = noise(200_000, 11);
        let second = noise(250_000, 12);
        write(&repo, name, &first)
            .await
            .commit()
            .await
            .expect("commit");
        let pinned = repo.pin(name).await.expect("pin");
        assert!(pinned.read(0..1000).await.expect("read") == first[..1000]);
        // A rewrap replaces the object while the read goes on.
        write(&repo, name, &second)
            .await
            .commit()
            .await
            .expect("replace");
        match pinned.read(1000..200_000).await {
            // A versioned bucket keeps the version the read began on.
            Ok(bytes) => {
                assert_eq!(bucket, "versioned", "read the replaced object");
                assert!(bytes == first[1000..], "bytes of another version");
            }
            // Elsewhere the read fails rather than mixing the two.
            Err(e) => {
                assert_eq!(bucket, BUCKET, "{e}");
                assert!(e.to_string().contains("replaced"), "{e}");
            }
        }
        let fresh = repo.pin(name).await.expect("pin again");
        assert_eq!(fresh.size(), second.len() as u64);
        assert!(fresh.read(0..250_000).await.expect("read") == second);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_carries_the_server_side_encryption_asked_for() {
    let (moto, _dir) = moto().await;
    let kms_key = moto.create_key(Account::A).await;
    let kms_key_id = kms_key.rsplit('/').next().expect("a key id").to_string();
    for (sse, header) in [
        (Sse::S3, "AES256"),
        (
            Sse::Kms {
                key_id: kms_key.clone(),
            },
            "aws:kms",
        ),
    ] {
        let mut s = settings(&moto, BUCKET);
        s.sse = Some(sse.clone());
        let repo = Repository::s3(&s).expect("repository");
        for len in [1000, PART + 1000] {
            let name = format!("orgs/a/{header}-{len}.tseal");
            let bytes = noise(len, 5);
            write(&repo, &name, &bytes)
                .await
                .commit()
                .await
                .expect("commit");
            let head = moto.head_object(Account::A, BUCKET, &name).await;
            assert_eq!(head.len, len as u64);
            assert_eq!(head.sse.as_deref(), Some(header), "{name}: {head:?}");
            if matches!(sse, Sse::Kms { .. }) {
                let reported = head.sse_kms_key_id.unwrap_or_default();
                assert!(reported.ends_with(&kms_key_id), "{name}: {reported}");
            } else {
                assert_eq!(head.sse_kms_key_id, None, "{name}");
            }
            assert!(repo.read(&name, 0..len as u64).await.expect("read") == bytes);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_live_under_the_prefix() {
    let (moto, _dir) = moto().await;
    let mut s = settings(&moto, BUCKET);
    s.prefix = Some("tenant-1/recordings".into());
    let repo = Repository::s3(&s).expect("repository");
    assert_eq!(repo.location(), "s3://recordings/tenant-1/recordings");
    let name = "orgs/a/prefixed.tseal";
    for (path, len) in [(name, 1000), ("orgs/a/big.tseal", PART + 1)] {
        let bytes = noise(len, 9);
        write(&repo, path, &bytes)
            .await
            .commit()
            .await
            .expect("commit");
        assert!(repo.read(path, 0..len as u64).await.expect("read") == bytes);
    }
    assert_eq!(
        moto.list_objects(Account::A, BUCKET, "").await,
        vec![
            "tenant-1/recordings/orgs/a/big.tseal".to_string(),
            "tenant-1/recordings/orgs/a/prefixed.tseal".to_string(),
        ]
    );
    // The bucket's root is another place.
    let root = repository(&moto);
    assert!(matches!(root.pin(name).await, Err(ReadError::NotFound)));
    repo.delete(name).await.expect("delete");
    assert_eq!(
        moto.list_objects(Account::A, BUCKET, "").await,
        vec!["tenant-1/recordings/orgs/a/big.tseal".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_named_at_first_use() {
    let (moto, _dir) = moto().await;
    // Nothing is contacted until the repository is used.
    let repo = Repository::s3(&settings(&moto, "no-such-bucket")).expect("repository");
    let name = "orgs/a/lost.tseal";
    for len in [1000, PART + 1] {
        let mut writer = repo.writer(name).await.expect("writer");
        let written = async {
            for piece in noise(len, 3).chunks(1 << 20) {
                writer.put(Bytes::copy_from_slice(piece)).await?;
            }
            std::io::Result::Ok(())
        }
        .await;
        let err = match written {
            Err(e) => e,
            Ok(()) => writer.commit().await.expect_err("a write to no bucket"),
        }
        .to_string();
        assert!(
            err.contains("s3://no-such-bucket") && err.contains("NoSuchBucket"),
            "{len}: {err}"
        );
    }
    let err = repo
        .read(name, 0..10)
        .await
        .expect_err("a read")
        .to_string();
    assert!(err.contains("NoSuchBucket"), "{err}");
}
