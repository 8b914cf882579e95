//! Background jobs (rewrap and export): their parameters and progress live in the
//! catalogue, so a job survives a restart and resumes where it stopped.

use rusqlite::{OptionalExtension, params};
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

fn job_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
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
        crate::blocking(|| {
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
            let mut conn = self.conn();
            let tx = conn.transaction()?;
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
            append(&tx, org_id, actor, event)?;
            tx.commit()?;
            Ok(job)
        })
    }

    /// One job of an organisation.
    pub fn job(&self, org_id: &str, job_id: &str) -> Result<Option<Job>> {
        crate::blocking(|| {
            Ok(self
                .conn()
                .query_row(
                    &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE org_id = ?1 AND id = ?2"),
                    params![org_id, job_id],
                    job_row,
                )
                .optional()?)
        })
    }

    /// The organisation's jobs, newest first.
    pub fn list_jobs(&self, org_id: &str) -> Result<Vec<Job>> {
        crate::blocking(|| {
            let conn = self.conn();
            let mut stmt = conn.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE org_id = ?1 ORDER BY created_at DESC, rowid DESC LIMIT 1000"
            ))?;
            let rows = stmt.query_map(params![org_id], job_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Every job of any organisation that has not finished, oldest first: what a
    /// starting server resumes.
    pub fn unfinished_jobs(&self) -> Result<Vec<Job>> {
        crate::blocking(|| {
            let conn = self.conn();
            let mut stmt = conn.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ('queued', 'running')
                 ORDER BY created_at, rowid"
            ))?;
            let rows = stmt.query_map([], job_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
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
        crate::blocking(|| {
            let conn = self.conn();
            let n = conn.execute(
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
        crate::blocking(|| {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let current: Option<String> = tx
                .query_row(
                    "SELECT state FROM jobs WHERE org_id = ?1 AND id = ?2",
                    params![org_id, job_id],
                    |row| row.get(0),
                )
                .optional()?;
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
            append(&tx, org_id, actor, event)?;
            tx.commit()?;
            Ok(true)
        })
    }
}
