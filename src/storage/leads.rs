//! Leads: contact data, source, session, score, temperature, status and flags.

use super::{Db, StorageError, Tx, with_db, with_tx, write_db};

/// A lead as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Lead {
    pub id: i64,
    pub telegram_id: Option<i64>,
    pub chat_id: Option<i64>,
    pub username: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub language_code: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub source: String,
    pub score: i32,
    pub temperature: String,
    pub status: String,
    pub unsubscribed: bool,
    pub blocked: bool,
    pub erased: bool,
    pub consent_at: Option<i64>,
    pub consent_version: Option<String>,
    pub marketing_consent_at: Option<i64>,
    pub marketing_consent_version: Option<String>,
    pub dialogue_id: Option<String>,
    pub dialogue_version: Option<String>,
    pub session: String,
    pub created_at: i64,
    pub last_activity_at: i64,
    pub last_inbound_at: Option<i64>,
    pub hot_at: Option<i64>,
    pub sla_reminders: i32,
    pub first_reply_at: Option<i64>,
    pub topic_id: Option<i64>,
    pub manager_id: Option<i64>,
    pub manager_name: Option<String>,
    pub taken_at: Option<i64>,
    pub closed_at: Option<i64>,
}

const COLUMNS: &str = "id, telegram_id, chat_id, username, first_name, last_name, language_code, name, \
    phone, email, source, score, temperature, status, unsubscribed, blocked, erased, consent_at, \
    consent_version, marketing_consent_at, marketing_consent_version, dialogue_id, dialogue_version, \
    session, created_at, last_activity_at, last_inbound_at, hot_at, sla_reminders, first_reply_at, topic_id, manager_id, manager_name, taken_at, closed_at";

/// What is known about a Telegram user when they first write.
#[derive(Debug, Clone)]
pub struct NewLead<'a> {
    pub telegram_id: i64,
    pub chat_id: i64,
    pub username: Option<&'a str>,
    pub first_name: Option<&'a str>,
    pub last_name: Option<&'a str>,
    pub language_code: Option<&'a str>,
    pub source: &'a str,
}

/// Finds the lead of a Telegram user and locks its row until the transaction ends (PostgreSQL;
/// SQLite's write transaction already excludes other writers).
pub async fn lock_by_telegram(tx: &mut Tx, telegram_id: i64) -> Result<Option<Lead>, StorageError> {
    Ok(match tx {
        Tx::Sqlite(t) => {
            sqlx::query_as::<_, Lead>(&format!(
                "SELECT {COLUMNS} FROM leads WHERE telegram_id = $1"
            ))
            .bind(telegram_id)
            .fetch_optional(&mut **t)
            .await?
        }
        Tx::Postgres(t) => {
            sqlx::query_as::<_, Lead>(&format!(
                "SELECT {COLUMNS} FROM leads WHERE telegram_id = $1 FOR UPDATE"
            ))
            .bind(telegram_id)
            .fetch_optional(&mut **t)
            .await?
        }
    })
}

/// Creates a lead; a concurrent creation of the same user is resolved by the unique key.
pub async fn insert(tx: &mut Tx, new: &NewLead<'_>, now: i64) -> Result<Lead, StorageError> {
    with_tx!(tx, |c| {
        sqlx::query(
            "INSERT INTO leads (telegram_id, chat_id, username, first_name, last_name, language_code,
                                source, created_at, last_activity_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (telegram_id) DO NOTHING",
        )
        .bind(new.telegram_id)
        .bind(new.chat_id)
        .bind(new.username)
        .bind(new.first_name)
        .bind(new.last_name)
        .bind(new.language_code)
        .bind(new.source)
        .bind(now)
        .execute(c).await.map(|r| r.rows_affected())
    })?;
    lock_by_telegram(tx, new.telegram_id)
        .await?
        .ok_or_else(|| StorageError::Corrupt("lead vanished right after insert".into()))
}

/// Writes back every mutable field of a lead.
pub async fn save(tx: &mut Tx, l: &Lead) -> Result<(), StorageError> {
    with_tx!(tx, |c| {
        sqlx::query(
            "UPDATE leads SET telegram_id = $2, chat_id = $3, username = $4, first_name = $5, last_name = $6,
                language_code = $7, name = $8, phone = $9, email = $10, source = $11, score = $12,
                temperature = $13, status = $14, unsubscribed = $15, blocked = $16, erased = $17,
                consent_at = $18, consent_version = $19, marketing_consent_at = $20,
                marketing_consent_version = $21, dialogue_id = $22, dialogue_version = $23, session = $24,
                last_activity_at = $25, last_inbound_at = $26, hot_at = $27, manager_id = $28,
                manager_name = $29, taken_at = $30, closed_at = $31, sla_reminders = $32,
                first_reply_at = $33, topic_id = $34
             WHERE id = $1",
        )
        .bind(l.id)
        .bind(l.telegram_id)
        .bind(l.chat_id)
        .bind(&l.username)
        .bind(&l.first_name)
        .bind(&l.last_name)
        .bind(&l.language_code)
        .bind(&l.name)
        .bind(&l.phone)
        .bind(&l.email)
        .bind(&l.source)
        .bind(l.score)
        .bind(&l.temperature)
        .bind(&l.status)
        .bind(l.unsubscribed)
        .bind(l.blocked)
        .bind(l.erased)
        .bind(l.consent_at)
        .bind(&l.consent_version)
        .bind(l.marketing_consent_at)
        .bind(&l.marketing_consent_version)
        .bind(&l.dialogue_id)
        .bind(&l.dialogue_version)
        .bind(&l.session)
        .bind(l.last_activity_at)
        .bind(l.last_inbound_at)
        .bind(l.hot_at)
        .bind(l.manager_id)
        .bind(&l.manager_name)
        .bind(l.taken_at)
        .bind(l.closed_at)
        .bind(l.sla_reminders)
        .bind(l.first_reply_at)
        .bind(l.topic_id)
        .execute(c).await.map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Marks the lead of a chat blocked (403 from Telegram) or unblocked.
pub async fn set_blocked_by_chat(db: &Db, chat_id: i64, blocked: bool) -> Result<(), StorageError> {
    write_db!(db, |c| {
        sqlx::query("UPDATE leads SET blocked = $1 WHERE chat_id = $2")
            .bind(blocked)
            .bind(chat_id)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Remembers the forum topic created for a lead.
pub async fn set_topic(db: &Db, id: i64, topic_id: i64) -> Result<(), StorageError> {
    write_db!(db, |c| {
        sqlx::query("UPDATE leads SET topic_id = $1 WHERE id = $2")
            .bind(topic_id)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// The lead whose forum topic this is.
pub async fn by_topic(tx: &mut Tx, topic_id: i64) -> Result<Option<i64>, StorageError> {
    let row: Option<(i64,)> = with_tx!(tx, |c| {
        sqlx::query_as("SELECT id FROM leads WHERE topic_id = $1 ORDER BY id LIMIT 1")
            .bind(topic_id)
            .fetch_optional(c)
            .await
    })?;
    Ok(row.map(|(id,)| id))
}

/// A lead by id, read through a transaction (see `messages::history_in` for why).
pub async fn get_in(tx: &mut Tx, id: i64) -> Result<Option<Lead>, StorageError> {
    Ok(with_tx!(tx, |c| {
        sqlx::query_as::<_, Lead>(&format!("SELECT {COLUMNS} FROM leads WHERE id = $1"))
            .bind(id)
            .fetch_optional(c)
            .await
    })?)
}

/// A lead by id.
pub async fn get(db: &Db, id: i64) -> Result<Option<Lead>, StorageError> {
    Ok(with_db!(db, |c| {
        sqlx::query_as::<_, Lead>(&format!("SELECT {COLUMNS} FROM leads WHERE id = $1"))
            .bind(id)
            .fetch_optional(c)
            .await
    })?)
}

/// A lead by Telegram user id.
pub async fn by_telegram(db: &Db, telegram_id: i64) -> Result<Option<Lead>, StorageError> {
    Ok(with_db!(db, |c| {
        sqlx::query_as::<_, Lead>(&format!(
            "SELECT {COLUMNS} FROM leads WHERE telegram_id = $1"
        ))
        .bind(telegram_id)
        .fetch_optional(c)
        .await
    })?)
}

/// Filters for the export.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    /// Only these temperatures (empty: all).
    pub temperatures: Vec<String>,
    /// Only leads created at or after this time (ms).
    pub since: Option<i64>,
}

/// Leads for export, oldest first; erased leads are left out.
pub async fn export(db: &Db, filter: &ExportFilter) -> Result<Vec<Lead>, StorageError> {
    let rows = with_db!(db, |c| {
        sqlx::query_as::<_, Lead>(&format!(
            "SELECT {COLUMNS} FROM leads WHERE erased = FALSE AND created_at >= $1 ORDER BY id"
        ))
        .bind(filter.since.unwrap_or(i64::MIN))
        .fetch_all(c)
        .await
    })?;
    Ok(rows
        .into_iter()
        .filter(|l| filter.temperatures.is_empty() || filter.temperatures.contains(&l.temperature))
        .collect())
}

/// How many leads are stored.
pub async fn count(db: &Db) -> Result<i64, StorageError> {
    let (n,): (i64,) = with_db!(db, |c| sqlx::query_as("SELECT COUNT(*) FROM leads")
        .fetch_one(c)
        .await)?;
    Ok(n)
}

/// Finds a lead by id and locks its row until the transaction ends (PostgreSQL).
pub async fn lock_by_id(tx: &mut Tx, id: i64) -> Result<Option<Lead>, StorageError> {
    Ok(match tx {
        Tx::Sqlite(t) => {
            sqlx::query_as::<_, Lead>(&format!("SELECT {COLUMNS} FROM leads WHERE id = $1"))
                .bind(id)
                .fetch_optional(&mut **t)
                .await?
        }
        Tx::Postgres(t) => {
            sqlx::query_as::<_, Lead>(&format!(
                "SELECT {COLUMNS} FROM leads WHERE id = $1 FOR UPDATE"
            ))
            .bind(id)
            .fetch_optional(&mut **t)
            .await?
        }
    })
}

/// Leads created in a window, by temperature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NewLeads {
    pub total: i64,
    pub hot: i64,
    pub warm: i64,
    pub cold: i64,
}

/// How many leads were created in `[from, to)`, by temperature.
pub async fn created_between(db: &Db, from: i64, to: i64) -> Result<NewLeads, StorageError> {
    let rows: Vec<(String, i64)> = with_db!(db, |c| {
        sqlx::query_as(
            "SELECT temperature, COUNT(*) FROM leads
             WHERE created_at >= $1 AND created_at < $2 GROUP BY temperature",
        )
        .bind(from)
        .bind(to)
        .fetch_all(c)
        .await
    })?;
    let mut n = NewLeads::default();
    for (t, count) in rows {
        n.total += count;
        match t.as_str() {
            "hot" => n.hot += count,
            "warm" => n.warm += count,
            _ => n.cold += count,
        }
    }
    Ok(n)
}

/// Hot leads nobody took after every SLA re-announcement, longest waiting first.
pub async fn unclaimed_hot(
    db: &Db,
    min_reminders: i32,
    limit: i64,
) -> Result<Vec<Lead>, StorageError> {
    Ok(with_db!(db, |c| {
        sqlx::query_as::<_, Lead>(&format!(
            "SELECT {COLUMNS} FROM leads
             WHERE temperature = 'hot' AND manager_id IS NULL AND erased = FALSE
               AND status NOT IN ('won', 'lost') AND sla_reminders >= $1
             ORDER BY hot_at LIMIT $2"
        ))
        .bind(min_reminders)
        .bind(limit)
        .fetch_all(c)
        .await
    })?)
}

/// Open leads for `/leads`: hot first, then by score, then longest waiting; at most `limit`.
pub async fn top(
    db: &Db,
    temperature: Option<&str>,
    manager_id: Option<i64>,
    limit: i64,
) -> Result<Vec<Lead>, StorageError> {
    Ok(with_db!(db, |c| {
        sqlx::query_as::<_, Lead>(&format!(
            "SELECT {COLUMNS} FROM leads
             WHERE erased = FALSE AND status NOT IN ('won', 'lost')
               AND ($1 IS NULL OR temperature = $1) AND ($2 IS NULL OR manager_id = $2)
             ORDER BY CASE temperature WHEN 'hot' THEN 0 WHEN 'warm' THEN 1 ELSE 2 END,
                      score DESC, COALESCE(last_inbound_at, created_at) ASC
             LIMIT $3"
        ))
        .bind(temperature)
        .bind(manager_id)
        .bind(limit)
        .fetch_all(c)
        .await
    })?)
}

/// Hot leads nobody took whose next SLA reminder is due.
pub async fn sla_due(
    db: &Db,
    now: i64,
    sla_ms: i64,
    max_reminders: i32,
) -> Result<Vec<Lead>, StorageError> {
    Ok(with_db!(db, |c| {
        sqlx::query_as::<_, Lead>(&format!(
            "SELECT {COLUMNS} FROM leads
             WHERE temperature = 'hot' AND manager_id IS NULL AND erased = FALSE
               AND status NOT IN ('won', 'lost') AND hot_at IS NOT NULL
               AND sla_reminders < $1 AND hot_at + $2 * (sla_reminders + 1) <= $3
             ORDER BY hot_at LIMIT 100"
        ))
        .bind(max_reminders)
        .bind(sla_ms)
        .bind(now)
        .fetch_all(c)
        .await
    })?)
}
