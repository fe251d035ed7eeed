//! Tests of the compiler: fixtures with expected diagnostics, and the shipped dialogues.

use super::*;

const RU: &str = include_str!("../../dialogues/default.ru.yaml");
const EN: &str = include_str!("../../dialogues/default.en.yaml");

/// `# expect: L:C: fragment` lines at the top of a fixture.
fn expectations(source: &str) -> Vec<(u32, u32, String)> {
    source
        .lines()
        .map_while(|l| l.strip_prefix("# expect: "))
        .map(|rest| {
            let mut parts = rest.splitn(3, ':');
            let line = parts.next().unwrap().trim().parse().unwrap();
            let column = parts.next().unwrap().trim().parse().unwrap();
            let fragment = parts.next().unwrap().trim().to_owned();
            (line, column, fragment)
        })
        .collect()
}

#[test]
fn every_check_fixture_reports_its_expected_diagnostics_at_the_exact_position() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 25, "fixtures missing from {}", dir.display());
    let mut failures = Vec::new();
    for path in &paths {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let source = std::fs::read_to_string(path).unwrap();
        let expected = expectations(&source);
        assert!(!expected.is_empty(), "{name} has no '# expect:' line");
        let diags = match compile(&name, &source) {
            Ok(c) => {
                failures.push(format!(
                    "{name}: compiled without errors ({:?})",
                    c.warnings
                ));
                continue;
            }
            Err(d) => d,
        };
        for (line, column, fragment) in expected {
            let found = diags.iter().any(|d| {
                d.severity == Severity::Error
                    && d.line == line
                    && d.column == column
                    && d.message.contains(&fragment)
            });
            if !found {
                let got: Vec<String> = diags.iter().map(ToString::to_string).collect();
                failures.push(format!(
                    "{name}: expected {line}:{column}: {fragment}\n  got:\n    {}",
                    got.join("\n    ")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_several_errors_fixture_reports_each_of_its_errors_at_once() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/check/several_errors.yaml"
    );
    let source = std::fs::read_to_string(path).unwrap();
    let errors = compile("several_errors.yaml", &source).unwrap_err();
    assert!(expectations(&source).len() >= 5);
    assert!(errors.len() >= 5, "{errors:?}");
}

#[test]
fn the_shipped_dialogues_compile_without_warnings() {
    for (name, source) in [("default.ru.yaml", RU), ("default.en.yaml", EN)] {
        let compiled = compile(name, source).unwrap_or_else(|d| panic!("{d:?}"));
        assert!(
            compiled.warnings.is_empty(),
            "{name}: {:?}",
            compiled.warnings
        );
        assert_eq!(compiled.script.id, "default");
        assert_eq!(compiled.script.steps.len(), 12);
    }
}

#[test]
fn step_ids_follow_file_order_and_targets_are_typed() {
    let script = compile("ru", RU).unwrap().script;
    assert_eq!(script.start, StepId(0));
    assert_eq!(script.step(script.start).name, "greet");
    let consent = script.step_by_name("consent").unwrap();
    match &script.step(consent).kind {
        StepKind::Choice { choices, save, .. } => {
            assert_eq!(save, "consent", "a choice step saves under its own name");
            assert_eq!(choices[0].next, script.step_by_name("name").unwrap());
            assert_eq!(
                choices[0].set,
                vec![("consent".to_owned(), super::super::Fact::Bool(true))]
            );
        }
        other => panic!("consent is {other:?}"),
    }
    assert_eq!(script.thresholds, Thresholds { warm: 30, hot: 70 });
    assert_eq!(
        script.remind_after,
        vec![Duration::from_secs(3600), Duration::from_secs(86_400)]
    );
    assert_eq!(script.locale, "ru");
}

#[test]
fn the_version_is_the_first_16_hex_digits_of_the_sha256_of_the_source() {
    let script = compile("ru", RU).unwrap().script;
    assert_eq!(script.version.len(), 16);
    assert!(script.version.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(version_of("abc"), "ba7816bf8f01cfea");
    let edited = RU.replace("Здравствуйте!", "Добрый день!");
    assert_ne!(
        compile("ru", &edited).unwrap().script.version,
        script.version
    );
}

#[test]
fn input_steps_save_under_their_name_by_default() {
    let source = "id: d\nstart: city\nsteps:\n  city:\n    ask: Where?\n    input: text\n    next: done\n  done: { end: true }\n";
    let script = compile("d", source).unwrap().script;
    match &script.step(script.start).kind {
        StepKind::Input { save, kind, .. } => {
            assert_eq!(save, "city");
            assert_eq!(*kind, super::super::InputKind::Text);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rules_after_a_catch_all_are_a_warning_not_an_error() {
    let source = "id: d\nstart: b\nsteps:\n  b:\n    branch:\n      - { next: done }\n      - { if: \"score >= 1\", next: done }\n  done: { end: true }\n";
    let compiled = compile("d", source).unwrap();
    assert_eq!(compiled.warnings.len(), 1, "{:?}", compiled.warnings);
    assert_eq!(compiled.warnings[0].line, 7);
    assert!(
        compiled.warnings[0]
            .to_string()
            .starts_with("d:7:9: warning: ")
    );
}

#[test]
fn diagnostics_display_as_file_line_column_message() {
    let errors = compile(
        "x.yaml",
        "id: d\nstart: a\nsteps:\n  a: { say: hi, nxt: b }\n",
    )
    .unwrap_err();
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        lines.contains(&"x.yaml:4:17: unknown key 'nxt'; did you mean 'next'?".to_owned()),
        "{lines:?}"
    );
}

#[test]
fn durations_parse_in_seconds_minutes_hours_and_days() {
    assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
    assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
    assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
    assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_duration("h"), None);
    assert_eq!(parse_duration("10"), None);
    assert_eq!(parse_duration("0m"), None);
    assert_eq!(parse_duration("2 days"), None);
}

#[test]
fn an_empty_file_is_an_error_not_a_panic() {
    assert!(compile("e", "").is_err());
    assert!(compile("e", "just a string").is_err());
    assert!(compile("e", "- a list").is_err());
}

#[test]
fn typos_are_matched_to_the_closest_name() {
    assert_eq!(closest("nxt", STEP_KEYS), Some("next"));
    assert_eq!(closest("chioces", STEP_KEYS), Some("choices"));
    assert_eq!(closest("banana", STEP_KEYS), None);
}
