//! Every SQL statement leadbot runs, one file per aggregate.
//!
//! SQLite and PostgreSQL are both typed pools behind [`Db`]; most statements are written once in
//! SQL both accept (`$1` placeholders, `ON CONFLICT`, `RETURNING`) and run through the
//! [`with_db!`]/[`with_tx!`] macros, which expand the same code for each backend. Where the
//! dialects differ (row locks, `SKIP LOCKED`), the variants sit side by side. Times are Unix
//! milliseconds.

pub mod audience;
pub mod broadcasts;
pub mod checkpoint;
pub mod crm;
pub mod dialogues;
pub mod drafts;
pub mod later;
pub mod leads;
pub mod messages;
pub mod ops;
pub mod outbox;
pub mod recall;
pub mod reminders;
pub mod stats;
pub mod updates;

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A storage failure. The message is for logs, never for prospects.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database refused or failed a statement.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored JSON value no longer decodes.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StorageError {
    /// True when the database could not be reached or dropped the connection (it restarted, an
    /// operator terminated the session, the pool ran dry): the same work will succeed later, so it
    /// is retried rather than counted against the work itself.
    pub fn is_unavailable(&self) -> bool {
        let StorageError::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            // PostgreSQL: connection exceptions (08…), operator intervention (57P01 admin
            // shutdown, 57P02 crash shutdown, 57P03 cannot connect now); SQLite: busy/locked.
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                code.starts_with("08")
                    || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "5" | "6")
            }),
            _ => false,
        }
    }
}

/// A connection pool to SQLite or PostgreSQL.
#[derive(Clone, Debug)]
pub enum Db {
    /// The embedded default.
    Sqlite(SqlitePool),
    /// Production, and several replicas sharing one database.
    Postgres(PgPool),
}

/// An open write transaction.
pub enum Tx {
    /// SQLite, begun with `BEGIN IMMEDIATE` once this process's write gate is open.
    Sqlite(SqliteTx),
    /// PostgreSQL.
    Postgres(PgTx),
}

/// Runs the same code against whichever pool `db` holds; `$c` is the pool.
#[macro_export]
macro_rules! with_db {
    ($db:expr, |$c:ident| $body:expr) => {
        match $db {
            $crate::storage::Db::Sqlite($c) => $body,
            $crate::storage::Db::Postgres($c) => $body,
        }
    };
}

/// Runs the same code against whichever transaction `tx` holds; `$c` is the connection.
#[macro_export]
macro_rules! with_tx {
    ($tx:expr, |$c:ident| $body:expr) => {
        match $tx {
            $crate::storage::Tx::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::storage::Tx::Postgres(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
}

/// Like [`with_db!`] for a statement that writes outside a transaction: on SQLite it first waits
/// for the process's write gate, so it queues behind the open write transaction instead of
/// meeting SQLite's busy handler (which sleeps between tries, 1 ms at first and up to 100 ms).
#[macro_export]
macro_rules! write_db {
    ($db:expr, |$c:ident| $body:expr) => {
        match $db {
            $crate::storage::Db::Sqlite($c) => match $crate::storage::sqlite_write_turn($c).await {
                Ok(_gate) => $body,
                Err(e) => Err(e),
            },
            $crate::storage::Db::Postgres($c) => $body,
        }
    };
}

pub(crate) use {with_db, with_tx, write_db};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Db {
    /// Connects to `sqlite://…` (created if missing, WAL) or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Db, StorageError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // No bitmap scans: a bitmap scan cannot mark an index entry dead when it finds its
            // row version gone, so the outbox's claims, which look for the few rows `pending`
            // among many that were, read every dead entry again on each claim until a vacuum
            // (in the benchmark 28,000 entries and 1,900 pages, 4-7 ms a claim, three claims a
            // step). A plain index scan marks them the first time (then 0.07 ms). The bot's other
            // queries go by index or read the table.
            let opts = PgConnectOptions::from_str(url)?.options([("enable_bitmapscan", "off")]);
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            Ok(Db::Postgres(pool))
        } else {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // Statement journals (a multi-row statement inside a transaction keeps one in case
                // it fails halfway) in memory rather than in a temporary file.
                .pragma("temp_store", "memory")
                // A page cache of about 1 MB per connection instead of SQLite's 2 MB: the
                // operating system caches the file as well, and over a long run the two caches
                // filled took about 2 MB more at the peak (38.6 against 40.5 MB over 400,000
                // steps) for about 5% more steps a second, within the runs' spread.
                .pragma("cache_size", "-1000")
                // A writer copies the log into the database file only past this many pages: the
                // bot's checkpointer does it beside the writers (see `checkpoint`).
                .pragma("wal_autocheckpoint", checkpoint::BACKSTOP_PAGES.to_string());
            // Two connections: one for the write transaction of the moment (writers take turns
            // at the write gate anyway) and one for a read beside it. Each connection keeps a
            // thread and a page cache of its own; four took about 3 MB more at the peak.
            let pool = SqlitePoolOptions::new()
                .max_connections(2)
                // A connection to a local file does not go stale: no ping before each use.
                .test_before_acquire(false)
                .connect_with(opts)
                .await?;
            Ok(Db::Sqlite(pool))
        }
    }

    /// Applies the migrations of this backend.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        match self {
            Db::Sqlite(p) => SQLITE_MIGRATIONS.run(p).await?,
            Db::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await?,
        }
        Ok(())
    }

    /// Begins a write transaction.
    pub async fn begin(&self) -> Result<Tx, StorageError> {
        Ok(match self {
            Db::Sqlite(p) => {
                // Writers queue here, fairly and without holding a connection, rather than in
                // SQLite's busy handler, which sleeps up to 100 ms between tries and starves the
                // outbox worker's records of what Telegram accepted (each a possible duplicate
                // after a crash).
                let gate = sqlite_write_turn(p).await?;
                Tx::Sqlite(SqliteTx {
                    tx: p.begin_with("BEGIN IMMEDIATE").await?,
                    _gate: gate,
                    later: later::Later::default(),
                })
            }
            Db::Postgres(p) => Tx::Postgres(PgTx {
                tx: p.begin().await?,
                pool: p.clone(),
                later: later::Later::default(),
            }),
        })
    }

    /// True for PostgreSQL, where row locks and `SKIP LOCKED` exist.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// Answers when the database does (for health checks).
    pub async fn ping(&self) -> Result<(), StorageError> {
        with_db!(self, |c| sqlx::query("SELECT 1")
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        with_db!(self, |c| c.close().await)
    }

    /// Reads a value from the key-value table.
    pub async fn kv_get(&self, key: &str) -> Result<Option<String>, StorageError> {
        let v: Option<(String,)> = with_db!(self, |c| {
            sqlx::query_as("SELECT value FROM kv WHERE key = $1")
                .bind(key)
                .fetch_optional(c)
                .await
        })?;
        Ok(v.map(|(v,)| v))
    }
}

/// A SQLite write transaction and the process's write gate it holds until it ends.
pub struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
    _gate: OwnedSemaphorePermit,
    later: later::Later,
}

/// A PostgreSQL transaction.
pub struct PgTx {
    tx: Transaction<'static, Postgres>,
    /// For the statement run after the commit (see [`Tx::commit`]).
    pool: PgPool,
    later: later::Later,
}

impl std::ops::Deref for PgTx {
    type Target = sqlx::PgConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for PgTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

impl std::ops::Deref for SqliteTx {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for SqliteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// Waits for this process's turn to write to a SQLite file; the turn lasts until the permit is
/// dropped.
pub(crate) async fn sqlite_write_turn(
    pool: &SqlitePool,
) -> Result<OwnedSemaphorePermit, sqlx::Error> {
    sqlite_write_gate(pool)
        .acquire_owned()
        .await
        .map_err(|_| sqlx::Error::PoolClosed)
}

/// One write gate per SQLite file: SQLite has one writer at a time anyway.
fn sqlite_write_gate(pool: &SqlitePool) -> Arc<Semaphore> {
    static GATES: LazyLock<Mutex<HashMap<PathBuf, Arc<Semaphore>>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));
    let file = pool.connect_options().get_filename().to_path_buf();
    let mut gates = GATES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    gates
        .entry(file)
        .or_insert_with(|| Arc::new(Semaphore::new(1)))
        .clone()
}

impl Tx {
    /// Writes what was left for the commit (see [`later::Later`]), then commits.
    ///
    /// On PostgreSQL, a chat's message this transaction enqueued behind one in flight is promoted
    /// again once committed: the outbox worker may have recorded the one in flight meanwhile, its
    /// promotion blind to this transaction's rows (see [`outbox::promote`]).
    pub async fn commit(mut self) -> Result<(), StorageError> {
        later::flush(&mut self).await?;
        match self {
            Tx::Sqlite(t) => t.tx.commit().await?,
            Tx::Postgres(mut t) => {
                let queued = std::mem::take(&mut t.later.queued_chats);
                t.tx.commit().await?;
                if !queued.is_empty()
                    && let Err(e) = outbox::promote(&Db::Postgres(t.pool), &queued).await
                {
                    tracing::warn!(error = %e, "cannot release queued messages now; the timer will");
                }
            }
        }
        Ok(())
    }

    /// Whether [`Tx::commit`] will promote messages this transaction enqueued behind others
    /// (PostgreSQL only), which some claim must then take. Asked after the rows were written.
    pub fn promotes_at_commit(&self) -> bool {
        match self {
            Tx::Sqlite(_) => false,
            Tx::Postgres(t) => !t.later.queued_chats.is_empty(),
        }
    }

    /// The rows this transaction writes at its commit.
    fn later(&mut self) -> &mut later::Later {
        match self {
            Tx::Sqlite(t) => &mut t.later,
            Tx::Postgres(t) => &mut t.later,
        }
    }

    /// Writes a value into the key-value table.
    pub async fn kv_set(&mut self, key: &str, value: &str) -> Result<(), StorageError> {
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO kv (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(key)
            .bind(value)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::StorageError;

    #[test]
    fn an_unreachable_database_is_told_apart_from_a_failing_statement() {
        assert!(StorageError::Database(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(
            StorageError::Database(sqlx::Error::Io(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset
            )))
            .is_unavailable()
        );
        assert!(!StorageError::Database(sqlx::Error::RowNotFound).is_unavailable());
        assert!(!StorageError::Corrupt("bad json".into()).is_unavailable());
    }
}
