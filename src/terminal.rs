//! `leadbot try`: the same engine in the terminal. Buttons are numbered options; a number or the
//! label selects. Works interactively and with piped input (the input is echoed so a transcript
//! reads well).

use std::io::{BufRead, Write};

use crate::dialogue::{
    Effect, Input, Keyboard, Outcome, Position, Script, Session, Transition, advance,
};

/// Runs a dialogue over `input`/`out`. `alert` renders the card managers would get when the lead
/// turns hot. Ends at the dialogue's end or at end of input.
pub fn run_try(
    script: &Script,
    mut input: impl BufRead,
    mut out: impl Write,
    echo: bool,
    alert: &dyn Fn(&Script, &Session) -> String,
) -> std::io::Result<()> {
    let ru = crate::dialogue::texts::is_ru(&script.locale);
    writeln!(
        out,
        "{}",
        if ru {
            format!(
                "Диалог «{}» ({}), версия {}. Отвечайте номером варианта или текстом; пустой ввод или Ctrl-D — выход.",
                script.id, script.locale, script.version
            )
        } else {
            format!(
                "Dialogue '{}' ({}), version {}. Answer with an option number or text; Ctrl-D quits.",
                script.id, script.locale, script.version
            )
        }
    )?;
    let mut session = Session::default();
    let mut tr = advance(script, &session, Input::Start);
    let mut options: Vec<(String, crate::dialogue::ChoiceRef)>;
    loop {
        options = show(&mut out, script, &tr, alert)?;
        session = tr.session;
        if let Position::Ended(_) = session.position {
            summary(&mut out, script, &session, ru)?;
            return Ok(());
        }
        write!(out, "> ")?;
        out.flush()?;
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            writeln!(out)?;
            return Ok(());
        }
        let line = line.trim_end_matches(['\n', '\r']).to_owned();
        if echo {
            writeln!(out, "{line}")?;
        }
        let chosen = line
            .trim()
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| options.get(i))
            .map(|(_, r)| Input::Choice {
                step: r.step,
                index: r.index,
            });
        let inp = chosen.unwrap_or(Input::Text(line));
        tr = advance(script, &session, inp);
    }
}

fn show(
    out: &mut impl Write,
    script: &Script,
    tr: &Transition,
    alert: &dyn Fn(&Script, &Session) -> String,
) -> std::io::Result<Vec<(String, crate::dialogue::ChoiceRef)>> {
    let mut options = Vec::new();
    for e in &tr.effects {
        match e {
            Effect::Send(reply) => {
                writeln!(out, "bot: {}", reply.text)?;
                match &reply.keyboard {
                    Keyboard::Choices(c) => {
                        for (i, (label, _)) in c.iter().enumerate() {
                            writeln!(out, "  {}) {label}", i + 1)?;
                        }
                        options = c.clone();
                    }
                    Keyboard::RequestContact { label } => {
                        writeln!(out, "  [{label}] — type the number")?
                    }
                    _ => {}
                }
            }
            Effect::TurnedHot => {
                writeln!(out, "----- managers would get this alert -----")?;
                writeln!(out, "{}", alert(script, &tr.session))?;
                writeln!(out, "-----------------------------------------")?;
            }
            _ => {}
        }
    }
    if let Outcome::Rejected(_) = tr.outcome {
        // The hint and the question were printed above.
    }
    Ok(options)
}

fn summary(out: &mut impl Write, script: &Script, s: &Session, ru: bool) -> std::io::Result<()> {
    let t = s.temperature(&script.thresholds);
    if ru {
        writeln!(
            out,
            "— диалог завершён: {} баллов, температура {t}",
            s.score
        )?;
    } else {
        writeln!(out, "— dialogue ended: score {}, temperature {t}", s.score)?;
    }
    for i in &s.breakdown {
        if i.hot {
            writeln!(out, "  hot: {}: {}", i.step, i.answer)?;
        } else {
            writeln!(out, "  {:+} {}: {}", i.points, i.step, i.answer)?;
        }
    }
    Ok(())
}
