//! All dialogues of a folder, and the rule that picks one for a new lead (SPEC section 5).

use std::path::{Path, PathBuf};

use super::Script;
use super::compile::{Diagnostic, Severity, compile};
use super::texts::primary_subtag;
use crate::domain::Source;

/// The compiled dialogues of a folder, in file-name order.
#[derive(Clone, Debug)]
pub struct Catalog {
    scripts: Vec<Script>,
}

/// What `leadbot check` prints: every diagnostic and a one-line summary.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// Errors and warnings, file by file.
    pub diagnostics: Vec<Diagnostic>,
    /// E.g. `2 dialogues checked: 0 errors, 1 warning`.
    pub summary: String,
    /// Whether any diagnostic is an error (the CLI exits 1).
    pub failed: bool,
}

impl Catalog {
    /// A catalog from already compiled scripts (kept in the given order).
    pub fn from_scripts(scripts: Vec<Script>) -> Catalog {
        Catalog { scripts }
    }

    /// Compiles every `*.yaml`/`*.yml` in `dir`; any error refuses the whole folder.
    pub fn load(dir: &Path) -> Result<Catalog, Vec<Diagnostic>> {
        let (catalog, diagnostics) = Self::read(dir);
        if diagnostics.iter().any(|d| d.severity == Severity::Error) {
            Err(diagnostics
                .into_iter()
                .filter(|d| d.severity == Severity::Error)
                .collect())
        } else {
            Ok(catalog)
        }
    }

    /// Checks a folder (or a single file) and reports everything found, warnings included.
    pub fn check(path: &Path) -> CheckReport {
        let (catalog, diagnostics) = Self::read(path);
        let errors = diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        let warnings = diagnostics.len() - errors;
        let files = files_in(path).map_or(0, |f| f.len());
        let plural = |n: usize, word: &str| {
            if n == 1 {
                format!("{n} {word}")
            } else {
                format!("{n} {word}s")
            }
        };
        let summary = format!(
            "{} checked, {} compiled: {}, {}",
            plural(files, "file"),
            catalog.scripts.len(),
            plural(errors, "error"),
            plural(warnings, "warning")
        );
        CheckReport {
            diagnostics,
            summary,
            failed: errors > 0,
        }
    }

    /// Compiles what it can and collects every diagnostic, including catalog-wide ones.
    fn read(path: &Path) -> (Catalog, Vec<Diagnostic>) {
        let mut diagnostics = Vec::new();
        let files = match files_in(path) {
            Ok(files) => files,
            Err(e) => {
                diagnostics.push(diagnostic(
                    path,
                    1,
                    1,
                    format!("cannot read: {e}"),
                    Severity::Error,
                ));
                return (
                    Catalog {
                        scripts: Vec::new(),
                    },
                    diagnostics,
                );
            }
        };
        if files.is_empty() {
            diagnostics.push(diagnostic(
                path,
                1,
                1,
                "no dialogue files (*.yaml, *.yml) here".to_owned(),
                Severity::Error,
            ));
        }
        let mut scripts: Vec<(Script, String)> = Vec::new();
        for file in &files {
            let name = file.display().to_string();
            let source = match std::fs::read_to_string(file) {
                Ok(s) => s,
                Err(e) => {
                    diagnostics.push(diagnostic(
                        file,
                        1,
                        1,
                        format!("cannot read: {e}"),
                        Severity::Error,
                    ));
                    continue;
                }
            };
            match compile(&name, &source) {
                Ok(compiled) => {
                    diagnostics.extend(compiled.warnings);
                    let script = compiled.script;
                    let same = scripts.iter().find(|(s, _)| {
                        s.id == script.id
                            && primary_subtag(&s.locale)
                                .eq_ignore_ascii_case(primary_subtag(&script.locale))
                    });
                    if let Some((_, other)) = same {
                        diagnostics.push(diagnostic(
                            file,
                            1,
                            1,
                            format!(
                                "dialogue '{}' with locale '{}' is already defined in {other}",
                                script.id, script.locale
                            ),
                            Severity::Error,
                        ));
                    } else {
                        scripts.push((script, name));
                    }
                }
                Err(errors) => diagnostics.extend(errors),
            }
        }
        let catchall = scripts
            .iter()
            .any(|(s, _)| s.sources.iter().any(|p| p.bytes().all(|b| b == b'*')));
        if !scripts.is_empty() && !catchall {
            diagnostics.push(diagnostic(
                path,
                1,
                1,
                "no dialogue has the source pattern \"*\": leads from other sources get no dialogue of their own and fall back to the default choice".to_owned(),
                Severity::Warning,
            ));
        }
        let scripts = scripts.into_iter().map(|(s, _)| s).collect();
        (Catalog { scripts }, diagnostics)
    }

    /// The dialogue for a new lead: among those serving `source`, the one in the user's
    /// language, else the one with id `default`, else the first by file name; when none serves
    /// the source, the same rule over all dialogues (a lead always gets one).
    pub fn select(&self, source: &str, language_code: Option<&str>) -> Option<&Script> {
        let serving: Vec<&Script> = match Source::parse(source) {
            Ok(src) => self
                .scripts
                .iter()
                .filter(|s| s.sources.iter().any(|p| src.matches(p)))
                .collect(),
            Err(_) => Vec::new(),
        };
        let pool = if serving.is_empty() {
            self.scripts.iter().collect()
        } else {
            serving
        };
        pick(&pool, language_code)
    }

    /// The first dialogue with this id in any locale.
    pub fn get(&self, id: &str) -> Option<&Script> {
        self.scripts.iter().find(|s| s.id == id)
    }

    /// The dialogue with this id in the user's language when there is one, else the first.
    pub fn by_id(&self, id: &str, language_code: Option<&str>) -> Option<&Script> {
        let same: Vec<&Script> = self.scripts.iter().filter(|s| s.id == id).collect();
        pick(&same, language_code)
    }

    /// The distinct dialogue ids, in file order.
    pub fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = Vec::new();
        for s in &self.scripts {
            if !ids.contains(&s.id.as_str()) {
                ids.push(&s.id);
            }
        }
        ids
    }

    /// Every compiled script (all ids and locales), in file order.
    pub fn scripts(&self) -> &[Script] {
        &self.scripts
    }
}

/// Language first, then id `default`, then the first of the pool.
fn pick<'a>(pool: &[&'a Script], language_code: Option<&str>) -> Option<&'a Script> {
    let language = language_code.map(primary_subtag).filter(|l| !l.is_empty());
    let in_language =
        |s: &&&Script| language.is_some_and(|l| primary_subtag(&s.locale).eq_ignore_ascii_case(l));
    // Among same-language dialogues, prefer `default` too, so a language twin never hides it.
    let by_language: Vec<&Script> = pool.iter().filter(in_language).copied().collect();
    by_language
        .iter()
        .find(|s| s.id == "default")
        .or_else(|| by_language.first())
        .or_else(|| pool.iter().find(|s| s.id == "default"))
        .or_else(|| pool.first())
        .copied()
}

/// `*.yaml` and `*.yml` files of a folder sorted by name, or the one file given.
fn files_in(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|e| {
                    e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml")
                })
        })
        .collect();
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

fn diagnostic(
    path: &Path,
    line: u32,
    column: u32,
    message: String,
    severity: Severity,
) -> Diagnostic {
    Diagnostic {
        file: path.display().to_string(),
        line,
        column,
        message,
        severity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RU: &str = include_str!("../../dialogues/default.ru.yaml");
    const EN: &str = include_str!("../../dialogues/default.en.yaml");

    fn dialogue(id: &str, locale: &str, sources: &str) -> String {
        format!(
            "id: {id}\nlocale: {locale}\nsources: {sources}\nstart: bye\nsteps:\n  bye: {{ say: \"{id} {locale}\", end: true }}\n"
        )
    }

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn the_shipped_folder_loads_both_twins_under_one_id() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dialogues");
        let catalog = Catalog::load(&dir).unwrap();
        assert_eq!(catalog.ids(), vec!["default"]);
        assert_eq!(catalog.scripts().len(), 2);
        let report = Catalog::check(&dir);
        assert!(!report.failed);
        assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics);
        assert_eq!(
            report.summary,
            "2 files checked, 2 compiled: 0 errors, 0 warnings"
        );
    }

    #[test]
    fn the_users_language_picks_the_twin_and_ru_ru_matches_ru() {
        let dir = folder(&[("default.en.yaml", EN), ("default.ru.yaml", RU)]);
        let catalog = Catalog::load(dir.path()).unwrap();
        assert_eq!(
            catalog.select("direct", Some("ru-RU")).unwrap().locale,
            "ru"
        );
        assert_eq!(catalog.select("vk_ads", Some("en")).unwrap().locale, "en");
        assert_eq!(catalog.by_id("default", Some("ru")).unwrap().locale, "ru");
    }

    #[test]
    fn without_a_language_match_the_default_id_wins_then_the_first_file() {
        let dir = folder(&[
            ("a.yaml", &dialogue("promo", "en", "[\"*\"]")),
            ("b.yaml", &dialogue("default", "ru", "[\"*\"]")),
        ]);
        let catalog = Catalog::load(dir.path()).unwrap();
        assert_eq!(catalog.select("direct", Some("de")).unwrap().id, "default");
        assert_eq!(catalog.select("direct", None).unwrap().id, "default");
        let dir = folder(&[
            ("a.yaml", &dialogue("first", "ru", "[\"*\"]")),
            ("b.yaml", &dialogue("second", "ru", "[\"*\"]")),
        ]);
        let catalog = Catalog::load(dir.path()).unwrap();
        assert_eq!(catalog.select("direct", Some("de")).unwrap().id, "first");
    }

    #[test]
    fn a_source_pattern_beats_language_and_unmatched_sources_still_get_a_dialogue() {
        let dir = folder(&[
            ("a.yaml", &dialogue("default", "en", "[direct]")),
            ("b.yaml", &dialogue("vk", "ru", "[vk_*]")),
        ]);
        let catalog = Catalog::load(dir.path()).unwrap();
        assert_eq!(catalog.select("vk_ads_nov", Some("en")).unwrap().id, "vk");
        assert_eq!(catalog.select("direct", Some("ru")).unwrap().id, "default");
        // Nothing serves `fb`: the rule runs over all dialogues.
        assert_eq!(catalog.select("fb", Some("ru")).unwrap().id, "vk");
        assert_eq!(catalog.select("fb", None).unwrap().id, "default");
        let report = Catalog::check(dir.path());
        assert!(!report.failed);
        assert!(
            report
                .diagnostics
                .iter()
                .any(|d| d.severity == Severity::Warning && d.message.contains("get no dialogue")),
            "{:?}",
            report.diagnostics
        );
    }

    #[test]
    fn the_same_id_and_locale_twice_is_an_error_but_other_locales_are_fine() {
        let dir = folder(&[
            ("a.yaml", &dialogue("default", "ru", "[\"*\"]")),
            ("b.yaml", &dialogue("default", "ru-RU", "[\"*\"]")),
            ("c.yaml", &dialogue("default", "en", "[\"*\"]")),
        ]);
        let errors = Catalog::load(dir.path()).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].file.ends_with("b.yaml"));
        assert!(errors[0].message.contains("already defined"));
    }

    #[test]
    fn errors_in_several_files_are_all_reported() {
        let dir = folder(&[
            ("a.yaml", "id: a\n"),
            ("b.yml", "id: b\nstart: x\n"),
            ("notes.txt", "x"),
        ]);
        let report = Catalog::check(dir.path());
        assert!(report.failed);
        let files: Vec<&str> = report.diagnostics.iter().map(|d| d.file.as_str()).collect();
        assert!(files.iter().any(|f| f.ends_with("a.yaml")));
        assert!(files.iter().any(|f| f.ends_with("b.yml")));
        assert!(report.summary.starts_with("2 files checked, 0 compiled"));
    }
}
