//! Updates as Telegram delivered them: stored before the polling offset moves past them, applied once.

use std::collections::HashSet;

use super::{Db, StorageError, with_db, with_tx, write_db};

const OFFSET_KEY: &str = "polling_offset";

/// An update waiting to be applied.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredUpdate {
    pub update_id: i64,
    pub user_id: Option<i64>,
    pub payload: String,
    pub attempts: i32,
}

/// One update to store: id, the user it concerns (for per-lead ordering) and its raw JSON.
#[derive(Debug, Clone)]
pub struct IncomingUpdate {
    pub update_id: i64,
    pub user_id: Option<i64>,
    pub payload: String,
}

/// Stores a batch of updates and the next polling offset in one transaction: the updates with a
/// single statement whatever their number. A replayed `update_id` is ignored. Returns how many
/// were new.
pub async fn store_batch(
    db: &Db,
    batch: &[&IncomingUpdate],
    next_offset: i64,
    now: i64,
) -> Result<u64, StorageError> {
    let mut tx = db.begin().await?;
    let new = store_batch_in(&mut tx, batch, &HashSet::new(), next_offset, now).await?;
    tx.commit().await?;
    Ok(u64::try_from(new.len()).unwrap_or(u64::MAX))
}

/// [`store_batch`] inside a transaction that goes on to apply some of the updates: those in
/// `applying` are stored marked applied (the transaction applies them before it commits). The ids
/// of the updates that were new.
pub async fn store_batch_in(
    tx: &mut super::Tx,
    batch: &[&IncomingUpdate],
    applying: &HashSet<i64>,
    next_offset: i64,
    now: i64,
) -> Result<HashSet<i64>, StorageError> {
    let new: Vec<(i64,)> = if batch.is_empty() {
        Vec::new()
    } else {
        match &mut *tx {
            super::Tx::Sqlite(c) => {
                let rows: Vec<(i64, Option<i64>, &str, bool)> = batch
                    .iter()
                    .map(|u| {
                        let applied = applying.contains(&u.update_id);
                        (u.update_id, u.user_id, u.payload.as_str(), applied)
                    })
                    .collect();
                // The next offset is written by a second statement of the same query (one
                // round trip to the database's thread).
                sqlx::query_as(
                    "WITH r AS MATERIALIZED (SELECT value AS v FROM json_each($1))
                     INSERT INTO updates (update_id, user_id, payload, received_at, processed_at)
                     SELECT v ->> 0, v ->> 1, v ->> 2, $2, CASE WHEN v ->> 3 THEN $2 END
                     FROM r WHERE true
                     ON CONFLICT (update_id) DO NOTHING RETURNING update_id;
                     INSERT INTO kv (key, value) VALUES ($3, $4)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(super::later::to_json(&rows)?)
                .bind(now)
                .bind(OFFSET_KEY)
                .bind(next_offset.to_string())
                .fetch_all(&mut **c)
                .await?
            }
            super::Tx::Postgres(c) => {
                let ids: Vec<i64> = batch.iter().map(|u| u.update_id).collect();
                let users: Vec<Option<i64>> = batch.iter().map(|u| u.user_id).collect();
                let payloads: Vec<&str> = batch.iter().map(|u| u.payload.as_str()).collect();
                let applied: Vec<bool> = ids.iter().map(|id| applying.contains(id)).collect();
                // The next offset is written by the same statement (one round trip).
                sqlx::query_as(
                    "WITH next_offset AS (
                         INSERT INTO kv (key, value) VALUES ($6, $7)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value)
                     INSERT INTO updates (update_id, user_id, payload, received_at, processed_at)
                     SELECT u.id, u.user_id, u.payload, $5, CASE WHEN u.applied THEN $5 END
                     FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::BOOLEAN[])
                          AS u (id, user_id, payload, applied)
                     ON CONFLICT (update_id) DO NOTHING RETURNING update_id",
                )
                .bind(ids)
                .bind(users)
                .bind(payloads)
                .bind(applied)
                .bind(now)
                .bind(OFFSET_KEY)
                .bind(next_offset.to_string())
                .fetch_all(&mut **c)
                .await?
            }
        }
    };
    if batch.is_empty() {
        tx.kv_set(OFFSET_KEY, &next_offset.to_string()).await?;
    }
    Ok(new.into_iter().map(|(id,)| id).collect())
}

/// Which of `users` have an update stored and not yet applied (and not set aside after
/// `max_attempts`): a new update of theirs must wait behind it.
pub async fn users_waiting(
    tx: &mut super::Tx,
    users: &[i64],
    max_attempts: i32,
) -> Result<HashSet<i64>, StorageError> {
    if users.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<(i64,)> = match &mut *tx {
        super::Tx::Sqlite(c) => {
            sqlx::query_as(
                "SELECT DISTINCT user_id FROM updates
                 WHERE processed_at IS NULL AND attempts < $1
                   AND user_id IN (SELECT value FROM json_each($2))",
            )
            .bind(max_attempts)
            .bind(super::later::to_json(&users)?)
            .fetch_all(&mut **c)
            .await?
        }
        super::Tx::Postgres(c) => {
            sqlx::query_as(
                "SELECT DISTINCT user_id FROM updates
                 WHERE processed_at IS NULL AND attempts < $1 AND user_id = ANY($2)",
            )
            .bind(max_attempts)
            .bind(users)
            .fetch_all(&mut **c)
            .await?
        }
    };
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Stores one update (webhook intake). Returns false when it was already stored.
pub async fn store_one(db: &Db, update: &IncomingUpdate, now: i64) -> Result<bool, StorageError> {
    let n = write_db!(db, |c| insert(update, now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// The one INSERT both intakes use; a replayed `update_id` is ignored.
fn insert<'q, DB: sqlx::Database>(
    u: &'q IncomingUpdate,
    now: i64,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(
        "INSERT INTO updates (update_id, user_id, payload, received_at)
         VALUES ($1, $2, $3, $4) ON CONFLICT (update_id) DO NOTHING",
    )
    .bind(u.update_id)
    .bind(u.user_id)
    .bind(u.payload.as_str())
    .bind(now)
}

/// The offset to ask `getUpdates` for, once something was stored.
pub async fn polling_offset(db: &Db) -> Result<Option<i64>, StorageError> {
    Ok(db.kv_get(OFFSET_KEY).await?.and_then(|v| v.parse().ok()))
}

/// Updates not yet applied, oldest first; an update that failed too often is left aside.
pub async fn pending(
    db: &Db,
    limit: i64,
    max_attempts: i32,
) -> Result<Vec<StoredUpdate>, StorageError> {
    Ok(with_db!(db, |c| {
        sqlx::query_as::<_, StoredUpdate>(
            "SELECT update_id, user_id, payload, attempts FROM updates
             WHERE processed_at IS NULL AND attempts < $1
             ORDER BY update_id LIMIT $2",
        )
        .bind(max_attempts)
        .bind(limit)
        .fetch_all(c)
        .await
    })?)
}

/// Marks an update applied at the start of the transaction that applies it; false when it was
/// applied already (a replay, or another replica got there first), and then nothing else is done.
/// Clears the error of an earlier failed attempt.
pub async fn begin_apply(
    tx: &mut super::Tx,
    update_id: i64,
    now: i64,
) -> Result<bool, StorageError> {
    let n = with_tx!(tx, |c| {
        sqlx::query(
            "UPDATE updates SET processed_at = $1, error = NULL
             WHERE update_id = $2 AND processed_at IS NULL",
        )
        .bind(now)
        .bind(update_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(n == 1)
}

/// What [`begin_apply_many`] found.
#[derive(Debug, Default)]
pub struct BegunMany {
    /// Updates now marked applied in this transaction: apply them.
    pub fresh: std::collections::HashSet<i64>,
    /// Lock keys another replica holds: their updates are left to it (never on SQLite).
    pub busy: std::collections::HashSet<i64>,
}

/// [`lock_and_begin_apply`] for several updates, `(update id, lock key)`, in one statement. On
/// SQLite (one process) nothing is ever busy.
pub async fn begin_apply_many(
    tx: &mut super::Tx,
    updates: &[(i64, i64)],
    now: i64,
) -> Result<BegunMany, StorageError> {
    let ids: Vec<i64> = updates.iter().map(|&(id, _)| id).collect();
    match tx {
        super::Tx::Sqlite(c) => {
            let ids =
                serde_json::to_string(&ids).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            let rows: Vec<(i64,)> = sqlx::query_as(
                "UPDATE updates SET processed_at = $1, error = NULL
                 WHERE update_id IN (SELECT value FROM json_each($2)) AND processed_at IS NULL
                 RETURNING update_id",
            )
            .bind(now)
            .bind(ids)
            .fetch_all(&mut **c)
            .await?;
            Ok(BegunMany {
                fresh: rows.into_iter().map(|(id,)| id).collect(),
                busy: Default::default(),
            })
        }
        super::Tx::Postgres(c) => {
            let keys: Vec<i64> = updates.iter().map(|&(_, key)| key).collect();
            // Each distinct key is tried once (a volatile function keeps the CTE materialised).
            let (locked, fresh): (Option<Vec<i64>>, Option<Vec<i64>>) = sqlx::query_as(
                "WITH k AS (SELECT DISTINCT key FROM UNNEST($2::BIGINT[]) AS t (key)),
                      l AS (SELECT key FROM k WHERE pg_try_advisory_xact_lock(key)),
                      u AS (UPDATE updates SET processed_at = $1, error = NULL
                            FROM UNNEST($3::BIGINT[], $2::BIGINT[]) AS x (id, key)
                            WHERE x.key IN (SELECT key FROM l) AND updates.update_id = x.id
                              AND updates.processed_at IS NULL
                            RETURNING updates.update_id)
                 SELECT (SELECT array_agg(key) FROM l), (SELECT array_agg(update_id) FROM u)",
            )
            .bind(now)
            .bind(&keys)
            .bind(&ids)
            .fetch_one(&mut **c)
            .await?;
            let locked: std::collections::HashSet<i64> =
                locked.unwrap_or_default().into_iter().collect();
            Ok(BegunMany {
                fresh: fresh.unwrap_or_default().into_iter().collect(),
                busy: keys.into_iter().filter(|k| !locked.contains(k)).collect(),
            })
        }
    }
}

/// What [`lock_and_begin_apply`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begun {
    /// The update is now marked applied in this transaction: apply it.
    Fresh,
    /// It was applied already; nothing to do.
    Done,
    /// Another replica holds this user's lock: leave the update to it.
    Busy,
}

/// Takes the user's replica lock without waiting (PostgreSQL's transaction-scoped advisory lock;
/// SQLite has one process) and [`begin_apply`], in one round trip. A row another replica marked
/// meanwhile is re-checked by PostgreSQL and left alone.
pub async fn lock_and_begin_apply(
    tx: &mut super::Tx,
    update_id: i64,
    lock_key: i64,
    now: i64,
) -> Result<Begun, StorageError> {
    let super::Tx::Postgres(c) = tx else {
        return Ok(if begin_apply(tx, update_id, now).await? {
            Begun::Fresh
        } else {
            Begun::Done
        });
    };
    let (got, marked): (bool, i64) = sqlx::query_as(
        "WITH l AS (SELECT pg_try_advisory_xact_lock($3) AS got),
              u AS (UPDATE updates SET processed_at = $1, error = NULL FROM l
                    WHERE l.got AND update_id = $2 AND processed_at IS NULL RETURNING update_id)
         SELECT (SELECT got FROM l), (SELECT COUNT(*) FROM u)",
    )
    .bind(now)
    .bind(update_id)
    .bind(lock_key)
    .fetch_one(&mut **c)
    .await?;
    Ok(match (got, marked) {
        (false, _) => Begun::Busy,
        (true, 0) => Begun::Done,
        (true, _) => Begun::Fresh,
    })
}

/// Notes why an applied update changed nothing (it was ignored), in the applying transaction.
pub async fn note_applied(
    tx: &mut super::Tx,
    update_id: i64,
    note: &str,
) -> Result<(), StorageError> {
    with_tx!(tx, |c| {
        sqlx::query("UPDATE updates SET error = $1 WHERE update_id = $2")
            .bind(note)
            .bind(update_id)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Records a failed attempt to apply an update (it will be retried).
pub async fn record_failure(db: &Db, update_id: i64, error: &str) -> Result<(), StorageError> {
    write_db!(db, |c| {
        sqlx::query("UPDATE updates SET attempts = attempts + 1, error = $1 WHERE update_id = $2")
            .bind(error)
            .bind(update_id)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// How many updates wait to be applied.
pub async fn pending_count(db: &Db) -> Result<i64, StorageError> {
    let (n,): (i64,) = with_db!(db, |c| {
        sqlx::query_as("SELECT COUNT(*) FROM updates WHERE processed_at IS NULL")
            .fetch_one(c)
            .await
    })?;
    Ok(n)
}
