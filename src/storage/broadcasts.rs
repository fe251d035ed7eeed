//! Broadcasts (limited-time offers): the audience query compiled from a segment, recipients
//! materialised at start, per-send claims, outcomes, clicks, recalls and progress counts.

use crate::broadcast::segment::{Cmp, Filter, Segment};

use super::{Db, StorageError, Tx, with_db, with_tx};

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

/// Who may receive offers at all, and how many they may get in a week.
#[derive(Debug, Clone, Copy)]
pub struct Eligibility {
    pub now: i64,
    pub max_per_week: u32,
}

const WEEK_MS: i64 = 7 * 86_400_000;

/// Recipient statuses that count as an offer received (for the weekly limit).
const RECEIVED: &str = "('sending', 'sent', 'unknown')";

/// A value bound to a `$n` placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Int(i64),
    Text(String),
}

/// The audience condition over `leads l`: marketing consent, not unsubscribed/blocked/erased,
/// under the weekly limit, and the segment. Placeholders start at `$first`; values are bound,
/// never spliced into the SQL.
pub fn audience_where(segment: &Segment, e: Eligibility, first: usize) -> (String, Vec<Bind>) {
    let mut binds: Vec<Bind> = Vec::new();
    let p = |b: Bind, binds: &mut Vec<Bind>| {
        binds.push(b);
        format!("${}", first + binds.len() - 1)
    };
    let mut sql = String::from(
        "l.marketing_consent_at IS NOT NULL AND l.unsubscribed = FALSE AND l.blocked = FALSE \
         AND l.erased = FALSE AND l.chat_id IS NOT NULL",
    );
    let week = p(Bind::Int(e.now - WEEK_MS), &mut binds);
    let max = p(Bind::Int(i64::from(e.max_per_week)), &mut binds);
    sql.push_str(&format!(
        " AND (SELECT COUNT(*) FROM broadcast_recipients rr WHERE rr.lead_id = l.id \
         AND rr.status IN {RECEIVED} AND rr.claimed_at >= {week}) < {max}"
    ));
    for f in &segment.filters {
        let clause = match f {
            Filter::Temperature { negate, any_of } => {
                let list: Vec<String> = any_of
                    .iter()
                    .map(|t| p(Bind::Text(t.as_str().into()), &mut binds))
                    .collect();
                in_list("l.temperature", *negate, &list)
            }
            Filter::Status { negate, any_of } => {
                let list: Vec<String> = any_of
                    .iter()
                    .map(|s| p(Bind::Text((*s).into()), &mut binds))
                    .collect();
                in_list("l.status", *negate, &list)
            }
            Filter::Source { negate, any_of } => {
                let ors: Vec<String> = any_of
                    .iter()
                    .map(|pat| {
                        let ph = p(Bind::Text(like_pattern(pat)), &mut binds);
                        format!("LOWER(l.source) LIKE {ph} ESCAPE '\\'")
                    })
                    .collect();
                let any = format!("({})", ors.join(" OR "));
                if *negate { format!("NOT {any}") } else { any }
            }
            Filter::Score { cmp, value } => {
                let ph = p(Bind::Int(i64::from(*value)), &mut binds);
                format!("l.score {} {ph}", sql_op(*cmp))
            }
            Filter::HasPhone(true) => "l.phone IS NOT NULL".into(),
            Filter::HasPhone(false) => "l.phone IS NULL".into(),
            Filter::Inactive { secs } => {
                let ph = p(Bind::Int(e.now - secs_ms(*secs)), &mut binds);
                format!("COALESCE(l.last_inbound_at, l.created_at) <= {ph}")
            }
            Filter::Active { secs } => {
                let ph = p(Bind::Int(e.now - secs_ms(*secs)), &mut binds);
                format!("COALESCE(l.last_inbound_at, l.created_at) > {ph}")
            }
            Filter::Created { cmp, date } => {
                let day = date
                    .and_hms_opt(0, 0, 0)
                    .map(|t| t.and_utc().timestamp_millis())
                    .unwrap_or(0);
                let next = day + 86_400_000;
                match cmp {
                    Cmp::Eq => {
                        let a = p(Bind::Int(day), &mut binds);
                        let b = p(Bind::Int(next), &mut binds);
                        format!("(l.created_at >= {a} AND l.created_at < {b})")
                    }
                    Cmp::Ne => {
                        let a = p(Bind::Int(day), &mut binds);
                        let b = p(Bind::Int(next), &mut binds);
                        format!("(l.created_at < {a} OR l.created_at >= {b})")
                    }
                    // A day is a whole day: `> 2026-11-01` starts on the 2nd, `<= …` ends with it.
                    Cmp::Ge => format!("l.created_at >= {}", p(Bind::Int(day), &mut binds)),
                    Cmp::Lt => format!("l.created_at < {}", p(Bind::Int(day), &mut binds)),
                    Cmp::Gt => format!("l.created_at >= {}", p(Bind::Int(next), &mut binds)),
                    Cmp::Le => format!("l.created_at < {}", p(Bind::Int(next), &mut binds)),
                }
            }
        };
        sql.push_str(" AND ");
        sql.push_str(&clause);
    }
    (sql, binds)
}

fn in_list(column: &str, negate: bool, list: &[String]) -> String {
    let not = if negate { "NOT " } else { "" };
    format!("{column} {not}IN ({})", list.join(", "))
}

fn sql_op(c: Cmp) -> &'static str {
    match c {
        Cmp::Eq => "=",
        Cmp::Ne => "<>",
        Cmp::Ge => ">=",
        Cmp::Le => "<=",
        Cmp::Gt => ">",
        Cmp::Lt => "<",
    }
}

fn secs_ms(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX / 2000) * 1000
}

/// `vk_*` → `vk\_%` (lower case; `_` and `%` are literal).
fn like_pattern(pattern: &str) -> String {
    let mut out = String::new();
    for c in pattern.to_lowercase().chars() {
        match c {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

macro_rules! bind_all {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds {
            q = match b {
                Bind::Int(n) => q.bind(*n),
                Bind::Text(s) => q.bind(s.clone()),
            };
        }
        q
    }};
}

/// How many leads a segment reaches now.
pub async fn audience_size(
    db: &Db,
    segment: &Segment,
    e: Eligibility,
) -> Result<i64, StorageError> {
    let (cond, binds) = audience_where(segment, e, 1);
    let sql = format!("SELECT COUNT(*) FROM leads l WHERE {cond}");
    let (n,): (i64,) = with_db!(db, |c| {
        bind_all!(sqlx::query_as(&sql), &binds).fetch_one(c).await
    })?;
    Ok(n)
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

/// What a claim found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Nothing is due in this broadcast.
    Empty,
    /// The next recipient no longer qualifies (unsubscribed, blocked, weekly limit...) and was
    /// skipped.
    Skipped,
    /// The recipient is now `sending`, committed before any request.
    Claimed(Claimed),
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

/// Claims the next due recipient of a broadcast in one committed statement (PostgreSQL:
/// `FOR UPDATE SKIP LOCKED`, so concurrent claims and replicas share the work). The lead is
/// re-checked at this moment: a lead that unsubscribed, blocked the bot, was erased or reached
/// the weekly limit since the start is `skipped`.
pub async fn claim_next(db: &Db, broadcast_id: i64, e: Eligibility) -> Result<Claim, StorageError> {
    let pick = "SELECT r.id FROM broadcast_recipients r
                WHERE r.broadcast_id = $1 AND r.status = 'pending' AND r.next_attempt_at <= $2
                ORDER BY r.id LIMIT 1";
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
         WHERE id = ({pick}{lock})
         RETURNING id, lead_id, chat_id, attempts, language_code, status"
    );
    let row: Option<ClaimRow> = with_db!(db, |c| {
        sqlx::query_as(&sql)
            .bind(broadcast_id)
            .bind(e.now)
            .bind(e.now - WEEK_MS)
            .bind(i64::from(e.max_per_week))
            .fetch_optional(c)
            .await
    })?;
    Ok(match row {
        None => Claim::Empty,
        Some(r) if r.status == "sending" => Claim::Claimed(Claimed {
            id: r.id,
            lead_id: r.lead_id,
            chat_id: r.chat_id,
            attempts: r.attempts,
            language_code: r.language_code,
        }),
        Some(_) => Claim::Skipped,
    })
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
pub async fn mark_final(db: &Db, id: i64, status: &str, error: &str) -> Result<(), StorageError> {
    with_db!(db, |c| {
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

/// Puts a claimed recipient back to be tried at `at`. `undo_attempt` when the request was never
/// made (a per-chat wait, a 429).
pub async fn retry_at(
    db: &Db,
    id: i64,
    at: i64,
    error: Option<&str>,
    undo_attempt: bool,
) -> Result<(), StorageError> {
    let undo = i32::from(undo_attempt);
    with_db!(db, |c| {
        sqlx::query(
            "UPDATE broadcast_recipients SET status = 'pending', next_attempt_at = $1,
                last_error = COALESCE($2, last_error), attempts = attempts - $3, claimed_at = NULL
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
pub async fn pause_until(db: &Db, id: i64, until: i64) -> Result<(), StorageError> {
    with_db!(db, |c| {
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
    Ok(with_db!(db, |c| {
        sqlx::query("UPDATE broadcast_recipients SET status = 'unknown' WHERE status = 'sending'")
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?)
}

/// Ends a broadcast whose recipients are all handled; true when it ended now.
pub async fn finish_if_complete(db: &Db, id: i64, now: i64) -> Result<bool, StorageError> {
    let n = with_db!(db, |c| {
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
    Ok(with_db!(db, |c| {
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
    let n = with_tx!(&mut tx, |c| {
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
    with_tx!(&mut tx, |c| {
        sqlx::query(
            "UPDATE broadcast_recipients SET status = 'cancelled' WHERE broadcast_id = $1 AND status = 'pending'",
        )
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    tx.commit().await?;
    Ok(n == 1)
}

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
    cancel(db, id, now).await?;
    let mut tx = db.begin().await?;
    with_tx!(&mut tx, |c| {
        sqlx::query(
            "UPDATE broadcasts SET recall_requested_at = COALESCE(recall_requested_at, $1) WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    let to_delete = with_tx!(&mut tx, |c| {
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
    let too_late = with_tx!(&mut tx, |c| {
        sqlx::query(
            "UPDATE broadcast_recipients SET recall = 'too_late' WHERE broadcast_id = $1 AND status = 'sent'
             AND recall IS NULL",
        )
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    tx.commit().await?;
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
    with_db!(db, |c| {
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
    Ok(with_db!(db, |c| {
        sqlx::query("UPDATE broadcast_recipients SET recall = 'pending' WHERE recall = 'deleting'")
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?)
}

/// Remembers the staff-chat progress message and when it was last updated.
pub async fn set_progress(
    db: &Db,
    id: i64,
    message_id: Option<i64>,
    at: i64,
) -> Result<(), StorageError> {
    with_db!(db, |c| {
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

/// A manager's `/broadcast` draft in a chat, if one was touched since `fresh_after`.
pub async fn draft_get(
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
pub async fn draft_set(
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
pub async fn draft_delete(tx: &mut Tx, chat_id: i64, user_id: i64) -> Result<(), StorageError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_compile_to_placeholders_not_values() {
        let s = Segment::parse("temperature=cold|warm,source=vk_*|x-y,score>=10,inactive=7d")
            .unwrap_or_default();
        let e = Eligibility {
            now: 1_000_000_000_000,
            max_per_week: 2,
        };
        let (sql, binds) = audience_where(&s, e, 1);
        assert!(!sql.contains("vk"), "{sql}");
        assert!(!sql.contains("cold"), "{sql}");
        assert!(sql.contains("l.temperature IN ($3, $4)"), "{sql}");
        assert!(sql.contains("LOWER(l.source) LIKE $5 ESCAPE"), "{sql}");
        assert!(sql.contains("l.score >= $7"), "{sql}");
        assert_eq!(binds[4], Bind::Text("vk\\_%".into()));
        assert_eq!(binds.len(), 8);
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("VK_ads*"), "vk\\_ads%");
        assert_eq!(like_pattern("*"), "%");
    }
}
