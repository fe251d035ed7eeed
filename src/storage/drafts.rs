//! The staff chat's `/broadcast` drafts, per chat and manager.

use super::{StorageError, Tx, with_tx};

/// A manager's `/broadcast` draft in a chat, if one was touched since `fresh_after`.
pub async fn get(
    tx: &mut Tx,
    chat_id: i64,
    user_id: i64,
    fresh_after: i64,
) -> Result<Option<String>, StorageError> {
    let row: Option<(String,)> = with_tx!(tx, |c| {
        sqlx::query_as(
            "SELECT draft FROM broadcast_drafts WHERE chat_id = $1 AND user_id = $2 AND updated_at > $3",
        )
        .bind(chat_id)
        .bind(user_id)
        .bind(fresh_after)
        .fetch_optional(c)
        .await
    })?;
    Ok(row.map(|(d,)| d))
}

/// Stores a manager's `/broadcast` draft.
pub async fn set(
    tx: &mut Tx,
    chat_id: i64,
    user_id: i64,
    draft: &str,
    now: i64,
) -> Result<(), StorageError> {
    with_tx!(tx, |c| {
        sqlx::query(
            "INSERT INTO broadcast_drafts (chat_id, user_id, draft, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (chat_id, user_id) DO UPDATE SET draft = excluded.draft, updated_at = excluded.updated_at",
        )
        .bind(chat_id)
        .bind(user_id)
        .bind(draft)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Drops a manager's `/broadcast` draft.
pub async fn delete(tx: &mut Tx, chat_id: i64, user_id: i64) -> Result<(), StorageError> {
    with_tx!(tx, |c| {
        sqlx::query("DELETE FROM broadcast_drafts WHERE chat_id = $1 AND user_id = $2")
            .bind(chat_id)
            .bind(user_id)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(())
}
