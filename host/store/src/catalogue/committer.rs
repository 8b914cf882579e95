//! Group commit of audit entries. Each entry that is not part of a larger change
//! (a playback, a download, a failed decrypt) is handed to one writer thread; the
//! caller waits until the transaction holding it has committed. Entries that
//! arrive while a commit is on its way to disk go together in the next one, so
//! concurrent requests share one fsync instead of paying one each, and none is
//! answered before its entry is durable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};

use crate::db::{Db, DbError};
use futures::channel::oneshot;

use super::audit::{AuditEvent, Row};
use super::{CatalogueError, Result};

/// Most entries in one transaction: a bound on how long the writer holds the
/// catalogue at once.
const MAX_BATCH: usize = 1024;

struct Pending {
    row: Row,
    done: oneshot::Sender<Result<(), String>>,
}

/// The writer thread's mailbox, and how many commits it has made.
pub(super) struct Committer {
    mailbox: Mutex<Option<Sender<Pending>>>,
    commits: Arc<AtomicU64>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Committer {
    /// Closes the mailbox and waits for the writer to commit what is queued and
    /// let go of the database, so that a dropped catalogue is closed.
    fn drop(&mut self) {
        self.mailbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Committer {
    /// Starts the writer thread; it ends when the committer is dropped.
    pub(super) fn start(db: Db) -> std::io::Result<Self> {
        let (mailbox, queue) = channel();
        let commits = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&commits);
        let writer = std::thread::Builder::new()
            .name("audit-commit".into())
            .spawn(move || write(&db, &queue, &counter))?;
        Ok(Self {
            mailbox: Mutex::new(Some(mailbox)),
            commits,
            writer: Some(writer),
        })
    }

    /// Queues an entry; the receiver answers once it is durable (or why not).
    pub(super) fn submit(
        &self,
        org_id: &str,
        actor: &str,
        event: &AuditEvent<'_>,
    ) -> oneshot::Receiver<Result<(), String>> {
        let (done, answer) = oneshot::channel();
        let pending = Pending {
            row: Row::new(org_id, actor, event),
            done,
        };
        let mailbox = self.mailbox.lock().unwrap_or_else(PoisonError::into_inner);
        let refused = match mailbox.as_ref() {
            Some(mailbox) => mailbox.send(pending).err().map(|refused| refused.0),
            None => Some(pending),
        };
        if let Some(pending) = refused {
            let _ = pending
                .done
                .send(Err("the audit writer has stopped".into()));
        }
        answer
    }

    /// Transactions committed so far.
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

/// Waits for a submitted entry to be durable.
pub(super) async fn durable(answer: oneshot::Receiver<Result<(), String>>) -> Result<()> {
    match answer.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(CatalogueError::AuditNotRecorded(why)),
        Err(_) => Err(CatalogueError::AuditNotRecorded(
            "the audit writer has stopped".into(),
        )),
    }
}

fn write(db: &Db, queue: &Receiver<Pending>, commits: &AtomicU64) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let result = commit(db, &batch).map_err(|e| e.to_string());
        commits.fetch_add(1, Ordering::Relaxed);
        for pending in batch {
            let _ = pending.done.send(result.clone());
        }
    }
}

/// Writes a batch in one transaction (run again as a whole if PostgreSQL reports a
/// conflict with another instance's writer: the numbering stays gap-free).
fn commit(db: &Db, batch: &[Pending]) -> Result<(), DbError> {
    // The organisations' locks, as every writer of their audit entries takes them.
    let locks: Vec<i64> = batch
        .iter()
        .map(|pending| super::org_lock(pending.row.org_id()))
        .collect();
    db.write_locked(&locks, |tx| {
        for pending in batch {
            pending.row.insert(tx)?;
        }
        Ok(())
    })
}
