//! The durable outbox: side effects enqueued with the state change that caused them.

use super::later::{self, OutboxRow};
use super::{Db, StorageError, Tx, with_db, with_tx, write_db};

/// An outbox row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Row {
    pub id: i64,
    pub idempotency_key: String,
    pub lead_id: Option<i64>,
    pub chat_id: i64,
    pub action: String,
    /// Delivered after the chat's earlier rows in order (see [`enqueue`]).
    pub in_order: bool,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub telegram_message_id: Option<i64>,
}

#[cfg(test)]
impl Row {
    /// A row as a claim returns it, for unit tests.
    pub(crate) fn claimed_for_test(id: i64, chat_id: i64, in_order: bool) -> Row {
        Row {
            id,
            idempotency_key: format!("k{id}"),
            lead_id: None,
            chat_id,
            action: "{}".into(),
            in_order,
            status: "sending".into(),
            attempts: 1,
            next_attempt_at: 0,
            last_error: None,
            telegram_message_id: None,
        }
    }
}

const COLUMNS: &str = "id, idempotency_key, lead_id, chat_id, action, in_order, status, attempts, next_attempt_at, \
                       last_error, telegram_message_id";

/// Enqueues an action; a second row with the same idempotency key is ignored. Returns the row id
/// when it was new. A row `in_order` is delivered after the chat's earlier rows in order (it is
/// `queued` while the chat has an undelivered one); one that is not (a callback answer stored
/// before answers left the outbox, see `outbox::answers`) goes out as soon as it is due.
pub async fn enqueue(
    tx: &mut Tx,
    key: &str,
    lead_id: Option<i64>,
    chat_id: i64,
    action_json: &str,
    in_order: bool,
    now: i64,
) -> Result<Option<i64>, StorageError> {
    // Rows enqueued before, to be written at commit, keep their place in the order.
    later::flush_outbox(tx).await?;
    let row: Option<(i64, bool)> = with_tx!(tx, |c| {
        sqlx::query_as(
            "INSERT INTO outbox (idempotency_key, lead_id, chat_id, action, in_order, status,
                                 next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5,
                     CASE WHEN $5 AND EXISTS (SELECT 1 FROM outbox p WHERE p.chat_id = $3 AND p.in_order
                                              AND p.status IN ('queued', 'pending', 'sending'))
                          THEN 'queued' ELSE 'pending' END,
                     $6, $6)
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, status = 'queued'",
        )
        .bind(key)
        .bind(lead_id)
        .bind(chat_id)
        .bind(action_json)
        .bind(in_order)
        .bind(now)
        .fetch_optional(c)
        .await
    })?;
    if let Some((_, true)) = row {
        tx.later().queued_chats.push(chat_id);
    }
    Ok(row.map(|(id, _)| id))
}

/// [`enqueue`] written when the transaction commits, together with the other rows enqueued so
/// (one statement for a batch of updates). For replies whose id is not needed: their history
/// entry is recorded with `messages::record_reply`.
pub fn enqueue_at_commit(
    tx: &mut Tx,
    key: &str,
    lead_id: Option<i64>,
    chat_id: i64,
    action_json: String,
    in_order: bool,
    now: i64,
) {
    tx.later().outbox.push(OutboxRow {
        idempotency_key: key.to_owned(),
        lead_id,
        chat_id,
        action: action_json,
        in_order,
        now,
    });
}

/// Claims due rows: for each chat only its oldest undelivered row in order, so a chat's messages
/// keep their order, and any due rows outside the order. Claimed rows are
/// `sending` until their outcome is recorded.
pub async fn claim_due(db: &Db, now: i64, limit: i64) -> Result<Vec<Row>, StorageError> {
    claim_due_by(db, now, limit, None).await
}

/// [`claim_due`] for a replica: the rows are stamped with its instance id, so survivors can put
/// them back if it dies mid-delivery (see `storage::ops`).
pub async fn claim_due_by(
    db: &Db,
    now: i64,
    limit: i64,
    owner: Option<i64>,
) -> Result<Vec<Row>, StorageError> {
    Ok(match db {
        Db::Sqlite(p) => {
            // Behind the write gate: see `write_db!`.
            let _gate = super::sqlite_write_turn(p).await?;
            sqlx::query_as::<_, Row>(&claim_sql(false))
                .bind(now)
                .bind(limit)
                .bind(owner)
                .fetch_all(p)
                .await?
        }
        Db::Postgres(p) => {
            sqlx::query_as::<_, Row>(&claim_sql(true))
                .bind(now)
                .bind(limit)
                .bind(owner)
                .fetch_all(p)
                .await?
        }
    })
}

/// [`claim_due_by`] inside a transaction: the outbox worker records deliveries and claims the
/// rows they unblock in one go; an update's transaction claims the messages it enqueued (see
/// `outbox::handover`).
pub async fn claim_due_in(
    tx: &mut Tx,
    now: i64,
    limit: i64,
    owner: Option<i64>,
) -> Result<Vec<Row>, StorageError> {
    if limit <= 0 {
        return Ok(Vec::new());
    }
    // Rows this transaction enqueued to be written at commit are claimable too.
    later::flush(tx).await?;
    let postgres = matches!(tx, Tx::Postgres(_));
    Ok(with_tx!(tx, |c| {
        sqlx::query_as::<_, Row>(&claim_sql(postgres))
            .bind(now)
            .bind(limit)
            .bind(owner)
            .fetch_all(c)
            .await
    })?)
}

/// The claim: `$1` now, `$2` how many, `$3` the owner.
fn claim_sql(postgres: bool) -> String {
    claim_sql_with(postgres, ["$1", "$2", "$3"])
}

/// How many messages of a private chat one claim takes in a row on SQLite, at most: the chat's
/// next message in order and the ones enqueued behind it (a text and the question after it, say).
/// The worker sends them one after the other, each once Telegram accepted the one before (see
/// `outbox::worker`), so a question does not wait for the record of the text before it. On
/// PostgreSQL a claim takes one message per chat: taking the ones behind it would wait for rows
/// other transactions hold (an update's, the worker's recording), and in the benchmark such waits
/// stalled delivery for seconds.
pub const CHAIN: i64 = 4;

/// The claim with its parameters named: now, how many, the owner.
///
/// Takes due `pending` rows, in a chat's order only its oldest undelivered row, up to `limit`;
/// on SQLite, behind each such row of a private chat (a positive id: a prospect's, not a
/// group's) the chat's next rows in order, up to [`CHAIN`] in all.
fn claim_sql_with(postgres: bool, [now, limit, owner]: [&str; 3]) -> String {
    if postgres {
        return format!(
            "UPDATE outbox SET status = 'sending', attempts = attempts + 1, claimed_by = {owner}
             WHERE id IN (
                 SELECT o.id FROM outbox o
                 WHERE o.status = 'pending' AND o.next_attempt_at <= {now}
                   AND (NOT o.in_order
                        OR NOT EXISTS (SELECT 1 FROM outbox p WHERE p.chat_id = o.chat_id
                                       AND p.id < o.id AND p.in_order
                                       AND p.status IN ('queued', 'pending', 'sending')))
                 ORDER BY o.id LIMIT {limit} FOR UPDATE SKIP LOCKED)
             RETURNING {COLUMNS}"
        );
    }
    // SQLite is told which indexes to walk: without statistics its planner reads and sorts the
    // whole backlog, which made each claim cost milliseconds under load (and `+status` keeps it
    // from finding the rows to update by status rather than by id).
    let behind = CHAIN - 1;
    format!(
        "WITH f AS MATERIALIZED (
             SELECT o.id, o.chat_id, o.in_order FROM outbox o INDEXED BY outbox_pending
             WHERE o.status = 'pending' AND o.next_attempt_at <= {now}
               AND (NOT o.in_order
                    OR NOT EXISTS (SELECT 1 FROM outbox p INDEXED BY outbox_chat_open
                                   WHERE p.chat_id = o.chat_id AND p.id < o.id AND p.in_order
                                     AND p.status IN ('queued', 'pending', 'sending')))
             ORDER BY o.id LIMIT {limit})
         UPDATE outbox SET status = 'sending', attempts = attempts + 1, claimed_by = {owner}
         WHERE +status IN ('pending', 'queued') AND id IN (
             SELECT id FROM f
             UNION ALL
             SELECT c.id FROM f JOIN outbox c ON c.id IN (
                 SELECT h.id FROM outbox h INDEXED BY outbox_chat_open
                 WHERE h.chat_id = f.chat_id AND h.id > f.id
                   AND h.in_order AND h.status IN ('queued', 'pending', 'sending')
                 ORDER BY h.id LIMIT {behind})
             WHERE f.in_order AND f.chat_id > 0)
         RETURNING {COLUMNS}"
    )
}

/// Records deliveries, `(outbox id, Telegram message id)`: the single write that closes the
/// duplicate window. One statement for the whole group, inside the transaction that also links
/// the history entries.
pub async fn mark_sent_in(
    tx: &mut Tx,
    sent: &[(i64, Option<i64>)],
    now: i64,
) -> Result<(), StorageError> {
    if sent.is_empty() {
        return Ok(());
    }
    match tx {
        Tx::Sqlite(c) => {
            sqlx::query(MARK_SENT_SQLITE)
                .bind(now)
                .bind(later::to_json(&sent)?)
                .execute(&mut **c)
                .await?;
        }
        Tx::Postgres(c) => {
            let ids: Vec<i64> = sent.iter().map(|s| s.0).collect();
            let mids: Vec<Option<i64>> = sent.iter().map(|s| s.1).collect();
            sqlx::query(
                "UPDATE outbox SET status = 'sent', sent_at = $1, telegram_message_id = s.mid,
                        last_error = NULL
                 FROM UNNEST($2::BIGINT[], $3::BIGINT[]) AS s (id, mid)
                 WHERE outbox.id = s.id",
            )
            .bind(now)
            .bind(ids)
            .bind(mids)
            .execute(&mut **c)
            .await?;
        }
    }
    Ok(())
}

/// What the outbox worker records after a group of sends Telegram accepted.
pub struct Delivered<'a> {
    /// `(outbox id, Telegram message id)` of each row sent.
    pub sent: &'a [(i64, Option<i64>)],
    /// `(outbox id, Telegram message id)` of the rows whose history entries get the message id.
    pub linked: &'a [(i64, i64)],
    /// The chats sent to, whose next message in order may now go.
    pub chats: &'a [i64],
    /// When they were recorded.
    pub now: i64,
}

/// Records deliveries in `tx`: marks the rows sent ([`mark_sent_in`]), links their history
/// entries (`messages::link_delivered_in`), promotes each chat's next message ([`promote_in`]),
/// and claims up to `claim` due rows for `owner` ([`claim_due_in`]), the promoted ones among
/// them. On SQLite the four statements go to the database as one query (one round trip to its
/// thread instead of four), and they run in that order.
pub async fn record_delivered_in(
    tx: &mut Tx,
    d: &Delivered<'_>,
    claim: i64,
    owner: Option<i64>,
) -> Result<Vec<Row>, StorageError> {
    // Rows this transaction enqueued to be written at commit are claimable too.
    later::flush(tx).await?;
    if let Tx::Sqlite(c) = tx {
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "{MARK_SENT_SQLITE};\n{link};\n{promote};\n{claim}",
                link = super::messages::LINK_SQLITE.replace("$1", "$3"),
                promote = PROMOTE_SQLITE.replace("$1", "$4"),
                claim = claim_sql_with(false, ["$5", "$6", "$7"]),
            )
        });
        return Ok(sqlx::query_as::<_, Row>(SQL.as_str())
            .bind(d.now)
            .bind(later::to_json(&d.sent)?)
            .bind(later::to_json(&d.linked)?)
            .bind(later::to_json(&d.chats)?)
            .bind(d.now)
            .bind(claim.max(0))
            .bind(owner)
            .fetch_all(&mut *c.tx)
            .await?);
    }
    mark_sent_in(tx, d.sent, d.now).await?;
    super::messages::link_delivered_in(tx, d.linked).await?;
    promote_in(tx, d.chats).await?;
    claim_due_in(tx, d.now, claim, owner).await
}

/// A prospect pressed the button `data` under their message `message_id`. When a message of the
/// chat not yet recorded as delivered carries that button and has been sent (`sending`: its
/// outcome not recorded yet; or put back after a crash or an unclear failure: `pending` or
/// `queued` after an attempt), and `message_id` is newer than every message recorded in the chat,
/// the press is Telegram's proof that this message was delivered, as `message_id`, and on SQLite
/// so were the chat's messages before it still open: a message is only sent once Telegram accepted
/// the ones before it (the greeting before the first question, say; on PostgreSQL, where each
/// waits for the record of the one before, only the chat's first open message can be the one
/// pressed, and the lookup stays that simple: a wider one there halved the benchmark's closed loop
/// in 30 s runs). They are recorded as sent (those before with no message id), the pressed one's
/// history entry linked and the chat's next message released, as the worker does after a send: a
/// crash before the worker's own recording, or a send that timed out after Telegram took it, then
/// no longer sends them twice, and the chat's next message need not wait for that recording.
/// Nothing is proved when a message before the pressed one was never tried.
///
/// Written with the transaction's other presses before its buffered outbox rows (one statement
/// for a batch of updates; see `later`). Only a press of a dialogue choice should be passed (its
/// data is one question's own button: other buttons, such as an offer's, can sit under messages
/// the outbox did not send).
///
/// On PostgreSQL a row still `sending` is only proved while `worker_idle` (this process's worker
/// has not started: start-up reads the updates kept while the bot was down, and the rows then
/// `sending` are the stopped run's). Otherwise the worker is about to record that row itself, and
/// the update's transaction holding the row would make the worker's recording, with every other
/// delivery in it, wait for that transaction's commit (in the benchmark's open loop the p99 went
/// from about 100 ms to 150–250 ms, once past a second). SQLite's writers take turns, so nothing
/// waits there. A row is never waited for: one another transaction holds is left to it.
pub fn record_pressed(
    tx: &mut Tx,
    chat_id: i64,
    message_id: i64,
    data: &str,
    now: i64,
    worker_idle: bool,
) {
    // The button as the stored action spells it (a string always serialises).
    let Ok(button) = serde_json::to_string(data) else {
        return;
    };
    tx.later().presses.push(later::PressRow {
        chat_id,
        message_id,
        button,
        at: now,
        sending_too: worker_idle,
    });
}

/// Records what buffered presses prove (see [`record_pressed`]).
pub(super) async fn record_presses(
    tx: &mut Tx,
    presses: &[later::PressRow],
) -> Result<(), StorageError> {
    // SQLite: `f` is, per press, the chat's first open row carrying the button and sent at least
    // once, unless a newer message of the chat is recorded; `t` that row and the open rows before
    // it, if each of them was sent too. PostgreSQL: the chat's first open row, if it carries the
    // button.
    let proved: Vec<(i64, i64, Option<i64>)> = match tx {
        Tx::Sqlite(c) => {
            sqlx::query_as(
                "WITH p AS MATERIALIZED (
                     SELECT value ->> 'chat_id' AS chat, value ->> 'message_id' AS mid,
                            value ->> 'button' AS button, value ->> 'at' AS at
                     FROM json_each($1)),
                 f AS MATERIALIZED (
                     SELECT (SELECT h.id FROM outbox h INDEXED BY outbox_chat_open
                             WHERE h.chat_id = p.chat AND h.in_order
                               AND h.status IN ('queued', 'pending', 'sending')
                               AND h.attempts > 0 AND instr(h.action, p.button) > 0
                             ORDER BY h.id LIMIT 1) AS id,
                            p.chat, p.mid, p.at
                     FROM p
                     WHERE NOT EXISTS (SELECT 1 FROM outbox k WHERE k.chat_id = p.chat
                                       AND k.telegram_message_id >= p.mid)),
                 t AS MATERIALIZED (
                     SELECT o.id, f.at, CASE WHEN o.id = f.id THEN f.mid END AS mid
                     FROM f JOIN outbox o INDEXED BY outbox_chat_open
                          ON o.chat_id = f.chat AND o.in_order
                          AND o.status IN ('queued', 'pending', 'sending') AND o.id <= f.id
                     WHERE NOT EXISTS (
                         SELECT 1 FROM outbox q INDEXED BY outbox_chat_open
                         WHERE q.chat_id = f.chat AND q.in_order
                           AND q.status IN ('queued', 'pending', 'sending') AND q.id < f.id
                           AND q.attempts = 0))
                 UPDATE outbox SET status = 'sent', sent_at = t.at, telegram_message_id = t.mid,
                                   last_error = NULL
                 FROM t WHERE outbox.id = t.id
                 RETURNING outbox.id, outbox.chat_id, outbox.telegram_message_id",
            )
            .bind(later::to_json(&presses)?)
            .fetch_all(&mut **c)
            .await?
        }
        Tx::Postgres(c) => {
            sqlx::query_as(
                "WITH f AS (
                     SELECT o.id, p.mid, p.at
                     FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::BIGINT[],
                                 $5::BOOLEAN[])
                          AS p (chat, mid, button, at, sending_too)
                     JOIN outbox o ON o.id = (
                         SELECT h.id FROM outbox h
                         WHERE h.chat_id = p.chat AND h.in_order
                           AND h.status IN ('queued', 'pending', 'sending')
                         ORDER BY h.id LIMIT 1)
                     WHERE o.attempts > 0
                       AND (o.status = 'pending' OR o.status = 'sending' AND p.sending_too)
                       AND strpos(o.action, p.button) > 0
                       AND NOT EXISTS (SELECT 1 FROM outbox k WHERE k.chat_id = p.chat
                                       AND k.telegram_message_id >= p.mid)
                     FOR UPDATE OF o SKIP LOCKED)
                 UPDATE outbox SET status = 'sent', sent_at = f.at, telegram_message_id = f.mid,
                                   last_error = NULL
                 FROM f WHERE outbox.id = f.id
                 RETURNING outbox.id, outbox.chat_id, outbox.telegram_message_id",
            )
            .bind(presses.iter().map(|p| p.chat_id).collect::<Vec<_>>())
            .bind(presses.iter().map(|p| p.message_id).collect::<Vec<_>>())
            .bind(
                presses
                    .iter()
                    .map(|p| p.button.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(presses.iter().map(|p| p.at).collect::<Vec<_>>())
            .bind(presses.iter().map(|p| p.sending_too).collect::<Vec<_>>())
            .fetch_all(&mut **c)
            .await?
        }
    };
    if proved.is_empty() {
        return Ok(());
    }
    let linked: Vec<(i64, i64)> = proved
        .iter()
        .filter_map(|&(id, _, mid)| mid.map(|mid| (id, mid)))
        .collect();
    super::messages::link_delivered_in(tx, &linked).await?;
    let mut chats: Vec<i64> = proved.iter().map(|&(_, chat, _)| chat).collect();
    chats.sort_unstable();
    chats.dedup();
    promote_in(tx, &chats).await
}

/// Moves the messages not yet sent to `from` (queued, pending, being sent) to `to`, in their order:
/// the group `from` became the supergroup `to`. How many moved.
pub async fn move_chat(db: &Db, from: i64, to: i64) -> Result<u64, StorageError> {
    let moved = write_db!(db, |c| {
        sqlx::query(
            "UPDATE outbox SET chat_id = $2
             WHERE chat_id = $1 AND status IN ('queued', 'pending', 'sending')",
        )
        .bind(from)
        .bind(to)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(moved)
}

/// Puts a row back for another attempt at `at`. A row recorded as sent meanwhile (a press of
/// its button proved it delivered, see [`record_pressed`]) stays sent, as with [`pause`] and
/// [`mark_failed`].
pub async fn retry_at(db: &Db, id: i64, at: i64, error: &str) -> Result<(), StorageError> {
    write_db!(db, |c| {
        sqlx::query("UPDATE outbox SET status = 'pending', next_attempt_at = $1, last_error = $2 WHERE id = $3 AND status <> 'sent'")
            .bind(at)
            .bind(error)
            .bind(id)
            .execute(c).await.map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Puts back rows claimed and never tried (a chain stopped before them, see `outbox::worker`):
/// they wait behind their chat's row that stopped it, as before the claim, without the attempt.
pub async fn unclaim(db: &Db, ids: &[i64]) -> Result<(), StorageError> {
    if ids.is_empty() {
        return Ok(());
    }
    match db {
        Db::Sqlite(p) => {
            let _gate = super::sqlite_write_turn(p).await?;
            sqlx::query(&format!("{UNCLAIM} (SELECT value FROM json_each($1))"))
                .bind(later::to_json(&ids)?)
                .execute(p)
                .await?;
        }
        Db::Postgres(p) => {
            sqlx::query(&format!("{UNCLAIM} (SELECT UNNEST($1::BIGINT[]))"))
                .bind(ids)
                .execute(p)
                .await?;
        }
    }
    Ok(())
}

const UNCLAIM: &str = "UPDATE outbox SET status = 'queued', claimed_by = NULL,
            attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END
     WHERE status = 'sending' AND id IN";

/// Puts a row back until `at` without counting the attempt: the row is not at fault (a 429 is
/// Telegram pacing the bot; a staff chat the bot cannot post to waits for the managers), so a
/// long wait neither lengthens the backoff of a later network error nor brings the row closer to
/// being given up.
pub async fn pause(db: &Db, id: i64, at: i64, why: &str) -> Result<(), StorageError> {
    write_db!(db, |c| {
        sqlx::query(
            "UPDATE outbox SET status = 'pending', next_attempt_at = $1, last_error = $2,
                    attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END
             WHERE id = $3 AND status <> 'sent'",
        )
        .bind(at)
        .bind(why)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Gives a row up (`failed`: Telegram refused it for good, or the user blocked the bot); the
/// chat's next row in order may go.
pub async fn mark_failed(db: &Db, id: i64, error: &str) -> Result<(), StorageError> {
    let mut tx = db.begin().await?;
    let chat: Option<(i64,)> = with_tx!(&mut tx, |c| {
        sqlx::query_as(
            "UPDATE outbox SET status = 'failed', last_error = $1 WHERE id = $2 AND status <> 'sent'
             RETURNING chat_id",
        )
        .bind(error)
        .bind(id)
        .fetch_optional(c)
        .await
    })?;
    if let Some((chat,)) = chat {
        promote_in(&mut tx, &[chat]).await?;
    }
    tx.commit().await
}

/// Makes each chat's oldest undelivered row in order `pending` if it waits as `queued` (the row
/// before it was just recorded or dropped).
pub async fn promote_in(tx: &mut Tx, chats: &[i64]) -> Result<(), StorageError> {
    if chats.is_empty() {
        return Ok(());
    }
    match tx {
        Tx::Sqlite(c) => {
            sqlx::query(PROMOTE_SQLITE)
                .bind(later::to_json(&chats)?)
                .execute(&mut **c)
                .await?;
        }
        Tx::Postgres(c) => {
            sqlx::query(PROMOTE_POSTGRES)
                .bind(chats)
                .execute(&mut **c)
                .await?;
        }
    }
    Ok(())
}

/// [`promote_in`] on its own, after a commit. On PostgreSQL a transaction enqueueing a chat's
/// message behind one in flight and the worker's recording that one's delivery can each miss the
/// other's rows (neither sees what the other has not committed), leaving the new message
/// `queued` with nothing to release it. So both promote again once committed: whichever commits
/// later then sees both. Returns how many rows were released.
pub async fn promote(db: &Db, chats: &[i64]) -> Result<u64, StorageError> {
    if chats.is_empty() {
        return Ok(0);
    }
    let done = match db {
        Db::Sqlite(p) => {
            let _gate = super::sqlite_write_turn(p).await?;
            sqlx::query(PROMOTE_SQLITE)
                .bind(later::to_json(&chats)?)
                .execute(p)
                .await?
                .rows_affected()
        }
        Db::Postgres(p) => sqlx::query(PROMOTE_POSTGRES)
            .bind(chats)
            .execute(p)
            .await?
            .rows_affected(),
    };
    Ok(done)
}

/// `$1` when, `$2` a JSON array of `[outbox id, Telegram message id]`.
const MARK_SENT_SQLITE: &str =
    "UPDATE outbox SET status = 'sent', sent_at = $1, telegram_message_id = s.mid,
            last_error = NULL
     FROM (SELECT value ->> 0 AS id, value ->> 1 AS mid FROM json_each($2)) AS s
     WHERE outbox.id = s.id";

/// The first open row of each chat in `$1` (a JSON array), when it waits (`queued`). The rows are
/// found by id: `+status` keeps SQLite from walking every queued row of the table through
/// `outbox_due` instead (1,500 of them in the benchmark's closed loop, on every recording).
const PROMOTE_SQLITE: &str = "UPDATE outbox SET status = 'pending'
     WHERE +status = 'queued' AND id IN (
         SELECT (SELECT h.id FROM outbox h INDEXED BY outbox_chat_open
                 WHERE h.chat_id = c.value AND h.in_order
                   AND h.status IN ('queued', 'pending', 'sending')
                 ORDER BY h.id LIMIT 1)
         FROM json_each($1) AS c)";

/// A row another transaction holds is skipped: that one is releasing it (or dropping it), and
/// waiting for it could deadlock two promotions that lock the same rows in different orders.
const PROMOTE_POSTGRES: &str = "UPDATE outbox SET status = 'pending'
     WHERE id IN (
         SELECT q.id FROM outbox q
         WHERE q.status = 'queued' AND q.id IN (
             SELECT (SELECT h.id FROM outbox h
                     WHERE h.chat_id = c AND h.in_order
                       AND h.status IN ('queued', 'pending', 'sending')
                     ORDER BY h.id LIMIT 1)
             FROM UNNEST($1::BIGINT[]) AS c)
         FOR UPDATE SKIP LOCKED)";

/// The safety net under [`promote_in`], run on the timer: makes `pending` every queued row with
/// no undelivered row before it in its chat. Returns how many.
pub async fn promote_stranded(db: &Db) -> Result<u64, StorageError> {
    Ok(write_db!(db, |c| {
        sqlx::query(
            "UPDATE outbox SET status = 'pending'
             WHERE status = 'queued' AND NOT EXISTS (
                 SELECT 1 FROM outbox p WHERE p.chat_id = outbox.chat_id AND p.id < outbox.id
                   AND p.in_order AND p.status IN ('queued', 'pending', 'sending'))",
        )
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?)
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

/// A row by idempotency key, read inside a transaction. Code holding a transaction must read
/// through it: on SQLite a second pooled connection can wait for the writer that is waiting for
/// it, and everything stalls until the busy timeout.
pub async fn by_key_in(tx: &mut Tx, key: &str) -> Result<Option<Row>, StorageError> {
    later::flush_outbox(tx).await?;
    Ok(with_tx!(tx, |c| {
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
    later::flush_outbox(tx).await?;
    let chats: Vec<(i64,)> = with_tx!(tx, |c| {
        sqlx::query_as(
            "DELETE FROM outbox WHERE lead_id = $1 AND status IN ('queued', 'pending') RETURNING chat_id",
        )
        .bind(lead_id)
        .fetch_all(c)
        .await
    })?;
    let mut chats: Vec<i64> = chats.into_iter().map(|(c,)| c).collect();
    chats.sort_unstable();
    chats.dedup();
    promote_in(tx, &chats).await
}

/// The lead a delivered message in a chat belongs to (a card or a relayed message).
pub async fn lead_of_message(
    tx: &mut Tx,
    chat_id: i64,
    message_id: i64,
) -> Result<Option<i64>, StorageError> {
    later::flush_outbox(tx).await?;
    let row: Option<(Option<i64>,)> = with_tx!(tx, |c| {
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
