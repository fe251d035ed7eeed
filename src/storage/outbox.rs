//! The durable outbox: side effects enqueued with the state change that caused them.

use super::{Db, StorageError, Tx, with_db, with_tx};

/// An outbox row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Row {
    pub id: i64,
    pub idempotency_key: String,
    pub lead_id: Option<i64>,
    pub chat_id: i64,
    pub action: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub telegram_message_id: Option<i64>,
}

const COLUMNS: &str = "id, idempotency_key, lead_id, chat_id, action, status, attempts, next_attempt_at, \
                       last_error, telegram_message_id";

/// Enqueues an action; a second row with the same idempotency key is ignored. Returns the row id
/// when it was new.
pub async fn enqueue(
    tx: &mut Tx,
    key: &str,
    lead_id: Option<i64>,
    chat_id: i64,
    action_json: &str,
    now: i64,
) -> Result<Option<i64>, StorageError> {
    let row: Option<(i64,)> = with_tx!(tx, |c| {
        sqlx::query_as(
            "INSERT INTO outbox (idempotency_key, lead_id, chat_id, action, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        )
        .bind(key)
        .bind(lead_id)
        .bind(chat_id)
        .bind(action_json)
        .bind(now)
        .fetch_optional(c)
        .await
    })?;
    Ok(row.map(|(id,)| id))
}

/// Claims due rows: for each chat only its oldest undelivered row, so a chat's messages keep their
/// order. Claimed rows are `sending` until their outcome is recorded.
pub async fn claim_due(db: &Db, now: i64, limit: i64) -> Result<Vec<Row>, StorageError> {
    let pick = "SELECT o.id FROM outbox o
                WHERE o.status = 'pending' AND o.next_attempt_at <= $1
                  AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.chat_id = o.chat_id AND p.id < o.id
                                  AND p.status IN ('pending', 'sending'))
                ORDER BY o.id LIMIT $2";
    Ok(match db {
        Db::Sqlite(_) => {
            // Through the single writer, so the claim queues rather than meeting the busy handler.
            let mut tx = db.begin().await?;
            let rows = with_tx!(&mut tx, |c| {
                sqlx::query_as::<_, Row>(&format!(
                    "UPDATE outbox SET status = 'sending', attempts = attempts + 1
                     WHERE id IN ({pick}) RETURNING {COLUMNS}"
                ))
                .bind(now)
                .bind(limit)
                .fetch_all(c)
                .await
            })?;
            tx.commit().await?;
            rows
        }
        Db::Postgres(p) => {
            sqlx::query_as::<_, Row>(&format!(
                "UPDATE outbox SET status = 'sending', attempts = attempts + 1
                 WHERE id IN ({pick} FOR UPDATE SKIP LOCKED) RETURNING {COLUMNS}"
            ))
            .bind(now)
            .bind(limit)
            .fetch_all(p)
            .await?
        }
    })
}

/// Records a delivery: the single write that closes the duplicate window.
pub async fn mark_sent(
    db: &Db,
    id: i64,
    message_id: Option<i64>,
    now: i64,
) -> Result<(), StorageError> {
    with_db!(db, |c| {
        sqlx::query(
            "UPDATE outbox SET status = 'sent', sent_at = $1, telegram_message_id = $2, last_error = NULL
             WHERE id = $3",
        )
        .bind(now)
        .bind(message_id)
        .bind(id)
        .execute(c).await.map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// What became of a claimed row.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Telegram accepted it (with the message id, when a message was sent).
    Sent { message_id: Option<i64>, at: i64 },
    /// Another attempt at `at`.
    Retry { at: i64, error: String },
    /// Given up; `blocked` when the user blocked the bot (the lead is marked so).
    Failed { error: String, blocked: bool },
}

/// A claimed row and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: i64,
    pub chat_id: i64,
    pub outcome: Outcome,
}

/// Records the outcomes of several deliveries in one transaction (one commit for a group of
/// sends): the row's status, the Telegram message id on the lead's history, a block on the lead.
pub async fn record_deliveries(db: &Db, done: &[Delivery]) -> Result<(), StorageError> {
    let mut tx = db.begin().await?;
    // PostgreSQL: the sent rows (nearly all) in two set-based statements rather than two round
    // trips per row; SQLite's statements cost no round trip.
    let set_based = matches!(tx, Tx::Postgres(_));
    if set_based {
        let sent: Vec<&Delivery> = done
            .iter()
            .filter(|d| matches!(d.outcome, Outcome::Sent { .. }))
            .collect();
        record_sent_set(&mut tx, &sent).await?;
    }
    let others = done
        .iter()
        .filter(|d| !(set_based && matches!(d.outcome, Outcome::Sent { .. })));
    for d in others {
        match &d.outcome {
            Outcome::Sent { message_id, at } => {
                with_tx!(&mut tx, |c| {
                    sqlx::query(
                        "UPDATE outbox SET status = 'sent', sent_at = $1, telegram_message_id = $2, last_error = NULL
                         WHERE id = $3",
                    )
                    .bind(at)
                    .bind(message_id)
                    .bind(d.id)
                    .execute(c).await.map(|r| r.rows_affected())
                })?;
                if let Some(mid) = message_id {
                    with_tx!(&mut tx, |c| {
                        sqlx::query(
                            "UPDATE messages SET telegram_message_id = $1 WHERE outbox_id = $2",
                        )
                        .bind(mid)
                        .bind(d.id)
                        .execute(c)
                        .await
                        .map(|r| r.rows_affected())
                    })?;
                }
            }
            Outcome::Retry { at, error } => {
                with_tx!(&mut tx, |c| {
                    sqlx::query("UPDATE outbox SET status = 'pending', next_attempt_at = $1, last_error = $2 WHERE id = $3")
                        .bind(at)
                        .bind(error)
                        .bind(d.id)
                        .execute(c).await.map(|r| r.rows_affected())
                })?;
            }
            Outcome::Failed { error, blocked } => {
                with_tx!(&mut tx, |c| {
                    sqlx::query(
                        "UPDATE outbox SET status = 'failed', last_error = $1 WHERE id = $2",
                    )
                    .bind(error)
                    .bind(d.id)
                    .execute(c)
                    .await
                    .map(|r| r.rows_affected())
                })?;
                if *blocked {
                    with_tx!(&mut tx, |c| {
                        sqlx::query("UPDATE leads SET blocked = TRUE WHERE chat_id = $1")
                            .bind(d.chat_id)
                            .execute(c)
                            .await
                            .map(|r| r.rows_affected())
                    })?;
                }
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Marks sent rows and links their messages with one statement each (PostgreSQL arrays).
async fn record_sent_set(tx: &mut Tx, sent: &[&Delivery]) -> Result<(), StorageError> {
    let Tx::Postgres(t) = tx else {
        return Ok(());
    };
    if sent.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(sent.len());
    let mut mids = Vec::with_capacity(sent.len());
    let mut ats = Vec::with_capacity(sent.len());
    for d in sent {
        if let Outcome::Sent { message_id, at } = &d.outcome {
            ids.push(d.id);
            // Telegram's message ids are positive; 0 stands for "no message".
            mids.push(message_id.unwrap_or(0));
            ats.push(*at);
        }
    }
    sqlx::query(
        "UPDATE outbox o SET status = 'sent', sent_at = v.at, telegram_message_id = NULLIF(v.mid, 0),
                last_error = NULL
         FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BIGINT[]) AS v(id, mid, at)
         WHERE o.id = v.id",
    )
    .bind(&ids)
    .bind(&mids)
    .bind(&ats)
    .execute(&mut **t)
    .await?;
    sqlx::query(
        "UPDATE messages m SET telegram_message_id = v.mid
         FROM UNNEST($1::BIGINT[], $2::BIGINT[]) AS v(oid, mid)
         WHERE m.outbox_id = v.oid AND v.mid <> 0",
    )
    .bind(&ids)
    .bind(&mids)
    .execute(&mut **t)
    .await?;
    Ok(())
}

/// Puts a row back for another attempt at `at`.
pub async fn retry_at(db: &Db, id: i64, at: i64, error: &str) -> Result<(), StorageError> {
    with_db!(db, |c| {
        sqlx::query("UPDATE outbox SET status = 'pending', next_attempt_at = $1, last_error = $2 WHERE id = $3")
            .bind(at)
            .bind(error)
            .bind(id)
            .execute(c).await.map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Gives a row up (`failed`: Telegram refused it for good, or the user blocked the bot).
pub async fn mark_failed(db: &Db, id: i64, error: &str) -> Result<(), StorageError> {
    with_db!(db, |c| {
        sqlx::query("UPDATE outbox SET status = 'failed', last_error = $1 WHERE id = $2")
            .bind(error)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// After a restart: rows that were being sent when the process stopped are sent again. This is
/// the documented duplicate window (Telegram accepted, the bot had not yet recorded it).
pub async fn requeue_in_flight(db: &Db) -> Result<u64, StorageError> {
    let r = with_db!(db, |c| {
        sqlx::query("UPDATE outbox SET status = 'pending' WHERE status = 'sending'")
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(r)
}

/// The earliest time a pending row is due, if any.
pub async fn next_due(db: &Db) -> Result<Option<i64>, StorageError> {
    let (t,): (Option<i64>,) = with_db!(db, |c| {
        sqlx::query_as("SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'")
            .fetch_one(c)
            .await
    })?;
    Ok(t)
}

/// Rows by status, for tests and metrics.
pub async fn count_by_status(db: &Db, status: &str) -> Result<i64, StorageError> {
    let (n,): (i64,) = with_db!(db, |c| {
        sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE status = $1")
            .bind(status)
            .fetch_one(c)
            .await
    })?;
    Ok(n)
}

/// A row by idempotency key.
pub async fn by_key(db: &Db, key: &str) -> Result<Option<Row>, StorageError> {
    Ok(with_db!(db, |c| {
        sqlx::query_as::<_, Row>(&format!(
            "SELECT {COLUMNS} FROM outbox WHERE idempotency_key = $1"
        ))
        .bind(key)
        .fetch_optional(c)
        .await
    })?)
}

/// Drops undelivered rows of a lead (`/forget`), except the confirmation about to be sent.
pub async fn drop_pending_for_lead(tx: &mut Tx, lead_id: i64) -> Result<(), StorageError> {
    with_tx!(tx, |c| {
        sqlx::query("DELETE FROM outbox WHERE lead_id = $1 AND status = 'pending'")
            .bind(lead_id)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// The lead a delivered message in a chat belongs to (a card or a relayed message).
pub async fn lead_of_message(
    db: &Db,
    chat_id: i64,
    message_id: i64,
) -> Result<Option<i64>, StorageError> {
    let row: Option<(Option<i64>,)> = with_db!(db, |c| {
        sqlx::query_as(
            "SELECT lead_id FROM outbox WHERE chat_id = $1 AND telegram_message_id = $2 AND lead_id IS NOT NULL
             ORDER BY id DESC LIMIT 1",
        )
        .bind(chat_id)
        .bind(message_id)
        .fetch_optional(c)
        .await
    })?;
    Ok(row.and_then(|(l,)| l))
}
