//! Broadcasts (limited-time offers): recipients materialised at start, claims in batches,
//! outcomes, clicks, recalls and progress counts. The audience query is in [`super::audience`].

use crate::broadcast::segment::Segment;

pub use super::audience::{Eligibility, audience_size};
use super::audience::{RECEIVED, WEEK_MS, audience_where, bind_all};
pub use super::recall::{
    RECALL_WINDOW_MS, RecallRequest, ToDelete, claim_recall, recall_waiting, request_recall,
    request_recall_in, requeue_recall, set_recall,
};
use super::{Db, StorageError, Tx, with_db, with_tx, write_db};

/// A broadcast as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Broadcast {
    pub id: i64,
    pub text: String,
    pub button: Option<String>,
    pub segment: String,
    pub score: i32,
    pub status: String,
    pub start_at: i64,
    pub expires_at: i64,
    pub created_at: i64,
    pub created_by: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub cancelled_at: Option<i64>,
    pub recall_requested_at: Option<i64>,
    pub total: i32,
    pub paused_until: Option<i64>,
    pub progress_message_id: Option<i64>,
    pub progress_at: Option<i64>,
}

const COLUMNS: &str = "id, text, button, segment, score, status, start_at, expires_at, created_at, \
    created_by, started_at, finished_at, cancelled_at, recall_requested_at, total, paused_until, \
    progress_message_id, progress_at";

/// What `broadcast create` and the staff flow store.
#[derive(Debug, Clone)]
pub struct NewBroadcast<'a> {
    pub text: &'a str,
    pub button: Option<&'a str>,
    pub segment: &'a Segment,
    pub score: i32,
    pub start_at: i64,
    pub expires_at: i64,
    pub created_by: &'a str,
}

/// Stores a new broadcast (status `scheduled`); returns its id.
pub async fn insert(db: &Db, b: &NewBroadcast<'_>, now: i64) -> Result<i64, StorageError> {
    let mut tx = db.begin().await?;
    let id = insert_in(&mut tx, b, now).await?;
    tx.commit().await?;
    Ok(id)
}

/// Stores a new broadcast inside a transaction.
pub async fn insert_in(tx: &mut Tx, b: &NewBroadcast<'_>, now: i64) -> Result<i64, StorageError> {
    let (id,): (i64,) = with_tx!(tx, |c| {
        sqlx::query_as(
            "INSERT INTO broadcasts (text, button, segment, score, start_at, expires_at, created_at, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(b.text)
        .bind(b.button)
        .bind(b.segment.to_string())
        .bind(b.score)
        .bind(b.start_at)
        .bind(b.expires_at)
        .bind(now)
        .bind(b.created_by)
        .fetch_one(c)
        .await
    })?;
    Ok(id)
}

/// A broadcast by id.
pub async fn get(db: &Db, id: i64) -> Result<Option<Broadcast>, StorageError> {
    Ok(with_db!(db, |c| {
        sqlx::query_as::<_, Broadcast>(&format!("SELECT {COLUMNS} FROM broadcasts WHERE id = $1"))
            .bind(id)
            .fetch_optional(c)
            .await
    })?)
}

/// The latest broadcasts, newest first.
pub async fn list(db: &Db, limit: i64) -> Result<Vec<Broadcast>, StorageError> {
    Ok(with_db!(db, |c| {
        sqlx::query_as::<_, Broadcast>(&format!(
            "SELECT {COLUMNS} FROM broadcasts ORDER BY id DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(c)
        .await
    })?)
}

/// Broadcasts in a status, oldest first.
pub async fn with_status(db: &Db, status: &str) -> Result<Vec<Broadcast>, StorageError> {
    Ok(with_db!(db, |c| {
        sqlx::query_as::<_, Broadcast>(&format!(
            "SELECT {COLUMNS} FROM broadcasts WHERE status = $1 ORDER BY id"
        ))
        .bind(status)
        .fetch_all(c)
        .await
    })?)
}

/// Starts a scheduled broadcast: takes it (only one replica can), materialises its recipients
/// from the segment and records the total. Returns the total, or `None` when another replica
/// started it (or it was cancelled) first.
pub async fn start(
    db: &Db,
    id: i64,
    segment: &Segment,
    e: Eligibility,
) -> Result<Option<i64>, StorageError> {
    let mut tx = db.begin().await?;
    let taken = with_tx!(&mut tx, |c| {
        sqlx::query(
            "UPDATE broadcasts SET status = 'running', started_at = $1 WHERE id = $2 AND status = 'scheduled'",
        )
        .bind(e.now)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    if taken != 1 {
        return Ok(None);
    }
    let (cond, binds) = audience_where(segment, e, 3);
    let sql = format!(
        "INSERT INTO broadcast_recipients (broadcast_id, lead_id, chat_id, language_code, next_attempt_at)
         SELECT $1, l.id, l.chat_id, l.language_code, $2 FROM leads l WHERE {cond} ORDER BY l.id"
    );
    let inserted = with_tx!(&mut tx, |c| {
        bind_all!(sqlx::query(&sql).bind(id).bind(e.now), &binds)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?;
    let total = i64::try_from(inserted).unwrap_or(i64::MAX);
    with_tx!(&mut tx, |c| {
        sqlx::query("UPDATE broadcasts SET total = $1 WHERE id = $2")
            .bind(total)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?;
    tx.commit().await?;
    Ok(Some(total))
}

/// A recipient claimed for sending.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Claimed {
    pub id: i64,
    pub lead_id: i64,
    pub chat_id: i64,
    pub attempts: i32,
    pub language_code: Option<String>,
}

/// What a claim took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims {
    /// Recipients now `sending`, committed before any request, in id order.
    pub claimed: Vec<Claimed>,
    /// Recipients that no longer qualify (unsubscribed, blocked, weekly limit...), now `skipped`.
    pub skipped: usize,
}

impl Claims {
    /// True when nothing was due in this broadcast.
    pub fn is_empty(&self) -> bool {
        self.claimed.is_empty() && self.skipped == 0
    }
}

#[derive(Debug, sqlx::FromRow)]
struct ClaimRow {
    id: i64,
    lead_id: i64,
    chat_id: i64,
    attempts: i32,
    language_code: Option<String>,
    status: String,
}

/// Claims up to `limit` due recipients of a broadcast in one committed transaction
/// (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so replicas share the work). Each lead is re-checked
/// at this moment: a lead that unsubscribed, blocked the bot, was erased or reached the weekly
/// limit since the start is `skipped`.
pub async fn claim_due(
    db: &Db,
    broadcast_id: i64,
    e: Eligibility,
    limit: u32,
) -> Result<Claims, StorageError> {
    let pick = "SELECT r.id FROM broadcast_recipients r
                WHERE r.broadcast_id = $1 AND r.status = 'pending' AND r.next_attempt_at <= $2
                ORDER BY r.id LIMIT $5";
    let lock = if db.is_postgres() {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE broadcast_recipients SET
            status = CASE WHEN EXISTS (
                    SELECT 1 FROM leads l WHERE l.id = broadcast_recipients.lead_id
                      AND l.marketing_consent_at IS NOT NULL AND l.unsubscribed = FALSE
                      AND l.blocked = FALSE AND l.erased = FALSE AND l.chat_id IS NOT NULL)
                AND (SELECT COUNT(*) FROM broadcast_recipients o
                      WHERE o.lead_id = broadcast_recipients.lead_id AND o.id <> broadcast_recipients.id
                        AND o.status IN {RECEIVED} AND o.claimed_at >= $3) < $4
                THEN 'sending' ELSE 'skipped' END,
            claimed_at = $2, attempts = attempts + 1
         WHERE id IN ({pick}{lock})
         RETURNING id, lead_id, chat_id, attempts, language_code, status"
    );
    // Through the write gate: on SQLite this queues behind the outcome records rather than
    // sleeping in SQLite's busy handler.
    let mut tx = db.begin().await?;
    let mut rows: Vec<ClaimRow> = with_tx!(&mut tx, |c| {
        sqlx::query_as(&sql)
            .bind(broadcast_id)
            .bind(e.now)
            .bind(e.now - WEEK_MS)
            .bind(i64::from(e.max_per_week))
            .bind(i64::from(limit))
            .fetch_all(c)
            .await
    })?;
    tx.commit().await?;
    rows.sort_by_key(|r| r.id);
    let mut claims = Claims::default();
    for r in rows {
        if r.status == "sending" {
            claims.claimed.push(Claimed {
                id: r.id,
                lead_id: r.lead_id,
                chat_id: r.chat_id,
                attempts: r.attempts,
                language_code: r.language_code,
            });
        } else {
            claims.skipped += 1;
        }
    }
    Ok(claims)
}

/// Records a delivered offer.
pub async fn mark_sent(
    tx: &mut Tx,
    id: i64,
    message_id: Option<i64>,
    now: i64,
) -> Result<(), StorageError> {
    with_tx!(tx, |c| {
        sqlx::query(
            "UPDATE broadcast_recipients SET status = 'sent', sent_at = $1, telegram_message_id = $2,
                last_error = NULL WHERE id = $3 AND status IN ('sending', 'unknown')",
        )
        .bind(now)
        .bind(message_id)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Finished broadcasts whose report should be refreshed (clicks keep coming until expiry).
pub async fn reports_due(
    db: &Db,
    now: i64,
    refresh_ms: i64,
) -> Result<Vec<Broadcast>, StorageError> {
    Ok(with_db!(db, |c| {
        sqlx::query_as::<_, Broadcast>(&format!(
            "SELECT {COLUMNS} FROM broadcasts WHERE status IN ('done', 'cancelled') AND started_at IS NOT NULL
             AND expires_at + $2 > $1 AND (progress_at IS NULL OR progress_at <= $1 - $2) ORDER BY id LIMIT 20"
        ))
        .bind(now)
        .bind(refresh_ms)
        .fetch_all(c)
        .await
    })?)
}

/// Closes a recipient with a final status (`failed`, `blocked`).
pub async fn mark_final(
    tx: &mut Tx,
    id: i64,
    status: &str,
    error: &str,
) -> Result<(), StorageError> {
    with_tx!(tx, |c| {
        sqlx::query("UPDATE broadcast_recipients SET status = $1, last_error = $2 WHERE id = $3")
            .bind(status)
            .bind(error)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Puts a claimed recipient back to be tried at `at` (`cancelled` instead when its broadcast
/// was cancelled meanwhile). `undo_attempt` when the request was never made (a per-chat wait, a
/// 429, a claim not used before a pause or a stop).
pub async fn retry_at(
    tx: &mut Tx,
    id: i64,
    at: i64,
    error: Option<&str>,
    undo_attempt: bool,
) -> Result<(), StorageError> {
    let undo = i32::from(undo_attempt);
    with_tx!(tx, |c| {
        sqlx::query(
            "UPDATE broadcast_recipients SET
                status = CASE WHEN EXISTS (SELECT 1 FROM broadcasts b
                    WHERE b.id = broadcast_recipients.broadcast_id AND b.status = 'cancelled')
                    THEN 'cancelled' ELSE 'pending' END,
                next_attempt_at = $1, last_error = COALESCE($2, last_error),
                attempts = attempts - $3, claimed_at = NULL
             WHERE id = $4",
        )
        .bind(at)
        .bind(error)
        .bind(undo)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Pauses a whole broadcast (Telegram answered 429).
pub async fn pause_until(tx: &mut Tx, id: i64, until: i64) -> Result<(), StorageError> {
    with_tx!(tx, |c| {
        sqlx::query(
            "UPDATE broadcasts SET paused_until = $1 WHERE id = $2 AND (paused_until IS NULL OR paused_until < $1)",
        )
        .bind(until)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// At start-up: sends that were in flight when the process stopped are `unknown` (Telegram may
/// or may not have delivered them) and are never sent again.
pub async fn in_flight_to_unknown(db: &Db) -> Result<u64, StorageError> {
    Ok(write_db!(db, |c| {
        sqlx::query("UPDATE broadcast_recipients SET status = 'unknown' WHERE status = 'sending'")
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?)
}

/// Recipients of a broadcast claimed before `before` and still `sending` are `unknown`: their
/// sender stopped for good (a replica that was not restarted) or lost its claim (a commit applied
/// though the bot saw an error), so no one will record them. Never sent again: Telegram may have
/// delivered them. Returns how many.
pub async fn stale_to_unknown(db: &Db, id: i64, before: i64) -> Result<u64, StorageError> {
    Ok(write_db!(db, |c| {
        sqlx::query(
            "UPDATE broadcast_recipients SET status = 'unknown'
             WHERE broadcast_id = $1 AND status = 'sending' AND claimed_at < $2",
        )
        .bind(id)
        .bind(before)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?)
}

/// Ends a broadcast whose recipients are all handled; true when it ended now.
pub async fn finish_if_complete(db: &Db, id: i64, now: i64) -> Result<bool, StorageError> {
    let n = write_db!(db, |c| {
        sqlx::query(
            "UPDATE broadcasts SET status = 'done', finished_at = $1 WHERE id = $2 AND status = 'running'
             AND NOT EXISTS (SELECT 1 FROM broadcast_recipients WHERE broadcast_id = $2
                             AND status IN ('pending', 'sending'))",
        )
        .bind(now)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(n == 1)
}

/// The offer expired before everyone got it: the rest are not sent.
pub async fn expire_pending(db: &Db, id: i64) -> Result<u64, StorageError> {
    Ok(write_db!(db, |c| {
        sqlx::query(
            "UPDATE broadcast_recipients SET status = 'expired' WHERE broadcast_id = $1 AND status = 'pending'",
        )
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?)
}

/// Cancels a scheduled or running broadcast; returns false when it was not (no longer) active.
pub async fn cancel(db: &Db, id: i64, now: i64) -> Result<bool, StorageError> {
    let mut tx = db.begin().await?;
    let cancelled = cancel_in(&mut tx, id, now).await?;
    tx.commit().await?;
    Ok(cancelled)
}

/// [`cancel`] inside a transaction.
pub async fn cancel_in(tx: &mut Tx, id: i64, now: i64) -> Result<bool, StorageError> {
    let n = with_tx!(tx, |c| {
        sqlx::query(
            "UPDATE broadcasts SET status = 'cancelled', cancelled_at = $1, finished_at = $1
             WHERE id = $2 AND status IN ('scheduled', 'running')",
        )
        .bind(now)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    with_tx!(tx, |c| {
        sqlx::query(
            "UPDATE broadcast_recipients SET status = 'cancelled' WHERE broadcast_id = $1 AND status = 'pending'",
        )
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(n == 1)
}

/// Remembers the staff-chat progress message and when it was last updated.
pub async fn set_progress(
    db: &Db,
    id: i64,
    message_id: Option<i64>,
    at: i64,
) -> Result<(), StorageError> {
    write_db!(db, |c| {
        sqlx::query(
            "UPDATE broadcasts SET progress_message_id = COALESCE($1, progress_message_id), progress_at = $2 WHERE id = $3",
        )
        .bind(message_id)
        .bind(at)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Where a broadcast stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: i64,
    pub pending: i64,
    pub sending: i64,
    pub sent: i64,
    pub failed: i64,
    pub blocked: i64,
    pub unknown: i64,
    pub skipped: i64,
    pub expired: i64,
    pub cancelled: i64,
    pub recalled: i64,
    pub clicks: i64,
    pub turned_hot: i64,
    pub first_claim_at: Option<i64>,
    pub last_sent_at: Option<i64>,
}

/// Counts recipients by status, clicks and leads that turned hot after the offer.
pub async fn counts(db: &Db, id: i64) -> Result<Counts, StorageError> {
    let rows: Vec<(String, i64)> = with_db!(db, |c| {
        sqlx::query_as(
            "SELECT status, COUNT(*) FROM broadcast_recipients WHERE broadcast_id = $1 GROUP BY status",
        )
        .bind(id)
        .fetch_all(c)
        .await
    })?;
    let mut k = Counts::default();
    for (status, n) in rows {
        k.total += n;
        match status.as_str() {
            "pending" => k.pending = n,
            "sending" => k.sending = n,
            "sent" => k.sent = n,
            "failed" => k.failed = n,
            "blocked" => k.blocked = n,
            "unknown" => k.unknown = n,
            "skipped" => k.skipped = n,
            "expired" => k.expired = n,
            "cancelled" => k.cancelled = n,
            _ => {}
        }
    }
    let (recalled, clicks, hot, first, last): (i64, i64, i64, Option<i64>, Option<i64>) = with_db!(
        db,
        |c| {
            sqlx::query_as(
                "SELECT
                    (SELECT COUNT(*) FROM broadcast_recipients WHERE broadcast_id = $1 AND recall = 'done'),
                    (SELECT COUNT(*) FROM offer_clicks WHERE broadcast_id = $1),
                    (SELECT COUNT(*) FROM broadcast_recipients r JOIN leads l ON l.id = r.lead_id
                      WHERE r.broadcast_id = $1 AND r.sent_at IS NOT NULL AND l.hot_at >= r.sent_at),
                    (SELECT MIN(claimed_at) FROM broadcast_recipients WHERE broadcast_id = $1),
                    (SELECT MAX(sent_at) FROM broadcast_recipients WHERE broadcast_id = $1)",
            )
            .bind(id)
            .fetch_one(c)
            .await
        }
    )?;
    k.recalled = recalled;
    k.clicks = clicks;
    k.turned_hot = hot;
    k.first_claim_at = first;
    k.last_sent_at = last;
    Ok(k)
}

/// Sends in the last `window_ms` (for the current rate).
pub async fn sent_since(db: &Db, id: i64, since: i64) -> Result<i64, StorageError> {
    let (n,): (i64,) = with_db!(db, |c| {
        sqlx::query_as(
            "SELECT COUNT(*) FROM broadcast_recipients WHERE broadcast_id = $1 AND sent_at >= $2",
        )
        .bind(id)
        .bind(since)
        .fetch_one(c)
        .await
    })?;
    Ok(n)
}

/// A lead's recipient row of a broadcast: its status and the message it got.
pub async fn recipient_of(
    tx: &mut Tx,
    broadcast_id: i64,
    lead_id: i64,
) -> Result<Option<(String, Option<i64>)>, StorageError> {
    Ok(with_tx!(tx, |c| {
        sqlx::query_as(
            "SELECT status, telegram_message_id FROM broadcast_recipients WHERE broadcast_id = $1 AND lead_id = $2",
        )
        .bind(broadcast_id)
        .bind(lead_id)
        .fetch_optional(c)
        .await
    })?)
}

/// A broadcast inside a transaction.
pub async fn get_in(tx: &mut Tx, id: i64) -> Result<Option<Broadcast>, StorageError> {
    Ok(with_tx!(tx, |c| {
        sqlx::query_as::<_, Broadcast>(&format!("SELECT {COLUMNS} FROM broadcasts WHERE id = $1"))
            .bind(id)
            .fetch_optional(c)
            .await
    })?)
}

/// Records a click; true the first time this lead clicks this offer.
pub async fn record_click(
    tx: &mut Tx,
    broadcast_id: i64,
    lead_id: i64,
    now: i64,
) -> Result<bool, StorageError> {
    let n = with_tx!(tx, |c| {
        sqlx::query(
            "INSERT INTO offer_clicks (broadcast_id, lead_id, clicked_at) VALUES ($1, $2, $3)
             ON CONFLICT (broadcast_id, lead_id) DO NOTHING",
        )
        .bind(broadcast_id)
        .bind(lead_id)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(n == 1)
}

/// Whether a lead clicked any offer since `since`.
pub async fn clicked_since(tx: &mut Tx, lead_id: i64, since: i64) -> Result<bool, StorageError> {
    let row: Option<(i64,)> = with_tx!(tx, |c| {
        sqlx::query_as(
            "SELECT broadcast_id FROM offer_clicks WHERE lead_id = $1 AND clicked_at >= $2 LIMIT 1",
        )
        .bind(lead_id)
        .bind(since)
        .fetch_optional(c)
        .await
    })?;
    Ok(row.is_some())
}

/// `/forget`: the lead's recipient rows keep their status (anonymous counts) but lose the chat,
/// message and language that point back to the person.
pub async fn forget_lead(tx: &mut Tx, lead_id: i64) -> Result<(), StorageError> {
    with_tx!(tx, |c| {
        sqlx::query(
            "UPDATE broadcast_recipients SET chat_id = 0, telegram_message_id = NULL, language_code = NULL,
                status = CASE WHEN status = 'pending' THEN 'skipped' ELSE status END
             WHERE lead_id = $1",
        )
        .bind(lead_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Recipient statuses of a broadcast, per lead (tests and `show`).
pub async fn recipients(db: &Db, broadcast_id: i64) -> Result<Vec<(i64, String)>, StorageError> {
    Ok(with_db!(db, |c| {
        sqlx::query_as(
            "SELECT lead_id, status FROM broadcast_recipients WHERE broadcast_id = $1 ORDER BY id",
        )
        .bind(broadcast_id)
        .fetch_all(c)
        .await
    })?)
}
