//! SQLite's log copied back into the database file beside the writers.
//!
//! In WAL mode every commit appends the pages it changed to the log, and the commit that takes
//! the log past `wal_autocheckpoint` pages copies the log back into the database file before it
//! returns. With the default of 1,000 pages that was about one commit in a hundred at 500 steps a
//! second, each 4–5 ms of page copies (a system call per page) inside the write turn, so the
//! prospects whose updates queued behind it waited too: most of the open loop's p99. Here a
//! connection of its own copies the log every [`BUSY_PAUSE`] while the bot writes, outside the
//! write turn (a `PASSIVE` checkpoint waits for no reader or writer), and the writers' own
//! checkpoint is only a backstop at [`BACKSTOP_PAGES`], for when this one falls behind or is not
//! running (the command-line tools). The log restarts from its beginning once it is all copied
//! and nobody reads from it, so it stays bounded (about [`BACKSTOP_PAGES`] pages of 4 KB).

use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection, SqlitePool};
use tokio::sync::watch;

use super::StorageError;

/// The log's length, in pages, at which a committing writer checkpoints it itself.
pub const BACKSTOP_PAGES: u32 = 4000;

/// The pause between checkpoints while the log grows.
pub const BUSY_PAUSE: Duration = Duration::from_millis(20);

/// The longest pause while nothing is written (each idle pass doubles it).
pub const IDLE_PAUSE: Duration = Duration::from_secs(1);

/// What one checkpoint found: the log's length and how much of it is in the database file now
/// (both in pages), and whether it could not run (another checkpoint was running).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pass {
    pub busy: bool,
    pub log: i64,
    pub copied: i64,
}

/// Copies SQLite's log into the database file on a connection of its own.
pub struct Checkpointer {
    conn: SqliteConnection,
}

impl Checkpointer {
    /// Opens the checkpoint's connection to the pool's database file.
    pub async fn open(pool: &SqlitePool) -> Result<Checkpointer, StorageError> {
        let opts: SqliteConnectOptions = (*pool.connect_options()).clone();
        // It reads no tables: a small page cache is enough.
        let conn = opts.pragma("cache_size", "-64").connect().await?;
        Ok(Checkpointer { conn })
    }

    /// One checkpoint: copies what it can of the log without waiting for anyone.
    pub async fn once(&mut self) -> Result<Pass, StorageError> {
        let (busy, log, copied): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut self.conn)
            .await?;
        Ok(Pass {
            busy: busy != 0,
            log,
            copied,
        })
    }

    /// Checkpoints until `shutdown` turns true: every [`BUSY_PAUSE`] while the log changes, less
    /// and less often (up to [`IDLE_PAUSE`]) while it does not.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut pause = BUSY_PAUSE;
        let mut last = Pass::default();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
            match self.once().await {
                Ok(pass) => {
                    pause = next_pause(pause, last, pass);
                    last = pass;
                }
                Err(e) => {
                    // The writers' own checkpoint still bounds the log meanwhile.
                    tracing::warn!(error = %e, "cannot checkpoint the SQLite log; retrying");
                    pause = IDLE_PAUSE;
                }
            }
        }
        let _ = self.conn.close().await;
    }
}

/// The pause before the next checkpoint: short while the log changed since the last one (it grew,
/// or restarted), or the last could not run; doubling up to [`IDLE_PAUSE`] while nothing happens.
pub fn next_pause(pause: Duration, last: Pass, pass: Pass) -> Duration {
    let idle = !pass.busy && pass.log == last.log && pass.copied == last.copied;
    if idle {
        (pause * 2).min(IDLE_PAUSE)
    } else {
        BUSY_PAUSE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(log: i64, copied: i64) -> Pass {
        Pass {
            busy: false,
            log,
            copied,
        }
    }

    #[test]
    fn the_pause_is_short_while_the_log_changes_and_grows_while_it_does_not() {
        assert_eq!(
            next_pause(BUSY_PAUSE, pass(10, 10), pass(40, 40)),
            BUSY_PAUSE
        );
        // Restarted and written again: the same length by chance still shows in what was copied.
        assert_eq!(
            next_pause(Duration::from_millis(80), pass(40, 40), pass(40, 12)),
            BUSY_PAUSE
        );
        let mut pause = BUSY_PAUSE;
        let mut seen = Vec::new();
        for _ in 0..10 {
            pause = next_pause(pause, pass(40, 40), pass(40, 40));
            seen.push(pause.as_millis());
        }
        assert_eq!(seen, [40, 80, 160, 320, 640, 1000, 1000, 1000, 1000, 1000]);
        // Written again after a long quiet: short at once.
        assert_eq!(next_pause(IDLE_PAUSE, pass(40, 40), pass(3, 3)), BUSY_PAUSE);
        // Another checkpoint was running: try again soon.
        let busy = Pass {
            busy: true,
            ..pass(40, 40)
        };
        assert_eq!(next_pause(IDLE_PAUSE, pass(40, 40), busy), BUSY_PAUSE);
    }

    #[tokio::test]
    async fn the_log_is_copied_beside_the_writers_and_starts_over_once_copied() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("leads.db").display());
        let db = crate::storage::Db::connect(&url).await.expect("database");
        db.migrate().await.expect("migrations");
        let crate::storage::Db::Sqlite(pool) = &db else {
            panic!("a SQLite pool");
        };
        // Writers checkpoint only as a backstop.
        let (backstop,): (i64,) = sqlx::query_as("PRAGMA wal_autocheckpoint")
            .fetch_one(pool)
            .await
            .expect("pragma");
        assert_eq!(backstop, i64::from(BACKSTOP_PAGES));
        let mut checkpointer = Checkpointer::open(pool).await.expect("connection");
        checkpointer
            .once()
            .await
            .expect("checkpoint of the migrations");
        // A large transaction stays in the log until the checkpointer copies it.
        let mut tx = db.begin().await.expect("begin");
        for i in 0..200 {
            tx.kv_set(&format!("k{i}"), &"x".repeat(2000))
                .await
                .expect("write");
        }
        tx.commit().await.expect("commit");
        let large = checkpointer.once().await.expect("checkpoint");
        assert!(!large.busy && large.log > 100, "{large:?}");
        assert_eq!(large.copied, large.log, "all of it copied: nobody reads");
        // All of it copied, the next writer starts the log over: it holds only the small one.
        let mut tx = db.begin().await.expect("begin");
        tx.kv_set("k0", "y").await.expect("write");
        tx.commit().await.expect("commit");
        let small = checkpointer.once().await.expect("checkpoint");
        assert!(small.log > 0 && small.log < 10, "{small:?} after {large:?}");
        assert_eq!(small.copied, small.log);
        let value = db.kv_get("k0").await.expect("read");
        assert_eq!(value.as_deref(), Some("y"));
    }
}
