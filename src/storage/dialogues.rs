//! Dialogue versions by content hash, so a lead stays on the version it started.

use super::{Db, StorageError, Tx, with_tx, write_db};

/// A stored dialogue version.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredVersion {
    pub version: String,
    pub dialogue_id: String,
    pub locale: String,
    pub file_name: String,
    pub source: String,
}

/// Stores a version unless it is already known.
pub async fn remember(db: &Db, v: &StoredVersion, now: i64) -> Result<(), StorageError> {
    write_db!(db, |c| {
        sqlx::query(
            "INSERT INTO dialogue_versions (version, dialogue_id, locale, file_name, source, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (version) DO NOTHING",
        )
        .bind(&v.version)
        .bind(&v.dialogue_id)
        .bind(&v.locale)
        .bind(&v.file_name)
        .bind(&v.source)
        .bind(now)
        .execute(c).await.map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Loads a version's source text inside a transaction (see `outbox::by_key_in` for why).
pub async fn find_in(tx: &mut Tx, version: &str) -> Result<Option<StoredVersion>, StorageError> {
    Ok(with_tx!(tx, |c| {
        sqlx::query_as::<_, StoredVersion>(
            "SELECT version, dialogue_id, locale, file_name, source FROM dialogue_versions WHERE version = $1",
        )
        .bind(version)
        .fetch_optional(c)
        .await
    })?)
}
