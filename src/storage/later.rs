//! Rows a transaction writes at its commit rather than one statement each: the leads it changed,
//! the replies to a lead, their history entries, the funnel events and the button presses that
//! prove a message delivered. A batch of updates applied in one transaction (a group commit) thus
//! writes each of these tables with one statement.
//!
//! Order is kept: buffered outbox rows are written before any other outbox row of the transaction,
//! and everything is written before the transaction reads the tables back (see [`flush_outbox`] and
//! [`flush`], called by the functions that read or write them directly).

use std::collections::HashMap;

use super::{StorageError, Tx};

/// What a transaction writes at its commit.
#[derive(Debug, Default)]
pub struct Later {
    pub(super) leads: super::leads::Cache,
    pub(super) outbox: Vec<OutboxRow>,
    pub(super) history: Vec<HistoryRow>,
    pub(super) steps: Vec<StepRow>,
    /// Button presses that may prove a message delivered (see `outbox::record_pressed`).
    pub(super) presses: Vec<PressRow>,
    /// Chats this transaction enqueued a message in that waits (`queued`) behind another.
    pub(super) queued_chats: Vec<i64>,
}

#[derive(Debug, serde::Serialize)]
pub(super) struct PressRow {
    pub chat_id: i64,
    pub message_id: i64,
    /// The button's data as a stored action spells it (a JSON string).
    pub button: String,
    pub at: i64,
    /// Whether a row being sent may be proved (PostgreSQL; see `outbox::record_pressed`).
    #[serde(skip)]
    pub sending_too: bool,
}

#[derive(Debug, serde::Serialize)]
pub(super) struct OutboxRow {
    pub idempotency_key: String,
    pub lead_id: Option<i64>,
    pub chat_id: i64,
    pub action: String,
    pub in_order: bool,
    pub now: i64,
}

#[derive(Debug, serde::Serialize)]
pub(super) struct HistoryRow {
    pub lead_id: i64,
    pub direction: String,
    pub kind: String,
    pub text: Option<String>,
    pub update_id: Option<i64>,
    pub outbox_id: Option<i64>,
    /// The entry of a reply still buffered: its outbox row's key, resolved to the row's id when
    /// that is written. A reply whose key existed already (a replay) gets no entry.
    #[serde(skip)]
    pub outbox_key: Option<String>,
    pub telegram_message_id: Option<i64>,
    pub author_id: Option<i64>,
    pub created_at: i64,
}

#[derive(Debug, serde::Serialize)]
pub(super) struct StepRow {
    pub lead_id: i64,
    pub dialogue_id: String,
    pub step: String,
    pub created_at: i64,
}

/// Writes everything buffered: the changed leads, then in the order they were recorded the outbox
/// rows, the history entries (which need the outbox ids) and the funnel events.
pub(super) async fn flush(tx: &mut Tx) -> Result<(), StorageError> {
    super::leads::flush(tx).await?;
    flush_outbox(tx).await?;
    let history = std::mem::take(&mut tx.later().history);
    if !history.is_empty() {
        insert_history(tx, &history).await?;
    }
    let steps = std::mem::take(&mut tx.later().steps);
    if !steps.is_empty() {
        insert_steps(tx, &steps).await?;
    }
    Ok(())
}

/// Records the deliveries buffered button presses prove (before the rows they release are
/// written: those are then `pending`, not `queued`), writes the buffered outbox rows and gives the
/// history entries of replies their rows' ids.
pub(super) async fn flush_outbox(tx: &mut Tx) -> Result<(), StorageError> {
    if !tx.later().presses.is_empty() {
        let presses = std::mem::take(&mut tx.later().presses);
        super::outbox::record_presses(tx, &presses).await?;
    }
    if tx.later().outbox.is_empty() {
        return Ok(());
    }
    let rows = std::mem::take(&mut tx.later().outbox);
    let inserted = insert_outbox(tx, &rows).await?;
    let later = tx.later();
    later.queued_chats.extend(
        inserted
            .values()
            .filter(|row| row.queued)
            .map(|row| row.chat_id),
    );
    let history = &mut later.history;
    history.retain_mut(|h| match h.outbox_key.take() {
        None => true,
        Some(key) => match inserted.get(&key) {
            Some(row) => {
                h.outbox_id = Some(row.id);
                true
            }
            None => false,
        },
    });
    Ok(())
}

pub(super) fn to_json<T: serde::Serialize>(rows: &T) -> Result<String, StorageError> {
    serde_json::to_string(rows).map_err(|e| StorageError::Corrupt(e.to_string()))
}

/// An outbox row just written.
#[derive(Debug)]
pub(super) struct Inserted {
    pub id: i64,
    pub chat_id: i64,
    /// Waiting behind an undelivered row of its chat.
    pub queued: bool,
}

/// Inserts outbox rows in order; a key that exists already is skipped. The new rows by key.
async fn insert_outbox(
    tx: &mut Tx,
    rows: &[OutboxRow],
) -> Result<HashMap<String, Inserted>, StorageError> {
    let new: Vec<(i64, String, i64, bool)> =
        match tx {
            Tx::Sqlite(c) => {
                // json_each walks the array in order, so ids follow the order of recording. Each
                // row's object is rendered as text once (a materialised CTE) rather than once per
                // field read from it; the same goes for the statements below.
                sqlx::query_as(
                    "WITH r AS MATERIALIZED (SELECT key, value AS v FROM json_each($1))
                 INSERT INTO outbox (idempotency_key, lead_id, chat_id, action, in_order, status,
                                     next_attempt_at, created_at)
                 SELECT v ->> 'idempotency_key', v ->> 'lead_id', v ->> 'chat_id',
                        v ->> 'action', v ->> 'in_order',
                        CASE WHEN v ->> 'in_order' AND EXISTS (
                                 SELECT 1 FROM outbox p WHERE p.chat_id = v ->> 'chat_id'
                                   AND p.in_order AND p.status IN ('queued', 'pending', 'sending'))
                             THEN 'queued' ELSE 'pending' END,
                        v ->> 'now', v ->> 'now'
                 FROM r WHERE true ORDER BY key
                 ON CONFLICT (idempotency_key) DO NOTHING
                 RETURNING id, idempotency_key, chat_id, status = 'queued'",
                )
                .bind(to_json(&rows)?)
                .fetch_all(&mut **c)
                .await?
            }
            Tx::Postgres(c) => sqlx::query_as(
                "INSERT INTO outbox (idempotency_key, lead_id, chat_id, action, in_order, status,
                                     next_attempt_at, created_at)
                 SELECT k, l, c, a, o,
                        CASE WHEN o AND EXISTS (
                                 SELECT 1 FROM outbox p WHERE p.chat_id = c AND p.in_order
                                   AND p.status IN ('queued', 'pending', 'sending'))
                             THEN 'queued' ELSE 'pending' END,
                        t, t
                 FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[], $4::TEXT[], $5::BOOLEAN[],
                             $6::BIGINT[]) WITH ORDINALITY AS r (k, l, c, a, o, t, n)
                 ORDER BY n
                 ON CONFLICT (idempotency_key) DO NOTHING
                 RETURNING id, idempotency_key, chat_id, status = 'queued'",
            )
            .bind(
                rows.iter()
                    .map(|r| r.idempotency_key.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|r| r.lead_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.chat_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.action.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.in_order).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.now).collect::<Vec<_>>())
            .fetch_all(&mut **c)
            .await?,
        };
    Ok(new
        .into_iter()
        .map(|(id, key, chat_id, queued)| {
            (
                key,
                Inserted {
                    id,
                    chat_id,
                    queued,
                },
            )
        })
        .collect())
}

async fn insert_history(tx: &mut Tx, rows: &[HistoryRow]) -> Result<(), StorageError> {
    match tx {
        Tx::Sqlite(c) => {
            sqlx::query(
                "WITH r AS MATERIALIZED (SELECT key, value AS v FROM json_each($1))
                 INSERT INTO messages (lead_id, direction, kind, text, update_id, outbox_id,
                                       telegram_message_id, author_id, created_at)
                 SELECT v ->> 'lead_id', v ->> 'direction', v ->> 'kind',
                        v ->> 'text', v ->> 'update_id', v ->> 'outbox_id',
                        v ->> 'telegram_message_id', v ->> 'author_id',
                        v ->> 'created_at'
                 FROM r ORDER BY key",
            )
            .bind(to_json(&rows)?)
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
            sqlx::query(
                "WITH r AS MATERIALIZED (SELECT key, value AS v FROM json_each($1))
                 INSERT INTO step_events (lead_id, dialogue_id, step, created_at)
                 SELECT v ->> 'lead_id', v ->> 'dialogue_id', v ->> 'step',
                        v ->> 'created_at'
                 FROM r ORDER BY key",
            )
            .bind(to_json(&rows)?)
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
