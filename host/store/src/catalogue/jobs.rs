//! Background jobs (rewrap and export): their parameters and progress live in the
//! catalogue, so a job survives a restart and resumes where it stopped.

use crate::db::params;
use serde::Serialize;

use super::audit::append;
use super::{AuditEvent, Catalogue, CatalogueError, Result};
use crate::ids;
use crate::time::now_ms;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a worker (also after a restart interrupted it).
    Queued,
    /// A worker is on it.
    Running,
    /// Finished; every item was processed.
    Done,
    /// Stopped on an error, or finished with recordings it could not process;
    /// `error` and the counts say which.
    Failed,
    /// Stopped by a caller before it finished.
    Cancelled,
}

impl JobState {
    fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Running,
            Self::Done,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// A job as the catalogue records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Job {
    /// Job id.
    pub id: String,
    /// Owning organisation.
    #[serde(skip)]
    pub org_id: String,
    /// What it does, e.g. `rewrap`.
    pub kind: String,
    /// Where it is.
    pub state: JobState,
    /// Its parameters (JSON).
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// Its progress so far (JSON).
    #[schema(value_type = Object)]
    pub progress: serde_json::Value,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

const JOB_COLUMNS: &str = "id, org_id, kind, state, params, progress, created_at, updated_at";

fn job_row(row: &crate::db::Row) -> std::result::Result<Job, crate::db::DbError> {
    let state: String = row.get(3)?;
    let params: String = row.get(4)?;
    let progress: Option<String> = row.get(5)?;
    Ok(Job {
        id: row.get(0)?,
        org_id: row.get(1)?,
        kind: row.get(2)?,
        state: JobState::from_name(&state).unwrap_or(JobState::Failed),
        params: serde_json::from_str(&params).unwrap_or(serde_json::Value::Null),
        progress: progress
            .and_then(|p| serde_json::from_str(&p).ok())
            .unwrap_or(serde_json::Value::Null),
        created_at: row.get(6)?,
        updated_at: row.get(7)?,
    })
}

impl Catalogue {
    /// Records a new queued job with its parameters and starting progress.
    pub fn create_job(
        &self,
        org_id: &str,
        kind: &str,
        params: &serde_json::Value,
        progress: &serde_json::Value,
        actor: &str,
        event: &AuditEvent<'_>,
    ) -> Result<Job> {
        self.write_for(org_id, |tx| {
            let now = now_ms();
            let job = Job {
                id: ids::new_id("job")?,
                org_id: org_id.to_string(),
                kind: kind.to_string(),
                state: JobState::Queued,
                params: params.clone(),
                progress: progress.clone(),
                created_at: now,
                updated_at: now,
            };
            tx.execute(
                "INSERT INTO jobs (id, org_id, kind, state, params, progress, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                params![
                    job.id,
                    job.org_id,
                    job.kind,
                    job.state.name(),
                    job.params.to_string(),
                    job.progress.to_string(),
                    now
                ],
            )?;
            append(tx, org_id, actor, event)?;
            Ok(job)
        })
    }

    /// One job of an organisation.
    pub fn job(&self, org_id: &str, job_id: &str) -> Result<Option<Job>> {
        self.read(|tx| {
            Ok(tx.query_opt(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE org_id = ?1 AND id = ?2"),
                params![org_id, job_id],
                job_row,
            )?)
        })
    }

    /// The organisation's jobs, newest first.
    pub fn list_jobs(&self, org_id: &str) -> Result<Vec<Job>> {
        self.read(|tx| {

            let rows = tx.query_map(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE org_id = ?1 ORDER BY created_at DESC, id DESC LIMIT 1000"
            ), params![org_id], job_row)?;
            Ok(rows)
        })
    }

    /// Unfinished jobs of any organisation that no instance holds a live lease on
    /// at `now_ms` (never claimed, released, or left by an instance that died),
    /// oldest first, as `(organisation, job)`: what an instance may claim.
    pub fn claimable_jobs(&self, now_ms: i64) -> Result<Vec<(String, String)>> {
        self.read(|tx| {
            Ok(tx.query_map(
                "SELECT org_id, id FROM jobs WHERE state IN ('queued', 'running')
                   AND (lease_owner IS NULL OR lease_until < ?1)
                 ORDER BY created_at, id",
                params![now_ms],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?)
        })
    }

    /// Takes the lease on an unfinished job for `owner` (an instance) until
    /// `lease_ms` from now, if no other instance holds a live one; returns the job
    /// when it did. Instances claiming the same job at once: one gets it.
    pub fn claim_job(
        &self,
        org_id: &str,
        job_id: &str,
        owner: &str,
        lease_ms: i64,
    ) -> Result<Option<Job>> {
        self.write_for(org_id, |tx| {
            let now = now_ms();
            let job = tx.query_opt(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs
                     WHERE org_id = ?1 AND id = ?2 AND state IN ('queued', 'running')
                       AND (lease_owner IS NULL OR lease_owner = ?3 OR lease_until < ?4)"
                ),
                params![org_id, job_id, owner, now],
                job_row,
            )?;
            if job.is_some() {
                tx.execute(
                    "UPDATE jobs SET lease_owner = ?1, lease_until = ?2 WHERE id = ?3",
                    params![owner, now.saturating_add(lease_ms), job_id],
                )?;
            }
            Ok(job)
        })
    }

    /// Extends `owner`'s lease on a job to `lease_ms` from now; `false` when it no
    /// longer holds it or the job is no longer queued or running (finished, or
    /// cancelled through any instance): the owner must then stop working on it.
    pub fn renew_job_lease(&self, job_id: &str, owner: &str, lease_ms: i64) -> Result<bool> {
        self.read(|tx| {
            let n = tx.execute(
                "UPDATE jobs SET lease_until = ?1
                 WHERE id = ?2 AND lease_owner = ?3 AND state IN ('queued', 'running')",
                params![now_ms().saturating_add(lease_ms), job_id, owner],
            )?;
            Ok(n == 1)
        })
    }

    /// Gives up `owner`'s lease on a job (it finished, failed or stopped here).
    pub fn release_job(&self, job_id: &str, owner: &str) -> Result<()> {
        self.read(|tx| {
            tx.execute(
                "UPDATE jobs SET lease_owner = NULL, lease_until = NULL
                 WHERE id = ?1 AND lease_owner = ?2",
                params![job_id, owner],
            )?;
            Ok(())
        })
    }

    /// Records a job's state and progress for the instance `owner` running it, only
    /// while it holds the job's lease: `false` (nothing written) once another
    /// instance has taken the job over, so that a stalled instance cannot write
    /// over its successor's progress. A cancelled job stays cancelled.
    pub fn update_job_as(
        &self,
        owner: &str,
        org_id: &str,
        job_id: &str,
        state: JobState,
        progress: &serde_json::Value,
    ) -> Result<bool> {
        self.read(|tx| {
            let n = tx.execute(
                "UPDATE jobs SET state = CASE WHEN state = 'cancelled' AND ?1 != 'queued'
                                              THEN state ELSE ?1 END,
                                 progress = ?2, updated_at = ?3
                 WHERE org_id = ?4 AND id = ?5 AND lease_owner = ?6",
                params![
                    state.name(),
                    progress.to_string(),
                    now_ms(),
                    org_id,
                    job_id,
                    owner
                ],
            )?;
            Ok(n == 1)
        })
    }

    /// Records a job's state and progress. A cancelled job stays cancelled (a worker
    /// finishing its last recording does not undo a cancellation) unless it is queued
    /// again.
    pub fn update_job(
        &self,
        org_id: &str,
        job_id: &str,
        state: JobState,
        progress: &serde_json::Value,
    ) -> Result<()> {
        self.read(|tx| {
            let n = tx.execute(
                "UPDATE jobs SET state = CASE WHEN state = 'cancelled' AND ?1 != 'queued'
                                              THEN state ELSE ?1 END,
                                 progress = ?2, updated_at = ?3
                 WHERE org_id = ?4 AND id = ?5",
                params![state.name(), progress.to_string(), now_ms(), org_id, job_id],
            )?;
            if n == 0 {
                return Err(CatalogueError::Invalid("no such job"));
            }
            Ok(())
        })
    }

    /// Moves a job from one of `from` to `to`, with an audit entry, in one
    /// transaction; `false` (and nothing written) when it is in none of them.
    pub fn transition_job(
        &self,
        org_id: &str,
        job_id: &str,
        from: &[JobState],
        to: JobState,
        actor: &str,
        event: &AuditEvent<'_>,
    ) -> Result<bool> {
        self.write_for(org_id, |tx| {
            let current: Option<String> = tx.query_opt(
                "SELECT state FROM jobs WHERE org_id = ?1 AND id = ?2",
                params![org_id, job_id],
                |row| row.get(0),
            )?;
            let Some(current) = current.as_deref().and_then(JobState::from_name) else {
                return Err(CatalogueError::Invalid("no such job"));
            };
            if !from.contains(&current) {
                return Ok(false);
            }
            tx.execute(
                "UPDATE jobs SET state = ?1, updated_at = ?2 WHERE org_id = ?3 AND id = ?4",
                params![to.name(), now_ms(), org_id, job_id],
            )?;
            append(tx, org_id, actor, event)?;
            Ok(true)
        })
    }
}
