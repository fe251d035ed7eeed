//! Leads: contact data, source, session, score, temperature, status and flags.

use std::collections::{BTreeSet, HashMap};

use super::{Db, StorageError, Tx, with_db, with_tx, write_db};

/// A lead as stored.
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow, serde::Serialize)]
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

/// The leads a transaction has read or changed. A lead read once is not read again, and changes
/// are written when the transaction commits (see [`super::later`]): applying a batch of updates
/// in one transaction then reads the batch's leads with one statement ([`prefetch`]) and writes
/// them back with one more, instead of two statements per update.
#[derive(Debug, Default)]
pub struct Cache {
    /// The current state of each lead, by id.
    rows: HashMap<i64, Lead>,
    /// Each lead as the table holds it, as far as this transaction knows: as read, or as last
    /// written by [`flush`], which compares against it to find the columns that changed.
    stored: HashMap<i64, Lead>,
    /// Telegram user id to lead id; `None` records that the user has no lead.
    by_telegram: HashMap<i64, Option<i64>>,
    /// Leads changed since they were read.
    dirty: BTreeSet<i64>,
}

impl Cache {
    /// Keeps a lead's current state.
    fn keep(&mut self, lead: &Lead) {
        if let Some(tg) = lead.telegram_id {
            self.by_telegram.insert(tg, Some(lead.id));
        }
        self.rows.insert(lead.id, lead.clone());
    }

    /// Keeps a lead just read from the table (or just inserted into it).
    fn read(&mut self, lead: &Lead) {
        self.keep(lead);
        self.stored.insert(lead.id, lead.clone());
    }
}

/// Reads the leads of these Telegram users with one statement, locking their rows (PostgreSQL),
/// so that [`lock_by_telegram`] finds them without another statement.
pub async fn prefetch(tx: &mut Tx, telegram_ids: &[i64]) -> Result<(), StorageError> {
    let wanted: Vec<i64> = {
        let cache = &tx.later().leads;
        telegram_ids
            .iter()
            .copied()
            .filter(|tg| !cache.by_telegram.contains_key(tg))
            .collect::<BTreeSet<i64>>()
            .into_iter()
            .collect()
    };
    if wanted.is_empty() {
        return Ok(());
    }
    let found: Vec<Lead> =
        match tx {
            Tx::Sqlite(t) => sqlx::query_as::<_, Lead>(&format!(
                "SELECT {COLUMNS} FROM leads WHERE telegram_id IN (SELECT value FROM json_each($1))"
            ))
            .bind(super::later::to_json(&wanted)?)
            .fetch_all(&mut **t)
            .await?,
            Tx::Postgres(t) => {
                sqlx::query_as::<_, Lead>(&format!(
                    "SELECT {COLUMNS} FROM leads WHERE telegram_id = ANY($1) ORDER BY id FOR UPDATE"
                ))
                .bind(&wanted)
                .fetch_all(&mut **t)
                .await?
            }
        };
    let cache = &mut tx.later().leads;
    for tg in wanted {
        cache.by_telegram.insert(tg, None);
    }
    for lead in &found {
        cache.read(lead);
    }
    Ok(())
}

/// Finds the lead of a Telegram user and locks its row until the transaction ends (PostgreSQL;
/// SQLite's write transaction already excludes other writers).
pub async fn lock_by_telegram(tx: &mut Tx, telegram_id: i64) -> Result<Option<Lead>, StorageError> {
    {
        let cache = &tx.later().leads;
        if let Some(known) = cache.by_telegram.get(&telegram_id) {
            return Ok(known.and_then(|id| cache.rows.get(&id).cloned()));
        }
    }
    // The table must hold every change first: a changed lead may have let go of this user.
    flush(tx).await?;
    let lead = match tx {
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
    };
    let cache = &mut tx.later().leads;
    match &lead {
        Some(l) => cache.read(l),
        None => {
            cache.by_telegram.insert(telegram_id, None);
        }
    }
    Ok(lead)
}

/// Writes the changed leads (at commit, or before a statement that reads leads otherwise) and
/// forgets what was read: that statement may change leads behind the cache.
async fn sync(tx: &mut Tx) -> Result<(), StorageError> {
    flush(tx).await?;
    tx.later().leads = Cache::default();
    Ok(())
}

/// Creates a lead; a concurrent creation of the same user is resolved by the unique key.
///
/// The new row comes back from the insert itself, so the leads this transaction changed stay
/// buffered and cached. Only when the Telegram id is still taken in the table (another process
/// created the lead, or a lead erased earlier in this transaction has not been written yet) are
/// the buffered changes written and the insert tried again.
pub async fn insert(tx: &mut Tx, new: &NewLead<'_>, now: i64) -> Result<Lead, StorageError> {
    if let Some(lead) = insert_returning(tx, new, now).await? {
        tx.later().leads.read(&lead);
        return Ok(lead);
    }
    // A changed lead may still hold this Telegram id in the table (one erased earlier in the batch).
    sync(tx).await?;
    if let Some(lead) = insert_returning(tx, new, now).await? {
        tx.later().leads.read(&lead);
        return Ok(lead);
    }
    lock_by_telegram(tx, new.telegram_id)
        .await?
        .ok_or_else(|| StorageError::Corrupt("lead vanished right after insert".into()))
}

/// The insert of [`insert`]: the new row, or `None` when the Telegram id is taken.
async fn insert_returning(
    tx: &mut Tx,
    new: &NewLead<'_>,
    now: i64,
) -> Result<Option<Lead>, StorageError> {
    Ok(with_tx!(tx, |c| {
        sqlx::query_as::<_, Lead>(&format!(
            "INSERT INTO leads (telegram_id, chat_id, username, first_name, last_name, language_code,
                                source, created_at, last_activity_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (telegram_id) DO NOTHING
             RETURNING {COLUMNS}"
        ))
        .bind(new.telegram_id)
        .bind(new.chat_id)
        .bind(new.username)
        .bind(new.first_name)
        .bind(new.last_name)
        .bind(new.language_code)
        .bind(new.source)
        .bind(now)
        .fetch_optional(c)
        .await
    })?)
}

/// Keeps a lead's new state; it is written when the transaction commits.
pub fn save(tx: &mut Tx, l: &Lead) {
    let cache = &mut tx.later().leads;
    // A Telegram id the lead no longer holds (erasure) now has no lead.
    for (tg, id) in cache.by_telegram.iter_mut() {
        if *id == Some(l.id) && Some(*tg) != l.telegram_id {
            *id = None;
        }
    }
    cache.keep(l);
    cache.dirty.insert(l.id);
}

/// Lists the columns [`flush`] writes back (every field but the id and the creation time) once,
/// for both the column names and the comparison that finds which of them changed.
macro_rules! saved_columns {
    ($($field:ident),* $(,)?) => {
        /// The columns [`flush`] writes back, in the order of [`changed_columns`]' bits.
        const SAVED: &[&str] = &[$(stringify!($field)),*];

        /// The columns in which `now` differs from `before`: bit `i` stands for `SAVED[i]`.
        fn changed_columns(before: &Lead, now: &Lead) -> u64 {
            let mut changed = 0;
            let mut bit = 1;
            $(
                if before.$field != now.$field {
                    changed |= bit;
                }
                bit <<= 1;
            )*
            let _ = bit;
            changed
        }
    };
}

saved_columns!(
    telegram_id,
    chat_id,
    username,
    first_name,
    last_name,
    language_code,
    name,
    phone,
    email,
    source,
    score,
    temperature,
    status,
    unsubscribed,
    blocked,
    erased,
    consent_at,
    consent_version,
    marketing_consent_at,
    marketing_consent_version,
    dialogue_id,
    dialogue_version,
    session,
    last_activity_at,
    last_inbound_at,
    hot_at,
    manager_id,
    manager_name,
    taken_at,
    closed_at,
    sla_reminders,
    first_reply_at,
    topic_id,
);

/// Every column of [`SAVED`].
const ALL_SAVED: u64 = (1 << SAVED.len()) - 1;
const _: () = assert!(SAVED.len() < 64, "one bit per saved column");

/// The indexed columns of `leads` among [`SAVED`], grouped by index (`telegram_id` and `chat_id`
/// change together, at creation and erasure). SQLite rewrites the entries of every index on a
/// column an UPDATE sets, changed or not, so these are set only when they changed.
const INDEXED: &[&[&str]] = &[
    &["telegram_id", "chat_id"],
    &["score", "temperature"],
    &["last_inbound_at"],
];

/// The bits of these columns of [`SAVED`].
fn bits(columns: &[&str]) -> u64 {
    columns
        .iter()
        .filter_map(|c| SAVED.iter().position(|s| s == c))
        .fold(0, |bits, i| bits | 1 << i)
}

/// The columns a flush sets when `changed` changed.
///
/// SQLite: every column in no index (setting one to its own value costs little), and each group
/// of [`INDEXED`] that changed. A statement of each shape is prepared and kept by every
/// connection, in this process, so there are few shapes (8): setting exactly the changed columns
/// made a new shape for nearly every mix of leads in a batch (88 in ten seconds of the benchmark,
/// about 15 KB of SQLite's memory each, prepared again and again as the statement cache evicted
/// them). Writing columns the transaction did not change is safe there: a write transaction
/// begins `IMMEDIATE`, holding the database's write lock from its first read, so no other
/// write to a lead, from this process or another, comes in between.
///
/// PostgreSQL: exactly the changed columns. Other replicas and the outbox worker write beside the
/// transaction (a 403 marks a lead blocked), and a lead read without a lock may have changed
/// since; its prepared statements are kept by the server.
fn statement_columns(postgres: bool, changed: u64) -> u64 {
    if postgres {
        return changed;
    }
    static GROUPS: std::sync::LazyLock<Vec<u64>> =
        std::sync::LazyLock::new(|| INDEXED.iter().map(|group| bits(group)).collect());
    GROUPS
        .iter()
        .filter(|&&group| changed & group == 0)
        .fold(ALL_SAVED, |columns, unchanged| columns & !unchanged)
}

/// The statement writing back the `columns` (bits of [`SAVED`]) of a JSON array of [`Lead`]s (`$1`).
fn flush_sql(postgres: bool, columns: u64) -> String {
    // SQLite: each row's object is rendered as text once (a materialised CTE), not once per
    // column read from it, and parsed once (SQLite keeps the last JSON texts it parsed).
    let (with, value, from) = if postgres {
        (
            "",
            "s.{}",
            "json_populate_recordset(NULL::leads, $1::JSON) AS s",
        )
    } else {
        (
            "WITH s AS MATERIALIZED (SELECT value ->> 'id' AS id, value AS v FROM json_each($1)) ",
            "s.v ->> '{}'",
            "s",
        )
    };
    let set: Vec<String> = SAVED
        .iter()
        .enumerate()
        .filter(|(i, _)| columns & (1 << i) != 0)
        .map(|(_, c)| format!("{c} = {}", value.replace("{}", c)))
        .collect();
    format!(
        "{with}UPDATE leads SET {} FROM {from} WHERE leads.id = s.id",
        set.join(", ")
    )
}

/// Writes back the changed leads, with one statement whatever their number. The statement sets
/// the columns any of them changed (on SQLite, with every column in no index: see
/// [`statement_columns`]); a lead this transaction did not read is written whole.
pub(super) async fn flush(tx: &mut Tx) -> Result<(), StorageError> {
    let cache = &mut tx.later().leads;
    if cache.dirty.is_empty() {
        return Ok(());
    }
    let mut columns = 0;
    let mut dirty: Vec<Lead> = Vec::with_capacity(cache.dirty.len());
    for id in std::mem::take(&mut cache.dirty) {
        let Some(lead) = cache.rows.get(&id) else {
            continue;
        };
        let changed = match cache.stored.get(&id) {
            Some(stored) => changed_columns(stored, lead),
            None => ALL_SAVED,
        };
        if changed != 0 {
            columns |= changed;
            dirty.push(lead.clone());
        }
    }
    if dirty.is_empty() {
        return Ok(());
    }
    let json = super::later::to_json(&dirty)?;
    let postgres = matches!(tx, Tx::Postgres(_));
    let sql = flush_sql(postgres, statement_columns(postgres, columns));
    with_tx!(tx, |c| sqlx::query(&sql)
        .bind(json)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
    let cache = &mut tx.later().leads;
    for lead in dirty {
        cache.stored.insert(lead.id, lead);
    }
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
    sync(tx).await?;
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
    sync(tx).await?;
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
    sync(tx).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lead() -> Lead {
        Lead {
            id: 7,
            telegram_id: Some(501),
            chat_id: Some(501),
            first_name: Some("Анна".into()),
            source: "vk_ads".into(),
            temperature: "cold".into(),
            status: "new".into(),
            session: "{}".into(),
            ..Lead::default()
        }
    }

    fn bit(column: &str) -> u64 {
        let i = SAVED
            .iter()
            .position(|c| *c == column)
            .expect("a saved column");
        1 << i
    }

    #[test]
    fn a_step_that_moves_the_session_leaves_the_indexes_it_did_not_change_alone() {
        let before = lead();
        let mut now = before.clone();
        now.session = r#"{"step":"name"}"#.into();
        now.last_activity_at = 2;
        now.last_inbound_at = Some(2);
        let changed = changed_columns(&before, &now);
        assert_eq!(
            changed,
            bit("session") | bit("last_activity_at") | bit("last_inbound_at")
        );
        for postgres in [false, true] {
            let sql = flush_sql(postgres, statement_columns(postgres, changed));
            assert!(sql.contains("session = ") && sql.contains("last_inbound_at = "));
            assert!(!sql.contains("telegram_id = ") && !sql.contains("temperature = "));
            // Unchanged columns in no index: set on SQLite only.
            assert_eq!(sql.contains("phone = "), !postgres);
            assert_eq!(sql.contains("blocked = "), !postgres);
        }
        assert_eq!(changed_columns(&before, &before), 0);
    }

    #[test]
    fn a_changed_score_sets_the_temperature_beside_it_and_shapes_stay_few() {
        let score = statement_columns(false, bit("score"));
        assert_ne!(score & bit("temperature"), 0);
        assert_eq!(score & (bit("chat_id") | bit("last_inbound_at")), 0);
        // Every mix of changed columns: each saved column in or out, in a stride through all
        // the combinations, plus each column alone.
        let mixes = (0..=ALL_SAVED)
            .step_by(9_973)
            .chain(SAVED.iter().map(|c| bit(c)));
        let shapes: std::collections::BTreeSet<u64> = mixes
            .map(|changed| statement_columns(false, changed))
            .collect();
        assert_eq!(shapes.len(), 1 << INDEXED.len());
        assert_eq!(statement_columns(false, ALL_SAVED), ALL_SAVED);
        assert_eq!(statement_columns(true, bit("score")), bit("score"));
    }

    /// Every index on `leads` in the migrations covers columns of [`INDEXED`] only (or the
    /// creation time, which is never written back): a new index must join the list, or a flush
    /// would rewrite its entries at every step.
    #[test]
    fn every_indexed_column_of_leads_is_known_to_the_flush() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let indexed: Vec<&str> = INDEXED.iter().flat_map(|g| g.iter().copied()).collect();
        assert!(indexed.iter().all(|c| SAVED.contains(c)));
        let mut seen = 0;
        for backend in ["sqlite", "postgres"] {
            let mut files: Vec<_> = std::fs::read_dir(format!("{dir}/{backend}"))
                .expect("the migrations")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            files.sort();
            for file in files {
                let sql = std::fs::read_to_string(&file).expect("a migration");
                for stmt in sql.split(';') {
                    // One spelling whatever the spacing and case: "create index … on leads(…".
                    let flat = stmt
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                        .replace(" (", "(")
                        .to_lowercase();
                    let Some((_, after)) = flat.split_once(" on leads(") else {
                        continue;
                    };
                    seen += 1;
                    let cols = after.split(')').next().unwrap_or_default();
                    for col in cols
                        .split(',')
                        .map(|c| c.split_whitespace().next().unwrap_or(""))
                    {
                        assert!(
                            col == "created_at" || indexed.contains(&col),
                            "{}: index on leads.{col} not in INDEXED",
                            file.display()
                        );
                    }
                }
            }
        }
        assert!(seen >= 4, "the migrations' indexes on leads were read");
    }

    #[test]
    fn every_saved_column_is_compared_and_none_twice() {
        let before = lead();
        let mut now = before.clone();
        now.telegram_id = None;
        now.topic_id = Some(3);
        assert_eq!(
            changed_columns(&before, &now),
            bit("telegram_id") | bit("topic_id")
        );
        let mut names = SAVED.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SAVED.len());
        // Every field but the id and the creation time.
        assert_eq!(SAVED.len(), COLUMNS.split(',').count() - 2);
        let all = flush_sql(false, ALL_SAVED);
        assert!(SAVED.iter().all(|c| all.contains(&format!("{c} = "))));
    }
}
