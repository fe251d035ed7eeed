//! Every SQL statement leadbot runs, one file per aggregate.
//!
//! SQLite and PostgreSQL are both typed pools behind [`Db`]; most statements are written once in
//! SQL both accept (`$1` placeholders, `ON CONFLICT`, `RETURNING`) and run through the
//! [`with_db!`]/[`with_tx!`] macros, which expand the same code for each backend. Where the
//! dialects differ (row locks, `SKIP LOCKED`), the variants sit side by side. Times are Unix
//! milliseconds.

pub mod dialogues;
pub mod leads;
pub mod messages;
pub mod outbox;
pub mod stats;
pub mod updates;

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

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
    /// SQLite, begun with `BEGIN IMMEDIATE` so writers queue instead of failing.
    Sqlite(Transaction<'static, Sqlite>),
    /// PostgreSQL.
    Postgres(Transaction<'static, Postgres>),
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

pub(crate) use {with_db, with_tx};

/// SQLite's single writer: per database file, a pool of one connection that every write
/// transaction goes through. Writers queue in the pool (in order, without sleeping) instead of
/// meeting SQLite's busy handler, which polls with sleeps of up to 100 ms. Reads and one-statement
/// writes keep using the main pool; WAL lets readers run beside the writer.
static SQLITE_WRITERS: LazyLock<Mutex<HashMap<PathBuf, SqlitePool>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn sqlite_writers() -> std::sync::MutexGuard<'static, HashMap<PathBuf, SqlitePool>> {
    SQLITE_WRITERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The write pool of a database, unless it was closed.
fn sqlite_writer(pool: &SqlitePool) -> Option<SqlitePool> {
    let file = pool.connect_options().get_filename().to_path_buf();
    sqlite_writers()
        .get(&file)
        .filter(|w| !w.is_closed())
        .cloned()
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Db {
    /// Connects to `sqlite://…` (created if missing, WAL) or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Db, StorageError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)?;
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
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(opts.clone())
                .await?;
            // In-memory databases are private to a connection: they keep a single pool.
            if !opts.get_filename().as_os_str().is_empty() && !url.contains(":memory:") {
                let writer = SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts.clone())
                    .await?;
                sqlite_writers().insert(opts.get_filename().to_path_buf(), writer);
            }
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
            Db::Sqlite(p) => match sqlite_writer(p) {
                Some(w) => Tx::Sqlite(w.begin_with("BEGIN IMMEDIATE").await?),
                None => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            },
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
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
        if let Db::Sqlite(p) = self {
            let file = p.connect_options().get_filename().to_path_buf();
            let writer = sqlite_writers().remove(&file);
            if let Some(w) = writer {
                w.close().await;
            }
        }
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

impl Tx {
    /// Commits the transaction.
    pub async fn commit(self) -> Result<(), StorageError> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
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
