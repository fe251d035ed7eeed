//! The lead's history: every inbound and outbound message.

use super::{Db, StorageError, Tx, with_db, with_tx};

/// A history entry to record.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub lead_id: i64,
    /// `in` (from the prospect), `out` (from the bot), `staff` (a manager's action or reply).
    pub direction: &'a str,
    /// `text`, `contact`, `sticker`, `photo`, `callback`, `command`, `edited`...
    pub kind: &'a str,
    pub text: Option<&'a str>,
    pub update_id: Option<i64>,
    pub outbox_id: Option<i64>,
    pub telegram_message_id: Option<i64>,
    pub author_id: Option<i64>,
}

/// A stored history entry.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Message {
    pub id: i64,
    pub lead_id: i64,
    pub direction: String,
    pub kind: String,
    pub text: Option<String>,
    pub update_id: Option<i64>,
    pub outbox_id: Option<i64>,
    pub telegram_message_id: Option<i64>,
    pub author_id: Option<i64>,
    pub created_at: i64,
}

/// Records a history entry. It is written when the transaction commits, together with the
/// others recorded in it (one statement instead of one per entry); reads of the history through
/// the same transaction see it.
pub fn record(tx: &mut Tx, m: &NewMessage<'_>, now: i64) {
    tx.later().history.push(HistoryRow {
        lead_id: m.lead_id,
        direction: m.direction.to_owned(),
        kind: m.kind.to_owned(),
        text: m.text.map(str::to_owned),
        update_id: m.update_id,
        outbox_id: m.outbox_id,
        telegram_message_id: m.telegram_message_id,
        author_id: m.author_id,
        created_at: now,
    });
}

/// History entries and funnel events recorded in a transaction, written at its commit: a batch
/// of updates applied in one transaction writes each table with one statement.
#[derive(Debug, Default)]
pub struct Later {
    history: Vec<HistoryRow>,
    steps: Vec<StepRow>,
}

#[derive(Debug, serde::Serialize)]
struct HistoryRow {
    lead_id: i64,
    direction: String,
    kind: String,
    text: Option<String>,
    update_id: Option<i64>,
    outbox_id: Option<i64>,
    telegram_message_id: Option<i64>,
    author_id: Option<i64>,
    created_at: i64,
}

#[derive(Debug, serde::Serialize)]
struct StepRow {
    lead_id: i64,
    dialogue_id: String,
    step: String,
    created_at: i64,
}

/// Writes the rows left for the commit, in the order they were recorded.
pub(super) async fn flush(tx: &mut Tx) -> Result<(), StorageError> {
    let later = std::mem::take(tx.later());
    if !later.history.is_empty() {
        insert_history(tx, &later.history).await?;
    }
    if !later.steps.is_empty() {
        insert_steps(tx, &later.steps).await?;
    }
    Ok(())
}

async fn insert_history(tx: &mut Tx, rows: &[HistoryRow]) -> Result<(), StorageError> {
    match tx {
        Tx::Sqlite(c) => {
            // json_each walks the array in order, so ids follow the order of recording.
            let json =
                serde_json::to_string(rows).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            sqlx::query(
                "INSERT INTO messages (lead_id, direction, kind, text, update_id, outbox_id,
                                       telegram_message_id, author_id, created_at)
                 SELECT value ->> 'lead_id', value ->> 'direction', value ->> 'kind',
                        value ->> 'text', value ->> 'update_id', value ->> 'outbox_id',
                        value ->> 'telegram_message_id', value ->> 'author_id',
                        value ->> 'created_at'
                 FROM json_each($1) ORDER BY key",
            )
            .bind(json)
            .execute(&mut **c)
            .await?;
        }
        Tx::Postgres(c) => {
            sqlx::query(
                "INSERT INTO messages (lead_id, direction, kind, text, update_id, outbox_id,
                                       telegram_message_id, author_id, created_at)
                 SELECT lead_id, direction, kind, text, update_id, outbox_id,
                        telegram_message_id, author_id, created_at
                 FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[],
                             $6::BIGINT[], $7::BIGINT[], $8::BIGINT[], $9::BIGINT[])
                      WITH ORDINALITY AS r (lead_id, direction, kind, text, update_id, outbox_id,
                                            telegram_message_id, author_id, created_at, n)
                 ORDER BY n",
            )
            .bind(rows.iter().map(|r| r.lead_id).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|r| r.direction.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.text.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.update_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.outbox_id).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|r| r.telegram_message_id)
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|r| r.author_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
            .execute(&mut **c)
            .await?;
        }
    }
    Ok(())
}

async fn insert_steps(tx: &mut Tx, rows: &[StepRow]) -> Result<(), StorageError> {
    match tx {
        Tx::Sqlite(c) => {
            let json =
                serde_json::to_string(rows).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            sqlx::query(
                "INSERT INTO step_events (lead_id, dialogue_id, step, created_at)
                 SELECT value ->> 'lead_id', value ->> 'dialogue_id', value ->> 'step',
                        value ->> 'created_at'
                 FROM json_each($1) ORDER BY key",
            )
            .bind(json)
            .execute(&mut **c)
            .await?;
        }
        Tx::Postgres(c) => {
            sqlx::query(
                "INSERT INTO step_events (lead_id, dialogue_id, step, created_at)
                 SELECT lead_id, dialogue_id, step, created_at
                 FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[])
                      WITH ORDINALITY AS r (lead_id, dialogue_id, step, created_at, n)
                 ORDER BY n",
            )
            .bind(rows.iter().map(|r| r.lead_id).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|r| r.dialogue_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|r| r.step.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
            .execute(&mut **c)
            .await?;
        }
    }
    Ok(())
}

/// A lead's history, oldest first (the last `limit` entries).
pub async fn history(db: &Db, lead_id: i64, limit: i64) -> Result<Vec<Message>, StorageError> {
    let mut rows = with_db!(db, |c| {
        sqlx::query_as::<_, Message>(
            "SELECT id, lead_id, direction, kind, text, update_id, outbox_id, telegram_message_id,
                    author_id, created_at
             FROM messages WHERE lead_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(lead_id)
        .bind(limit)
        .fetch_all(c)
        .await
    })?;
    rows.reverse();
    Ok(rows)
}

/// [`history`] read through a transaction (code holding one must not wait for a second pooled
/// connection: on SQLite that can wait on the writer that waits for it).
pub async fn history_in(
    tx: &mut Tx,
    lead_id: i64,
    limit: i64,
) -> Result<Vec<Message>, StorageError> {
    flush(tx).await?;
    let mut rows = with_tx!(tx, |c| {
        sqlx::query_as::<_, Message>(
            "SELECT id, lead_id, direction, kind, text, update_id, outbox_id, telegram_message_id,
                    author_id, created_at
             FROM messages WHERE lead_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(lead_id)
        .bind(limit)
        .fetch_all(c)
        .await
    })?;
    rows.reverse();
    Ok(rows)
}

/// Erases a lead's history (`/forget`).
pub async fn erase(tx: &mut Tx, lead_id: i64) -> Result<(), StorageError> {
    flush(tx).await?;
    with_tx!(tx, |c| {
        sqlx::query("DELETE FROM messages WHERE lead_id = $1")
            .bind(lead_id)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Links delivered outbox rows to their history entries, `(outbox id, Telegram message id)`,
/// with one statement, inside a transaction.
pub async fn link_delivered_in(tx: &mut Tx, delivered: &[(i64, i64)]) -> Result<(), StorageError> {
    if delivered.is_empty() {
        return Ok(());
    }
    match tx {
        Tx::Sqlite(c) => {
            let rows = serde_json::to_string(delivered)
                .map_err(|e| StorageError::Corrupt(e.to_string()))?;
            sqlx::query(
                "UPDATE messages SET telegram_message_id = d.mid
                 FROM (SELECT value ->> 0 AS id, value ->> 1 AS mid FROM json_each($1)) AS d
                 WHERE messages.outbox_id = d.id",
            )
            .bind(rows)
            .execute(&mut **c)
            .await?;
        }
        Tx::Postgres(c) => {
            let ids: Vec<i64> = delivered.iter().map(|d| d.0).collect();
            let mids: Vec<i64> = delivered.iter().map(|d| d.1).collect();
            sqlx::query(
                "UPDATE messages SET telegram_message_id = d.mid
                 FROM UNNEST($1::BIGINT[], $2::BIGINT[]) AS d (id, mid)
                 WHERE messages.outbox_id = d.id",
            )
            .bind(ids)
            .bind(mids)
            .execute(&mut **c)
            .await?;
        }
    }
    Ok(())
}

/// Records a funnel event: the lead entered a step (written at commit, like [`record`]).
pub fn step_entered(tx: &mut Tx, lead_id: i64, dialogue_id: &str, step: &str, now: i64) {
    tx.later().steps.push(StepRow {
        lead_id,
        dialogue_id: dialogue_id.to_owned(),
        step: step.to_owned(),
        created_at: now,
    });
}
