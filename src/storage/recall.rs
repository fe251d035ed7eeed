//! Recalls: a broadcast's sent messages deleted by the running bot, within the 48 hours
//! Telegram allows.

use super::broadcasts::cancel_in;
use super::{Db, StorageError, Tx, with_db, with_tx, write_db};

/// What a recall request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecallRequest {
    /// Messages that will be deleted.
    pub to_delete: i64,
    /// Messages sent more than 48 hours ago, which Telegram no longer lets a bot delete.
    pub too_late: i64,
}

/// How long after sending a message can still be deleted.
pub const RECALL_WINDOW_MS: i64 = 48 * 3_600_000;

/// Asks for a broadcast's sent messages to be deleted (the running bot does it); a running
/// broadcast is cancelled first.
pub async fn request_recall(db: &Db, id: i64, now: i64) -> Result<RecallRequest, StorageError> {
    let mut tx = db.begin().await?;
    let r = request_recall_in(&mut tx, id, now).await?;
    tx.commit().await?;
    Ok(r)
}

/// [`request_recall`] inside a transaction.
pub async fn request_recall_in(
    tx: &mut Tx,
    id: i64,
    now: i64,
) -> Result<RecallRequest, StorageError> {
    cancel_in(tx, id, now).await?;
    with_tx!(tx, |c| {
        sqlx::query(
            "UPDATE broadcasts SET recall_requested_at = COALESCE(recall_requested_at, $1) WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    let to_delete = with_tx!(tx, |c| {
        sqlx::query(
            "UPDATE broadcast_recipients SET recall = 'pending' WHERE broadcast_id = $1 AND status = 'sent'
             AND recall IS NULL AND telegram_message_id IS NOT NULL AND sent_at > $2",
        )
        .bind(id)
        .bind(now - RECALL_WINDOW_MS)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    let too_late = with_tx!(tx, |c| {
        sqlx::query(
            "UPDATE broadcast_recipients SET recall = 'too_late' WHERE broadcast_id = $1 AND status = 'sent'
             AND recall IS NULL",
        )
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(RecallRequest {
        to_delete: i64::try_from(to_delete).unwrap_or(0),
        too_late: i64::try_from(too_late).unwrap_or(0),
    })
}

/// A message to delete.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ToDelete {
    pub id: i64,
    pub broadcast_id: i64,
    pub chat_id: i64,
    pub telegram_message_id: i64,
    pub sent_at: i64,
}

/// Whether any deletion is waiting (a cheap read before [`claim_recall`]'s write).
pub async fn recall_waiting(db: &Db) -> Result<bool, StorageError> {
    let row: Option<(i64,)> = with_db!(db, |c| {
        sqlx::query_as("SELECT id FROM broadcast_recipients WHERE recall = 'pending' LIMIT 1")
            .fetch_optional(c)
            .await
    })?;
    Ok(row.is_some())
}

/// Claims messages whose deletion was asked (`deleting`, committed before the request).
pub async fn claim_recall(db: &Db, limit: i64) -> Result<Vec<ToDelete>, StorageError> {
    let pick = "SELECT id FROM broadcast_recipients WHERE recall = 'pending' ORDER BY id LIMIT $1";
    let ret = "RETURNING id, broadcast_id, chat_id, COALESCE(telegram_message_id, 0) AS telegram_message_id, \
               COALESCE(sent_at, 0) AS sent_at";
    Ok(match db {
        Db::Sqlite(p) => {
            // Behind the write gate: see `write_db!`.
            let _gate = super::sqlite_write_turn(p).await?;
            sqlx::query_as::<_, ToDelete>(&format!(
                "UPDATE broadcast_recipients SET recall = 'deleting' WHERE id IN ({pick}) {ret}"
            ))
            .bind(limit)
            .fetch_all(p)
            .await?
        }
        Db::Postgres(p) => {
            sqlx::query_as::<_, ToDelete>(&format!(
                "UPDATE broadcast_recipients SET recall = 'deleting' WHERE id IN ({pick} FOR UPDATE SKIP LOCKED) {ret}"
            ))
            .bind(limit)
            .fetch_all(p)
            .await?
        }
    })
}

/// Records how a deletion ended (`done`, `failed`, `too_late`) or puts it back (`pending`).
pub async fn set_recall(db: &Db, id: i64, state: &str) -> Result<(), StorageError> {
    write_db!(db, |c| {
        sqlx::query("UPDATE broadcast_recipients SET recall = $1 WHERE id = $2")
            .bind(state)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Deletions interrupted by a stop are tried again (deleting twice is harmless).
pub async fn requeue_recall(db: &Db) -> Result<u64, StorageError> {
    Ok(write_db!(db, |c| {
        sqlx::query("UPDATE broadcast_recipients SET recall = 'pending' WHERE recall = 'deleting'")
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?)
}
