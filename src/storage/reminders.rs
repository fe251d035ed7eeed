//! Reminder bookkeeping: per lead, how many nudges were sent since its last inbound message.

use super::{Db, StorageError, Tx, with_db, with_tx};

/// Leads waiting mid-dialogue whose next reminder may be due: not unsubscribed, blocked or
/// erased, silent since a time in `[silent_after, silent_before]`, and not already done for this
/// silence.
pub async fn candidates(
    db: &Db,
    now: i64,
    silent_after: i64,
    silent_before: i64,
    limit: i64,
) -> Result<Vec<i64>, StorageError> {
    let rows: Vec<(i64,)> = with_db!(db, |c| {
        sqlx::query_as(
            "SELECT l.id FROM leads l
             WHERE l.unsubscribed = FALSE AND l.blocked = FALSE AND l.erased = FALSE
               AND l.chat_id IS NOT NULL AND l.dialogue_version IS NOT NULL
               AND l.last_inbound_at IS NOT NULL AND l.last_inbound_at <= $1 AND l.last_inbound_at >= $4
               AND l.session LIKE '%\"at\":\"waiting\"%'
               AND NOT EXISTS (SELECT 1 FROM lead_reminders r WHERE r.lead_id = l.id
                               AND r.last_inbound_at = l.last_inbound_at
                               AND (r.next_at IS NULL OR r.next_at > $2))
             ORDER BY l.last_inbound_at LIMIT $3",
        )
        .bind(silent_before)
        .bind(now)
        .bind(limit)
        .bind(silent_after)
        .fetch_all(c)
        .await
    })?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// How many reminders a lead got since `last_inbound_at` (0 after a newer message).
pub async fn sent_since(
    tx: &mut Tx,
    lead_id: i64,
    last_inbound_at: i64,
) -> Result<u32, StorageError> {
    let row: Option<(i64, i32)> = with_tx!(tx, |c| {
        sqlx::query_as("SELECT last_inbound_at, sent FROM lead_reminders WHERE lead_id = $1")
            .bind(lead_id)
            .fetch_optional(c)
            .await
    })?;
    Ok(match row {
        Some((at, sent)) if at == last_inbound_at => u32::try_from(sent).unwrap_or(0),
        _ => 0,
    })
}

/// Records the reminder state; `next_at` is when the next one is due (`None`: no more).
pub async fn set(
    tx: &mut Tx,
    lead_id: i64,
    last_inbound_at: i64,
    sent: u32,
    next_at: Option<i64>,
    now: i64,
) -> Result<(), StorageError> {
    with_tx!(tx, |c| {
        sqlx::query(
            "INSERT INTO lead_reminders (lead_id, last_inbound_at, sent, next_at, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (lead_id) DO UPDATE SET last_inbound_at = excluded.last_inbound_at,
                sent = excluded.sent, next_at = excluded.next_at, updated_at = excluded.updated_at",
        )
        .bind(lead_id)
        .bind(last_inbound_at)
        .bind(i32::try_from(sent).unwrap_or(i32::MAX))
        .bind(next_at)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(())
}
