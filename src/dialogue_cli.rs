//! `check`, `graph` and `try`: the dialogue tools on the terminal.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use crate::dialogue::{Catalog, Script, Session};

/// `leadbot check [PATH]`: every diagnostic as `file:line:column: message`; exit 1 on any error.
pub fn check(path: &Path) -> ExitCode {
    let report = Catalog::check(path);
    for d in &report.diagnostics {
        eprintln!("{d}");
    }
    let (e, w) = (report.errors(), report.warnings());
    if e > 0 {
        eprintln!("{e} error(s), {w} warning(s) in {} file(s)", report.files);
        ExitCode::FAILURE
    } else {
        println!(
            "ok: {} dialogue(s) in {} file(s), {w} warning(s)",
            report.dialogues, report.files
        );
        ExitCode::SUCCESS
    }
}

/// The dialogues of `dir`, or the shipped ones when `dir` is the default folder (`given` false)
/// and absent; says so on stderr.
fn load(dir: &Path, given: bool) -> Option<Catalog> {
    match Catalog::load_configured(dir, given) {
        Ok((c, shipped)) => {
            if shipped {
                eprintln!(
                    "note: no {} folder here; using the dialogues built into leadbot",
                    dir.display()
                );
            }
            Some(c)
        }
        Err(diags) => {
            for d in diags {
                eprintln!("{d}");
            }
            eprintln!(
                "error: the dialogues in {} have errors; run `leadbot check`",
                dir.display()
            );
            None
        }
    }
}

fn find<'a>(catalog: &'a Catalog, id: &str, locale: Option<&str>) -> Option<&'a Script> {
    let found = catalog.find(id, locale);
    if found.is_none() {
        eprintln!(
            "error: no dialogue with id {id:?}; known ids: {}",
            catalog.ids().join(", ")
        );
    }
    found
}

/// `leadbot graph ID`.
pub fn graph(dir: &Path, given: bool, id: &str, locale: Option<&str>) -> ExitCode {
    let Some(catalog) = load(dir, given) else {
        return ExitCode::FAILURE;
    };
    let Some(script) = find(&catalog, id, locale) else {
        return ExitCode::FAILURE;
    };
    print!("{}", crate::dialogue::graph::mermaid(script));
    ExitCode::SUCCESS
}

/// The alert card as the terminal shows it.
pub fn terminal_alert(script: &Script, session: &Session) -> String {
    let lead = crate::storage::leads::Lead {
        id: 1,
        telegram_id: None,
        chat_id: None,
        username: None,
        first_name: None,
        last_name: None,
        language_code: None,
        name: None,
        phone: None,
        email: None,
        source: "direct".into(),
        score: session.score,
        temperature: session.temperature(&script.thresholds).as_str().into(),
        status: "qualifying".into(),
        unsubscribed: false,
        blocked: false,
        erased: false,
        consent_at: None,
        consent_version: None,
        marketing_consent_at: None,
        marketing_consent_version: None,
        dialogue_id: Some(script.id.clone()),
        dialogue_version: Some(script.version.clone()),
        session: serde_json::to_string(session).unwrap_or_default(),
        created_at: 0,
        last_activity_at: 0,
        last_inbound_at: None,
        hot_at: None,
        sla_reminders: 0,
        first_reply_at: None,
        topic_id: None,
        manager_id: None,
        manager_name: None,
        taken_at: None,
        closed_at: None,
    };
    let mut card = crate::staff::alert::card_of(&lead, Some(script), 0);
    card.name = card.name.or_else(|| {
        session
            .answers
            .values()
            .find(|a| a.step == "name")
            .map(|a| a.value.clone())
    });
    card.phone = session
        .answers
        .values()
        .find(|a| a.value.starts_with('+'))
        .map(|a| a.value.clone());
    crate::staff::card::plain(&card)
}

/// `leadbot try [ID]`.
pub fn try_dialogue(dir: &Path, given: bool, id: Option<&str>, locale: Option<&str>) -> ExitCode {
    let Some(catalog) = load(dir, given) else {
        return ExitCode::FAILURE;
    };
    let script = match id {
        Some(id) => find(&catalog, id, locale),
        None => catalog
            .find("default", locale)
            .or_else(|| catalog.select("direct", locale.or(Some("ru")))),
    };
    let Some(script) = script else {
        return ExitCode::FAILURE;
    };
    let stdin = std::io::stdin();
    let echo = !stdin.is_terminal();
    match crate::terminal::run_try_with(
        script,
        stdin.lock(),
        std::io::stdout().lock(),
        &terminal_alert,
        echo,
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
