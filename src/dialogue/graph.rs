//! `leadbot graph`: a dialogue as a Mermaid flowchart (renders on GitHub).

use super::{Script, StepKind};

fn label(s: &str) -> String {
    let short: String = s.chars().take(40).collect();
    let short = if s.chars().count() > 40 {
        format!("{short}…")
    } else {
        short
    };
    short.replace('"', "#quot;").replace('\n', " ")
}

fn node(i: usize) -> String {
    format!("s{i}")
}

/// The flowchart text.
pub fn mermaid(script: &Script) -> String {
    let mut out = format!(
        "flowchart TD\n    %% dialogue {} ({}), version {}\n",
        script.id, script.locale, script.version
    );
    for (i, step) in script.steps.iter().enumerate() {
        let name = label(&step.name);
        let shape = match &step.kind {
            StepKind::Say { text, .. } => format!("{}[\"{name}: {}\"]", node(i), label(text)),
            StepKind::Choice { text, .. } | StepKind::Input { text, .. } => {
                format!("{}[/\"{name}: {}\"/]", node(i), label(text))
            }
            StepKind::Branch { .. } => format!("{}{{\"{name}\"}}", node(i)),
            StepKind::End { text } => {
                format!(
                    "{}([\"{name}: {}\"])",
                    node(i),
                    label(text.as_deref().unwrap_or("end"))
                )
            }
        };
        out.push_str(&format!("    {shape}\n"));
    }
    out.push_str(&format!(
        "    start((start)) --> {}\n",
        node(script.start.index())
    ));
    for (i, step) in script.steps.iter().enumerate() {
        match &step.kind {
            StepKind::Say { next, .. } => {
                out.push_str(&format!("    {} --> {}\n", node(i), node(next.index())))
            }
            StepKind::Input {
                next, kind, score, ..
            } => {
                let mut l = format!("{kind:?}").to_lowercase();
                if *score != 0 {
                    l.push_str(&format!(" +{score}"));
                }
                out.push_str(&format!(
                    "    {} -- \"{}\" --> {}\n",
                    node(i),
                    label(&l),
                    node(next.index())
                ));
            }
            StepKind::Choice { choices, .. } => {
                for c in choices {
                    let mut l = c.label.clone();
                    if c.score != 0 {
                        l.push_str(&format!(" {:+}", c.score));
                    }
                    if c.hot {
                        l.push_str(" 🔥 hot");
                    }
                    out.push_str(&format!(
                        "    {} -- \"{}\" --> {}\n",
                        node(i),
                        label(&l),
                        node(c.next.index())
                    ));
                }
            }
            StepKind::Branch { rules } => {
                for r in rules {
                    let cond = r
                        .condition
                        .as_ref()
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "otherwise".into());
                    out.push_str(&format!(
                        "    {} -- \"{}\" --> {}\n",
                        node(i),
                        label(&cond),
                        node(r.next.index())
                    ));
                }
            }
            StepKind::End { .. } => {}
        }
    }
    out
}
