//! Lead events for the CRM webhook: enqueued with the change that caused them, delivered in
//! order per lead by the CRM worker, retried until the receiver takes them.

use super::{Db, StorageError, Tx, with_db, with_tx, write_db};

/// A CRM event row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Event {
    pub id: i64,
    pub idempotency_key: String,
    pub event: String,
    pub lead_id: i64,
    pub payload: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
}

const COLUMNS: &str = "id, idempotency_key, event, lead_id, payload, status, attempts, next_attempt_at, last_error, created_at";

/// Enqueues an event; a second one with the same key is ignored. True when new.
pub async fn enqueue(
    tx: &mut Tx,
    key: &str,
    event: &str,
    lead_id: i64,
    payload: &str,
    now: i64,
) -> Result<bool, StorageError> {
    let n = with_tx!(tx, |c| {
        sqlx::query(
        "INSERT INTO crm_events (idempotency_key, event, lead_id, payload, next_attempt_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (idempotency_key) DO NOTHING"
    )
    .bind(key)
    .bind(event)
    .bind(lead_id)
    .bind(payload)
    .bind(now)
    .execute(c)
    .await
    .map(|r| r.rows_affected())
    })?;
    Ok(n == 1)
}

/// Claims due events for `owner`: per lead only the oldest undelivered one, so a CRM sees a
/// lead's events in order. Claimed rows are `sending` until the outcome is recorded.
pub async fn claim_due(
    db: &Db,
    now: i64,
    limit: i64,
    owner: i64,
) -> Result<Vec<Event>, StorageError> {
    let pick = "SELECT e.id FROM crm_events e
                WHERE e.status = 'pending' AND e.next_attempt_at <= $1
                  AND NOT EXISTS (SELECT 1 FROM crm_events p WHERE p.lead_id = e.lead_id AND p.id < e.id
                                  AND p.status IN ('pending', 'sending'))
                ORDER BY e.id LIMIT $2";
    let lock = if db.is_postgres() {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE crm_events SET status = 'sending', attempts = attempts + 1, claimed_by = $3
         WHERE id IN ({pick}{lock}) RETURNING {COLUMNS}"
    );
    Ok(with_db!(db, |c| sqlx::query_as::<_, Event>(&sql)
        .bind(now)
        .bind(limit)
        .bind(owner)
        .fetch_all(c)
        .await)?)
}

/// Records a delivery.
pub async fn mark_delivered(db: &Db, id: i64, now: i64) -> Result<(), StorageError> {
    write_db!(db, |c| {
        sqlx::query(
        "UPDATE crm_events SET status = 'delivered', delivered_at = $1, last_error = NULL, claimed_by = NULL
         WHERE id = $2"
    )
    .bind(now)
    .bind(id)
    .execute(c)
    .await
    .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Puts an event back for another attempt at `at`.
pub async fn retry_at(db: &Db, id: i64, at: i64, error: &str) -> Result<(), StorageError> {
    write_db!(db, |c| {
        sqlx::query(
        "UPDATE crm_events SET status = 'pending', next_attempt_at = $1, last_error = $2, claimed_by = NULL
         WHERE id = $3"
    )
    .bind(at)
    .bind(error)
    .bind(id)
    .execute(c)
    .await
    .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Gives an event up (it waited longer than the retention window).
pub async fn mark_failed(db: &Db, id: i64, error: &str) -> Result<(), StorageError> {
    write_db!(db, |c| sqlx::query(
        "UPDATE crm_events SET status = 'failed', last_error = $1, claimed_by = NULL WHERE id = $2"
    )
    .bind(error)
    .bind(id)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The earliest time a pending event is due.
pub async fn next_due(db: &Db) -> Result<Option<i64>, StorageError> {
    let (t,): (Option<i64>,) = with_db!(db, |c| sqlx::query_as(
        "SELECT MIN(next_attempt_at) FROM crm_events WHERE status = 'pending'"
    )
    .fetch_one(c)
    .await)?;
    Ok(t)
}

/// Every event, oldest first (tests and support).
pub async fn all(db: &Db) -> Result<Vec<Event>, StorageError> {
    Ok(with_db!(db, |c| sqlx::query_as::<_, Event>(&format!(
        "SELECT {COLUMNS} FROM crm_events ORDER BY id"
    ))
    .fetch_all(c)
    .await)?)
}

/// Drops a lead's undelivered events (`/forget`: they carry the data being erased). An event on
/// the wire right now finishes that one attempt; its outcome then updates nothing.
pub async fn drop_pending_for_lead(tx: &mut Tx, lead_id: i64) -> Result<u64, StorageError> {
    Ok(with_tx!(tx, |c| sqlx::query(
        "DELETE FROM crm_events WHERE lead_id = $1 AND status IN ('pending', 'sending')"
    )
    .bind(lead_id)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?)
}
