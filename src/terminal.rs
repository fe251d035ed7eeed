//! `leadbot try`: chat with a dialogue in the terminal through the same engine as the bot.
//!
//! Buttons are shown as numbered options; a number or the label picks one. There is no contact
//! sharing in a terminal, so phone steps take a typed number. When the lead turns hot the alert
//! managers would get is printed, and when the dialogue ends a short summary follows.

use std::io::{self, BufRead, Write};

use crate::dialogue::{
    Effect, Input, Keyboard, Position, Script, Session, StepKind, Transition, advance,
};

/// Runs the dialogue over `input` (one answer per line) and writes the transcript to `out`,
/// echoing each input line (as piped input reads best).
pub fn run_try(
    script: &Script,
    input: impl BufRead,
    out: impl Write,
    alert: &dyn Fn(&Script, &Session) -> String,
) -> io::Result<()> {
    run_try_with(script, input, out, alert, true)
}

/// [`run_try`] with the echo of input lines chosen: pass `false` when stdin is a terminal,
/// where the user's typing already shows.
pub fn run_try_with(
    script: &Script,
    mut input: impl BufRead,
    mut out: impl Write,
    alert: &dyn Fn(&Script, &Session) -> String,
    echo: bool,
) -> io::Result<()> {
    let mut session = Session::default();
    let first = advance(script, &session, Input::Start);
    print_transition(&mut out, script, &first, alert)?;
    session = first.session;
    let mut line = String::new();
    loop {
        if let Position::Ended(_) = session.position {
            return print_summary(&mut out, script, &session);
        }
        write!(out, "> ")?;
        out.flush()?;
        line.clear();
        if input.read_line(&mut line)? == 0 {
            // EOF: finish the prompt line so the shell prompt starts clean.
            writeln!(out)?;
            return Ok(());
        }
        let typed = line.trim_end_matches(['\r', '\n']);
        if echo {
            writeln!(out, "{typed}")?;
        }
        let t = advance(script, &session, to_input(script, &session, typed));
        print_transition(&mut out, script, &t, alert)?;
        session = t.session;
    }
}

/// A typed line as the engine's input: a number picks a button of the waiting choice step.
fn to_input(script: &Script, session: &Session, typed: &str) -> Input {
    match typed.trim() {
        "/start" => return Input::Start,
        "/restart" => return Input::Restart,
        _ => {}
    }
    if let Position::Waiting(id) = session.position
        && let Some(StepKind::Choice { choices, .. }) =
            script.steps.get(id.index()).map(|s| &s.kind)
        && let Ok(n) = typed.trim().parse::<usize>()
        && (1..=choices.len()).contains(&n)
        && let Ok(index) = u8::try_from(n - 1)
    {
        return Input::Choice { step: id, index };
    }
    Input::Text(typed.to_owned())
}

fn print_transition(
    out: &mut impl Write,
    script: &Script,
    t: &Transition,
    alert: &dyn Fn(&Script, &Session) -> String,
) -> io::Result<()> {
    for effect in &t.effects {
        match effect {
            Effect::Send(reply) => {
                let mut lines = reply.text.lines();
                writeln!(out, "bot: {}", lines.next().unwrap_or_default())?;
                for rest in lines {
                    if rest.is_empty() {
                        writeln!(out)?;
                    } else {
                        writeln!(out, "     {rest}")?;
                    }
                }
                match &reply.keyboard {
                    Keyboard::Choices(buttons) => {
                        for (i, (label, _)) in buttons.iter().enumerate() {
                            writeln!(out, "  {}) {label}", i + 1)?;
                        }
                    }
                    Keyboard::RequestContact { label } => {
                        writeln!(out, "  [{label}] (type the number here)")?;
                    }
                    Keyboard::None | Keyboard::Remove => {}
                }
            }
            Effect::TurnedHot => {
                writeln!(out, "──── what managers would get ────")?;
                for line in alert(script, &t.session).lines() {
                    writeln!(out, "│ {line}")?;
                }
                writeln!(out, "─────────────────────────────────")?;
            }
            Effect::Answered { .. }
            | Effect::Set { .. }
            | Effect::Entered(_)
            | Effect::Ended(_) => {}
        }
    }
    Ok(())
}

fn print_summary(out: &mut impl Write, script: &Script, session: &Session) -> io::Result<()> {
    writeln!(out, "── the dialogue has ended ──")?;
    writeln!(
        out,
        "score: {} ({})",
        session.score,
        session.temperature(&script.thresholds)
    )?;
    for item in &session.breakdown {
        let mark = if item.hot {
            "hot".to_owned()
        } else {
            format!("{:+}", item.points)
        };
        writeln!(out, "  {mark} {}: {}", item.step, item.answer)?;
    }
    for (key, answer) in &session.answers {
        writeln!(out, "  {key} = {}", answer.value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::dialogue::compile;

    const RU: &str = include_str!("../dialogues/default.ru.yaml");
    const EN: &str = include_str!("../dialogues/default.en.yaml");

    /// Stands in for the staff alert card until the goldens switch to `crate::staff::alert_text`.
    fn alert(script: &Script, session: &Session) -> String {
        let value = |key: &str| {
            session
                .answers
                .get(key)
                .map_or("—", |a| a.value.as_str())
                .to_owned()
        };
        let mut text = format!(
            "🔥 Hot lead ({})\nname: {}\nphone: {}\nscore: {}",
            script.id,
            value("name"),
            value("phone"),
            session.score
        );
        for item in &session.breakdown {
            let mark = if item.hot {
                "hot".to_owned()
            } else {
                format!("{:+}", item.points)
            };
            text.push_str(&format!("\n  {mark} {}: {}", item.step, item.answer));
        }
        text
    }

    fn transcript(script: &Script, input: &str) -> String {
        let mut out = Vec::new();
        run_try(script, input.as_bytes(), &mut out, &alert).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn golden_transcripts_match() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        let bless = std::env::var_os("LEADBOT_BLESS").is_some_and(|v| v == "1");
        let ru = compile("ru", RU).unwrap().script;
        let en = compile("en", EN).unwrap().script;
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "in"))
            .collect();
        names.sort();
        assert!(names.len() >= 8, "goldens missing from {}", dir.display());
        let mut failures = Vec::new();
        for input_path in names {
            let stem = input_path
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let script = if stem.starts_with("en_") { &en } else { &ru };
            let got = transcript(script, &std::fs::read_to_string(&input_path).unwrap());
            let out_path = input_path.with_extension("out");
            if bless {
                std::fs::write(&out_path, &got).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&out_path).unwrap_or_default();
            if got != want {
                failures.push(format!("{stem}:\n{}", diff(&want, &got)));
            }
        }
        assert!(
            failures.is_empty(),
            "golden transcripts differ (LEADBOT_BLESS=1 rewrites them):\n{}",
            failures.join("\n")
        );
    }

    /// A line diff good enough to spot a changed message: `-` expected, `+` got.
    fn diff(want: &str, got: &str) -> String {
        let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
        let mut out = String::new();
        for i in 0..w.len().max(g.len()) {
            match (w.get(i), g.get(i)) {
                (Some(a), Some(b)) if a == b => {}
                (a, b) => {
                    if let Some(a) = a {
                        out.push_str(&format!("  {:>3} - {a}\n", i + 1));
                    }
                    if let Some(b) = b {
                        out.push_str(&format!("  {:>3} + {b}\n", i + 1));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn a_number_picks_the_button_and_the_label_works_too() {
        let script = compile("ru", RU).unwrap().script;
        let by_number = transcript(&script, "2\n");
        assert!(by_number.contains("bot: Понимаем."), "{by_number}");
        let by_label = transcript(&script, "не согласен\n");
        assert!(by_label.contains("bot: Понимаем."), "{by_label}");
    }

    #[test]
    fn closed_input_ends_cleanly_with_a_newline() {
        let script = compile("ru", RU).unwrap().script;
        let out = transcript(&script, "");
        assert!(out.ends_with("> \n"), "{out:?}");
        assert!(out.contains("  1) Согласен\n  2) Не согласен\n"));
    }

    #[test]
    fn without_echo_the_typed_lines_are_not_repeated() {
        let script = compile("ru", RU).unwrap().script;
        let mut out = Vec::new();
        run_try_with(&script, "1\n".as_bytes(), &mut out, &alert, false).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("> bot: Как к вам обращаться?"), "{out}");
    }
}
