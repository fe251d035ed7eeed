//! `leadbot leads export`: leads as CSV (UTF-8 with a BOM, so Excel opens it right) or JSON.

use std::collections::BTreeMap;

use serde_json::json;

use crate::dialogue::{Answer, Session};
use crate::storage::leads::Lead;

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn flags(l: &Lead) -> String {
    let mut f = Vec::new();
    if l.unsubscribed {
        f.push("unsubscribed");
    }
    if l.blocked {
        f.push("blocked");
    }
    if l.erased {
        f.push("erased");
    }
    f.join(",")
}

fn answers(l: &Lead) -> BTreeMap<String, Answer> {
    serde_json::from_str::<Session>(&l.session)
        .map(|s| s.answers)
        .unwrap_or_default()
}

fn display_name(l: &Lead) -> String {
    l.name.clone().unwrap_or_else(|| {
        [l.first_name.as_deref(), l.last_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ")
    })
}

/// Writes leads as CSV with a UTF-8 BOM, one row per lead.
pub fn csv(leads: &[Lead]) -> Result<Vec<u8>, csv::Error> {
    let mut out = vec![0xEF, 0xBB, 0xBF];
    {
        let mut w = csv::Writer::from_writer(&mut out);
        w.write_record([
            "id",
            "telegram_id",
            "username",
            "name",
            "phone",
            "email",
            "source",
            "score",
            "temperature",
            "status",
            "flags",
            "created",
            "last_activity",
            "answers",
        ])?;
        for l in leads {
            let answers: BTreeMap<String, String> =
                answers(l).into_iter().map(|(k, a)| (k, a.value)).collect();
            w.write_record([
                l.id.to_string(),
                l.telegram_id.map(|i| i.to_string()).unwrap_or_default(),
                l.username.clone().unwrap_or_default(),
                display_name(l),
                l.phone.clone().unwrap_or_default(),
                l.email.clone().unwrap_or_default(),
                l.source.clone(),
                l.score.to_string(),
                l.temperature.clone(),
                l.status.clone(),
                flags(l),
                iso(l.created_at),
                iso(l.last_activity_at),
                serde_json::to_string(&answers).unwrap_or_default(),
            ])?;
        }
        w.flush()?;
    }
    Ok(out)
}

/// Writes leads as a JSON array with the same fields and the full answers.
pub fn json(leads: &[Lead]) -> String {
    let rows: Vec<_> = leads
        .iter()
        .map(|l| {
            json!({
                "id": l.id,
                "telegram_id": l.telegram_id,
                "username": l.username,
                "name": display_name(l),
                "phone": l.phone,
                "email": l.email,
                "source": l.source,
                "score": l.score,
                "temperature": l.temperature,
                "status": l.status,
                "flags": flags(l),
                "created": iso(l.created_at),
                "last_activity": iso(l.last_activity_at),
                "answers": answers(l),
            })
        })
        .collect();
    serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".to_owned())
}
