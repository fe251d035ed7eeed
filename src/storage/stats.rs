//! Figures for `/stats` and `leadbot stats`.

use super::{Db, StorageError, with_db};

/// Leads that entered each step of a dialogue.
pub async fn funnel(db: &Db, since: i64) -> Result<Vec<(String, String, i64)>, StorageError> {
    Ok(with_db!(db, |c| {
        sqlx::query_as::<_, (String, String, i64)>(
            "SELECT dialogue_id, step, COUNT(DISTINCT lead_id) FROM step_events
             WHERE created_at >= $1 GROUP BY dialogue_id, step",
        )
        .bind(since)
        .fetch_all(c)
        .await
    })?)
}

/// Leads by temperature.
pub async fn temperatures(db: &Db, since: i64) -> Result<Vec<(String, i64)>, StorageError> {
    Ok(with_db!(db, |c| {
        sqlx::query_as::<_, (String, i64)>(
            "SELECT temperature, COUNT(*) FROM leads WHERE created_at >= $1 GROUP BY temperature",
        )
        .bind(since)
        .fetch_all(c)
        .await
    })?)
}

/// Leads and hot leads by source, largest first.
pub async fn sources(db: &Db, since: i64) -> Result<Vec<(String, i64, i64)>, StorageError> {
    Ok(with_db!(db, |c| {
        sqlx::query_as::<_, (String, i64, i64)>(
            "SELECT source, COUNT(*), SUM(CASE WHEN temperature = 'hot' THEN 1 ELSE 0 END)
             FROM leads WHERE created_at >= $1 GROUP BY source ORDER BY COUNT(*) DESC, source LIMIT 30",
        )
        .bind(since)
        .fetch_all(c)
        .await
    })?)
}

/// Statuses (won, lost, in work...).
pub async fn statuses(db: &Db, since: i64) -> Result<Vec<(String, i64)>, StorageError> {
    Ok(with_db!(db, |c| {
        sqlx::query_as::<_, (String, i64)>(
            "SELECT status, COUNT(*) FROM leads WHERE created_at >= $1 GROUP BY status",
        )
        .bind(since)
        .fetch_all(c)
        .await
    })?)
}

/// Times from turning hot to a manager's first reply, in ms.
pub async fn reply_times(db: &Db, since: i64) -> Result<Vec<i64>, StorageError> {
    let rows: Vec<(i64,)> = with_db!(db, |c| {
        sqlx::query_as::<_, (i64,)>(
            "SELECT first_reply_at - hot_at FROM leads
             WHERE created_at >= $1 AND first_reply_at IS NOT NULL AND hot_at IS NOT NULL",
        )
        .bind(since)
        .fetch_all(c)
        .await
    })?;
    Ok(rows.into_iter().map(|(t,)| t.max(0)).collect())
}
