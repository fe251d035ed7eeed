//! The lead's history: every inbound and outbound message.

use super::later::{self, HistoryRow, StepRow};
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
/// others recorded in it (see [`later`]); reads of the history through the same transaction see it.
pub fn record(tx: &mut Tx, m: &NewMessage<'_>, now: i64) {
    tx.later().history.push(row(m, None, now));
}

/// Records the history entry of a reply enqueued with [`super::outbox::enqueue_at_commit`] under
/// `outbox_key`: it gets that row's id, or no entry when the key existed already (a replay).
pub fn record_reply(tx: &mut Tx, m: &NewMessage<'_>, outbox_key: &str, now: i64) {
    tx.later()
        .history
        .push(row(m, Some(outbox_key.to_owned()), now));
}

fn row(m: &NewMessage<'_>, outbox_key: Option<String>, now: i64) -> HistoryRow {
    HistoryRow {
        lead_id: m.lead_id,
        direction: m.direction.to_owned(),
        kind: m.kind.to_owned(),
        text: m.text.map(str::to_owned),
        update_id: m.update_id,
        outbox_id: m.outbox_id,
        outbox_key,
        telegram_message_id: m.telegram_message_id,
        author_id: m.author_id,
        created_at: now,
    }
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
    later::flush(tx).await?;
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
    later::flush(tx).await?;
    with_tx!(tx, |c| {
        sqlx::query("DELETE FROM messages WHERE lead_id = $1")
            .bind(lead_id)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// [`link_delivered_in`] on SQLite: `$1` a JSON array of `[outbox id, Telegram message id]`.
pub(super) const LINK_SQLITE: &str = "UPDATE messages SET telegram_message_id = d.mid
     FROM (SELECT value ->> 0 AS id, value ->> 1 AS mid FROM json_each($1)) AS d
     WHERE messages.outbox_id = d.id";

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
            sqlx::query(LINK_SQLITE)
                .bind(rows)
                .execute(&mut **c)
                .await?;
        }
        Tx::Postgres(c) => {
            // Each id is one entry, found through `messages_outbox`. Without statistics on the
            // table (a new database until autovacuum's first analyze, a minute or more under
            // load) the planner guesses hundreds of entries per id and reads the whole table
            // instead: 15-19 ms per recording at 80,000 entries in the benchmark, against 0.2 ms.
            // Off until the transaction ends; its other statements go by index too.
            sqlx::query("SET LOCAL enable_seqscan = off")
                .execute(&mut **c)
                .await?;
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
