//! The dialogue as a Mermaid flowchart, for `leadbot graph` (renders on GitHub).

use std::fmt::Write;

use super::{Script, StepKind};

/// Words of a step's text shown in its node.
const LABEL_WORDS: usize = 6;

/// `flowchart TD` with one node per step and one edge per next/choice/branch rule.
pub fn mermaid(script: &Script) -> String {
    let mut out = String::from("flowchart TD\n");
    for (i, step) in script.steps.iter().enumerate() {
        let text = match &step.kind {
            StepKind::Say { text, .. }
            | StepKind::Choice { text, .. }
            | StepKind::Input { text, .. } => Some(text.as_str()),
            StepKind::End { text } => text.as_deref(),
            StepKind::Branch { .. } => None,
        };
        let label = match text {
            Some(t) => format!("{}: {}", step.name, first_words(t)),
            None => step.name.clone(),
        };
        let label = quote(&label);
        // Stadium for ends, rhombus for branches, rectangles for the rest.
        let _ = match step.kind {
            StepKind::End { .. } => writeln!(out, "    s{i}([{label}])"),
            StepKind::Branch { .. } => writeln!(out, "    s{i}{{{label}}}"),
            _ => writeln!(out, "    s{i}[{label}]"),
        };
    }
    for (i, step) in script.steps.iter().enumerate() {
        match &step.kind {
            StepKind::Say { next, .. } | StepKind::Input { next, .. } => {
                let _ = writeln!(out, "    s{i} --> s{}", next.index());
            }
            StepKind::Choice { choices, .. } => {
                for c in choices {
                    let mut label = c.label.clone();
                    if c.score != 0 {
                        let _ = write!(label, " {:+}", c.score);
                    }
                    if c.hot {
                        label.push_str(" 🔥 hot");
                    }
                    let _ = writeln!(out, "    s{i} -->|{}| s{}", quote(&label), c.next.index());
                }
            }
            StepKind::Branch { rules } => {
                for r in rules {
                    let label = r
                        .condition
                        .as_ref()
                        .map_or_else(|| "otherwise".to_owned(), ToString::to_string);
                    let _ = writeln!(out, "    s{i} -->|{}| s{}", quote(&label), r.next.index());
                }
            }
            StepKind::End { .. } => {}
        }
    }
    let _ = writeln!(out, "    style s{} stroke-width:3px", script.start.index());
    out
}

/// The first few words of a text on one line, with an ellipsis when cut.
fn first_words(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut shown = words
        .iter()
        .take(LABEL_WORDS)
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    if words.len() > LABEL_WORDS {
        shown.push('…');
    }
    shown
}

/// A Mermaid string in double quotes; characters that would end or confuse it become entities.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '#' => out.push_str("#35;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '|' => out.push_str("#124;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::super::compile;
    use super::*;

    const RU: &str = include_str!("../../dialogues/default.ru.yaml");

    #[test]
    fn every_step_is_a_node_with_a_safe_id_and_a_quoted_label() {
        let script = compile("ru", RU).unwrap().script;
        let chart = mermaid(&script);
        assert!(chart.starts_with("flowchart TD\n"));
        for (i, step) in script.steps.iter().enumerate() {
            let line = chart
                .lines()
                .find(|l| {
                    l.trim_start().starts_with(&format!("s{i}["))
                        || l.trim_start().starts_with(&format!("s{i}("))
                        || l.trim_start().starts_with(&format!("s{i}{{"))
                })
                .unwrap_or_else(|| panic!("no node for {}", step.name));
            assert!(line.contains(&format!("\"{}", step.name)), "{line}");
        }
        let body = chart
            .lines()
            .skip(1)
            .filter(|l| !l.trim_start().starts_with("style "));
        for line in body {
            let id: String = line
                .trim_start()
                .chars()
                .take_while(|c| !matches!(c, '[' | '(' | '{' | ' '))
                .collect();
            assert!(
                id.starts_with('s') && id[1..].bytes().all(|b| b.is_ascii_digit()),
                "{line}"
            );
            // Outside quotes only ids, shapes and arrows: no stray text.
            let unquoted: String = line.split('"').step_by(2).collect();
            assert!(unquoted.is_ascii(), "{line}");
        }
    }

    #[test]
    fn end_steps_are_stadiums_and_edges_carry_scores_hot_and_conditions() {
        let script = compile("ru", RU).unwrap().script;
        let chart = mermaid(&script);
        let bye = script.step_by_name("bye_hot").unwrap().index();
        assert!(chart.contains(&format!("s{bye}([\"bye_hot: Спасибо!")));
        assert!(chart.contains("|\"В этом месяце +40\"|"));
        assert!(chart.contains("|\"Готов купить, нужен счёт 🔥 hot\"|"));
        assert!(chart.contains("|\"temperature == hot\"|"));
        assert!(chart.contains("|\"otherwise\"|"));
    }

    #[test]
    fn quotes_and_pipes_in_texts_are_escaped() {
        assert_eq!(
            quote(r#"say "hi" | <b>"#),
            "\"say #quot;hi#quot; #124; #lt;b#gt;\""
        );
    }
}
