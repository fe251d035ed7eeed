//! Production mode: replicas sharing one database, the webhook secret, and the state that
//! `/metrics` reads.
//!
//! On PostgreSQL each running replica holds a session advisory lock on its own negative key
//! (lead work uses positive keys, the Telegram user ids) over a dedicated connection. When the
//! process dies, its connection and lock go with it; the survivors then see the lock free and put
//! back the rows the dead replica had claimed. Each replica also enters its id in `replicas`, so
//! that the live ones can be counted (broadcasts share their rate among them). On SQLite only one process may run, which a lock
//! file next to the database enforces.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::{Db, StorageError, with_db, write_db};

const WEBHOOK_SECRET_KEY: &str = "webhook_secret";
const WEBHOOK_SET_KEY: &str = "webhook_registered";

/// This process as a replica: its id (stamped on the rows it claims) and what keeps it alive.
pub struct Instance {
    /// Negative, random; never a Telegram user id.
    pub id: i64,
    lease: Lease,
    /// SQLite: the locked file that keeps a second process out. Owned here only, so the lock
    /// goes the moment `run` ends, however it ends.
    _lock_file: Option<File>,
}

/// PostgreSQL: the connection holding the liveness lock, shared with the task that renews it.
#[derive(Clone)]
pub struct Lease {
    id: i64,
    conn: Option<Arc<tokio::sync::Mutex<PgConnection>>>,
}

/// Why this process cannot join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// A second process on the same SQLite database.
    #[error(
        "another leadbot is already running on the SQLite database {0}: SQLite allows one process; stop the other one, or move to PostgreSQL to run several replicas"
    )]
    SqliteBusy(String),
    /// The lock file could not be opened.
    #[error("cannot open the lock file {0}: {1}")]
    LockFile(String, std::io::Error),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A random negative instance id.
fn random_id() -> i64 {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        // No OS randomness: fall back to time and pid, still unique enough between replicas.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        bytes = (nanos ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
    }
    let n = i64::from_le_bytes(bytes) & i64::MAX;
    -(n.max(1))
}

/// The file of a `sqlite://` URL, when it names one.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

/// Joins as a replica: on PostgreSQL takes the liveness lock; on SQLite takes the lock file
/// `<database>.lock`, refusing when another process holds it.
pub async fn join(db: &Db, database_url: &str) -> Result<Instance, JoinError> {
    let id = random_id();
    match db {
        Db::Postgres(pool) => {
            let mut conn = pool.acquire().await.map_err(StorageError::from)?.detach();
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(id)
                .execute(&mut conn)
                .await
                .map_err(StorageError::from)?;
            register(pool, id).await?;
            Ok(Instance {
                id,
                lease: Lease {
                    id,
                    conn: Some(Arc::new(tokio::sync::Mutex::new(conn))),
                },
                _lock_file: None,
            })
        }
        Db::Sqlite(_) => {
            let Some(file) = sqlite_file(database_url) else {
                return Ok(Instance {
                    id,
                    lease: Lease { id, conn: None },
                    _lock_file: None,
                });
            };
            let mut lock_path = file.clone().into_os_string();
            lock_path.push(".lock");
            let lock_path = PathBuf::from(lock_path);
            let f = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| JoinError::LockFile(lock_path.display().to_string(), e))?;
            match f.try_lock() {
                Ok(()) => Ok(Instance {
                    id,
                    lease: Lease { id, conn: None },
                    _lock_file: Some(f),
                }),
                Err(std::fs::TryLockError::WouldBlock) => {
                    Err(JoinError::SqliteBusy(file.display().to_string()))
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    Err(JoinError::LockFile(lock_path.display().to_string(), e))
                }
            }
        }
    }
}

impl Instance {
    /// The liveness lease, for the task that renews it.
    pub fn lease(&self) -> Lease {
        self.lease.clone()
    }
}

impl Lease {
    /// The instance id.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Keeps the liveness lock (PostgreSQL): when its connection was lost (a database restart),
    /// takes the lock again on a new one. Until then other replicas may take over this one's
    /// in-flight rows, so a message being sent at that moment may go out twice.
    pub async fn keep_alive(&self, db: &Db) -> Result<(), StorageError> {
        let (Some(conn), Db::Postgres(pool)) = (&self.conn, db) else {
            return Ok(());
        };
        let mut conn = conn.lock().await;
        if conn.ping().await.is_ok() {
            return Ok(());
        }
        tracing::warn!("the replica's liveness connection was lost; taking the lock again");
        let mut fresh = pool.acquire().await?.detach();
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(self.id)
            .execute(&mut fresh)
            .await?;
        *conn = fresh;
        Ok(())
    }
}

/// A row's liveness lock is held: the advisory lock on a `bigint` key shows in `pg_locks` with
/// the key's high half in `classid`, its low half in `objid` and `objsubid` 1.
const LOCK_HELD: &str = "EXISTS (
    SELECT 1 FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid::bigint = ((replicas.id >> 32) & 4294967295)
      AND l.objid::bigint = (replicas.id & 4294967295))";

/// Enters this replica (whose liveness lock is held) in the registry, and forgets the replicas
/// that are gone.
async fn register(pool: &sqlx::PgPool, id: i64) -> Result<(), StorageError> {
    sqlx::query(&format!("DELETE FROM replicas WHERE NOT {LOCK_HELD}"))
        .execute(pool)
        .await?;
    sqlx::query("INSERT INTO replicas (id) VALUES ($1) ON CONFLICT (id) DO NOTHING")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// How many replicas are running on this database, this one included: on SQLite one; on
/// PostgreSQL the registered replicas whose liveness lock is held (at least one).
pub async fn live_replicas(db: &Db) -> Result<u32, StorageError> {
    match db {
        Db::Sqlite(_) => Ok(1),
        Db::Postgres(p) => {
            let (n,): (i64,) =
                sqlx::query_as(&format!("SELECT count(*) FROM replicas WHERE {LOCK_HELD}"))
                    .fetch_one(p)
                    .await?;
            Ok(u32::try_from(n).unwrap_or(u32::MAX).max(1))
        }
    }
}

/// Puts back rows claimed by replicas that are gone: on SQLite every row another run claimed; on
/// PostgreSQL the rows of instances whose liveness lock is free (and rows claimed before
/// instances existed). Returns how many rows were put back.
pub async fn release_orphans(db: &Db, me: i64) -> Result<u64, StorageError> {
    match db {
        Db::Sqlite(p) => {
            let mut n = 0;
            for table in ["outbox", "crm_events"] {
                n += sqlx::query(&format!(
                    "UPDATE {table} SET status = 'pending', claimed_by = NULL
                     WHERE status = 'sending' AND (claimed_by IS NULL OR claimed_by <> $1)"
                ))
                .bind(me)
                .execute(p)
                .await?
                .rows_affected();
            }
            Ok(n)
        }
        Db::Postgres(p) => {
            let owners: Vec<(Option<i64>,)> = sqlx::query_as(
                "SELECT DISTINCT claimed_by FROM outbox WHERE status = 'sending'
                 UNION SELECT DISTINCT claimed_by FROM crm_events WHERE status = 'sending'",
            )
            .fetch_all(p)
            .await?;
            let mut n = 0;
            for (owner,) in owners {
                if owner == Some(me) {
                    continue;
                }
                let mut tx = p.begin().await?;
                if let Some(owner) = owner {
                    // Free only when the owner's session (and so the owner) is gone.
                    let (free,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_xact_lock($1)")
                        .bind(owner)
                        .fetch_one(&mut *tx)
                        .await?;
                    if !free {
                        continue;
                    }
                }
                for table in ["outbox", "crm_events"] {
                    n += sqlx::query(&format!(
                        "UPDATE {table} SET status = 'pending', claimed_by = NULL
                         WHERE status = 'sending' AND claimed_by IS NOT DISTINCT FROM $1"
                    ))
                    .bind(owner)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
                tx.commit().await?;
            }
            Ok(n)
        }
    }
}

/// A table whose rows a worker claims (`sending`, stamped with its instance id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// Messages, claimed by the outbox worker (and for it by the transactions that enqueue them).
    Outbox,
    /// CRM events, claimed by the CRM worker.
    CrmEvents,
}

impl Claimed {
    fn table(self) -> &'static str {
        match self {
            Claimed::Outbox => "outbox",
            Claimed::CrmEvents => "crm_events",
        }
    }
}

/// Puts back the rows of `table` claimed by `me` (this process) that are `sending`: only for a
/// worker that holds none of them and with no claim for it under way (see `outbox::handover`),
/// when a claim's outcome was lost (its commit failed after the database may have applied it),
/// so that no row stays `sending` with no one to send it. Returns how many rows were put back.
pub async fn release_lost(db: &Db, table: Claimed, me: Option<i64>) -> Result<u64, StorageError> {
    let owner = if db.is_postgres() {
        "claimed_by IS NOT DISTINCT FROM $1"
    } else {
        "claimed_by IS $1"
    };
    let sql = format!(
        "UPDATE {} SET status = 'pending', claimed_by = NULL WHERE status = 'sending' AND {owner}",
        table.table()
    );
    Ok(write_db!(db, |c| sqlx::query(&sql)
        .bind(me)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?)
}

/// The stored webhook secret, created from `fresh` by the first replica that asks.
pub async fn webhook_secret(db: &Db, fresh: &str) -> Result<String, StorageError> {
    write_db!(db, |c| sqlx::query(
        "INSERT INTO kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING"
    )
    .bind(WEBHOOK_SECRET_KEY)
    .bind(fresh)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    db.kv_get(WEBHOOK_SECRET_KEY)
        .await?
        .ok_or_else(|| StorageError::Corrupt("the webhook secret vanished".into()))
}

/// Notes that this bot registered a webhook (so polling later knows to remove it first).
pub async fn note_webhook_registered(db: &Db, url: &str) -> Result<(), StorageError> {
    let mut tx = db.begin().await?;
    tx.kv_set(WEBHOOK_SET_KEY, url).await?;
    tx.commit().await
}

/// Whether this bot registered a webhook that was not removed since.
pub async fn webhook_registered(db: &Db) -> Result<bool, StorageError> {
    Ok(db.kv_get(WEBHOOK_SET_KEY).await?.is_some())
}

/// Forgets the note once the webhook is removed.
pub async fn note_webhook_removed(db: &Db) -> Result<(), StorageError> {
    write_db!(db, |c| sqlx::query("DELETE FROM kv WHERE key = $1")
        .bind(WEBHOOK_SET_KEY)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// A fresh webhook secret: 48 characters of A-Za-z0-9 from OS randomness.
pub fn generate_secret() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 48];
    if getrandom::getrandom(&mut bytes).is_err() {
        let seed = random_id().to_le_bytes();
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = seed[i % 8].wrapping_mul(31).wrapping_add(i as u8);
        }
    }
    // 62 does not divide 256; the slight bias is irrelevant for a 48-character secret.
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// Leads by temperature, for the `leads` gauge.
pub async fn leads_by_temperature(db: &Db) -> Result<Vec<(String, i64)>, StorageError> {
    Ok(with_db!(db, |c| sqlx::query_as::<_, (String, i64)>(
        "SELECT temperature, COUNT(*) FROM leads WHERE NOT erased GROUP BY temperature"
    )
    .fetch_all(c)
    .await)?)
}

/// The outbox's undelivered rows and the earliest due time among the waiting ones.
pub struct Backlog {
    pub depth: i64,
    pub oldest_due: Option<i64>,
}

/// The outbox backlog.
pub async fn outbox_backlog(db: &Db) -> Result<Backlog, StorageError> {
    let (depth, oldest_due): (i64, Option<i64>) = with_db!(db, |c| sqlx::query_as(
        "SELECT COUNT(*), MIN(CASE WHEN status = 'pending' THEN next_attempt_at END)
         FROM outbox WHERE status IN ('queued', 'pending', 'sending')"
    )
    .fetch_one(c)
    .await)?;
    Ok(Backlog { depth, oldest_due })
}

/// CRM events not yet delivered.
pub async fn crm_backlog(db: &Db) -> Result<i64, StorageError> {
    let (n,): (i64,) = with_db!(db, |c| sqlx::query_as(
        "SELECT COUNT(*) FROM crm_events WHERE status IN ('pending', 'sending')"
    )
    .fetch_one(c)
    .await)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file("sqlite://data/leadbot.db"),
            Some(PathBuf::from("data/leadbot.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:///var/lib/leadbot.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/leadbot.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://x/y"), None);
    }

    #[test]
    fn generated_secrets_are_what_telegram_accepts() {
        let a = generate_secret();
        let b = generate_secret();
        assert_eq!(a.len(), 48);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        assert!(random_id() < 0);
    }
}
