//! The dialogues of a folder, and which one a new lead gets (SPEC section 5).

use std::path::Path;

use super::compile::{Diagnostic, Severity, compile};
use super::model::Script;
use crate::domain::Source;

/// One compiled file.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The file name (no folder), used in diagnostics and stored with the version.
    pub file_name: String,
    /// The file's text, stored so pinned sessions survive edits.
    pub source: String,
    /// The compiled dialogue.
    pub script: Script,
}

/// All dialogues of a folder, sorted by file name.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    entries: Vec<Entry>,
}

/// What `leadbot check` found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Files read.
    pub files: usize,
    /// Dialogues that compiled.
    pub dialogues: usize,
    /// Every error and warning, file by file.
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// Errors found.
    pub fn errors(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    /// Warnings found.
    pub fn warnings(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count()
    }
}

fn diag(file: &str, message: String, severity: Severity) -> Diagnostic {
    Diagnostic {
        file: file.to_owned(),
        line: 1,
        column: 1,
        message,
        severity,
    }
}

/// Reads `*.yaml`/`*.yml` files of a folder (or one file), sorted by name.
fn read_sources(path: &Path) -> Result<Vec<(String, String, String)>, Vec<Diagnostic>> {
    let shown = path.display().to_string();
    let mut files = Vec::new();
    if path.is_file() {
        files.push(path.to_path_buf());
    } else {
        let dir = std::fs::read_dir(path).map_err(|e| {
            vec![diag(
                &shown,
                format!("cannot read the dialogue folder: {e}"),
                Severity::Error,
            )]
        })?;
        for entry in dir.flatten() {
            let p = entry.path();
            let yaml = p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e == "yaml" || e == "yml");
            if yaml && p.is_file() {
                files.push(p);
            }
        }
        files.sort();
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for p in files {
        let name = p.display().to_string();
        let file_name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(&name)
            .to_owned();
        match std::fs::read_to_string(&p) {
            Ok(text) => out.push((name, file_name, text)),
            Err(e) => errors.push(diag(
                &name,
                format!("cannot read the file: {e}"),
                Severity::Error,
            )),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The dialogues shipped with leadbot (`dialogues/` in the source tree), built into the binary.
const SHIPPED: [(&str, &str); 2] = [
    (
        "default.en.yaml",
        include_str!("../../dialogues/default.en.yaml"),
    ),
    (
        "default.ru.yaml",
        include_str!("../../dialogues/default.ru.yaml"),
    ),
];

/// [`SHIPPED`] as `(file name, text)` pairs.
fn shipped_sources() -> Vec<(String, String)> {
    SHIPPED
        .iter()
        .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
        .collect()
}

impl Catalog {
    /// The dialogues shipped with leadbot, as built into the binary.
    pub fn shipped() -> Catalog {
        Catalog::from_sources(shipped_sources()).0
    }

    /// The dialogues the bot runs: those of `path`, or the shipped ones when `path` is the default
    /// folder (`given` false: `LEADBOT_DIALOGUES` unset) and there is nothing at it. The flag
    /// beside the catalog is true when the shipped ones were taken.
    pub fn load_configured(path: &Path, given: bool) -> Result<(Catalog, bool), Vec<Diagnostic>> {
        if !given && !path.exists() {
            return Ok((Catalog::shipped(), true));
        }
        Catalog::load(path).map(|c| (c, false))
    }

    /// Builds a catalog from `(file name, text)` pairs; returns it with every diagnostic.
    pub fn from_sources(files: Vec<(String, String)>) -> (Catalog, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let mut entries: Vec<Entry> = Vec::new();
        for (file_name, source) in files {
            match compile(&file_name, &source) {
                Ok(compiled) => {
                    diags.extend(compiled.warnings);
                    let s = &compiled.script;
                    if let Some(other) = entries.iter().find(|e| {
                        e.script.id == s.id && e.script.locale.eq_ignore_ascii_case(&s.locale)
                    }) {
                        diags.push(diag(
                            &file_name,
                            format!(
                                "dialogue '{}' with locale '{}' is already defined in {}",
                                s.id, s.locale, other.file_name
                            ),
                            Severity::Error,
                        ));
                        continue;
                    }
                    entries.push(Entry {
                        file_name,
                        source,
                        script: compiled.script,
                    });
                }
                Err(errs) => diags.extend(errs),
            }
        }
        let catalog = Catalog { entries };
        if !catalog.entries.is_empty()
            && !catalog
                .entries
                .iter()
                .any(|e| e.script.sources.iter().any(|p| p == "*"))
        {
            let file = catalog
                .entries
                .first()
                .map(|e| e.file_name.clone())
                .unwrap_or_default();
            diags.push(diag(
                &file,
                "no dialogue has `sources: [\"*\"]`: leads from other sources get the fallback dialogue".into(),
                Severity::Warning,
            ));
        }
        (catalog, diags)
    }

    /// Loads a folder; any error refuses the whole catalog (warnings are fine).
    pub fn load(path: &Path) -> Result<Catalog, Vec<Diagnostic>> {
        let files = read_sources(path)?;
        let shown = path.display().to_string();
        let (catalog, diags) = Catalog::from_sources(
            files
                .into_iter()
                .map(|(_, file_name, text)| (file_name, text))
                .collect(),
        );
        let errors: Vec<Diagnostic> = diags
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        if catalog.entries.is_empty() {
            return Err(vec![diag(
                &shown,
                "no dialogue files (*.yaml) found".into(),
                Severity::Error,
            )]);
        }
        Ok(catalog)
    }

    /// Checks a folder or file for `leadbot check`, with diagnostics naming the path as given.
    pub fn check(path: &Path) -> Report {
        let files = match read_sources(path) {
            Ok(f) => f,
            Err(diagnostics) => {
                return Report {
                    files: 0,
                    dialogues: 0,
                    diagnostics,
                };
            }
        };
        let n = files.len();
        let (catalog, diagnostics) = Catalog::from_sources(
            files
                .into_iter()
                .map(|(shown, _, text)| (shown, text))
                .collect(),
        );
        let mut report = Report {
            files: n,
            dialogues: catalog.entries.len(),
            diagnostics,
        };
        if n == 0 {
            report.diagnostics.push(diag(
                &path.display().to_string(),
                "no dialogue files (*.yaml) found".into(),
                Severity::Error,
            ));
        }
        report
    }

    /// Every dialogue, in file-name order.
    pub fn entries(&self) -> std::slice::Iter<'_, Entry> {
        self.entries.iter()
    }

    /// Distinct dialogue ids.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.entries.iter().map(|e| e.script.id.clone()).collect();
        ids.dedup();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The dialogue a new lead gets: among those whose `sources` match, the one in the user's
    /// language, else the one with id `default`, else the first by file name. When none matches
    /// the source, the same rule over all dialogues, so a lead always gets one.
    pub fn select(&self, source: &str, language_code: Option<&str>) -> Option<&Script> {
        let src = Source::parse(source).unwrap_or_else(|_| Source::direct());
        let matching: Vec<&Script> = self
            .entries
            .iter()
            .map(|e| &e.script)
            .filter(|s| s.sources.iter().any(|p| src.matches(p)))
            .collect();
        let pool: Vec<&Script> = if matching.is_empty() {
            self.entries.iter().map(|e| &e.script).collect()
        } else {
            matching
        };
        pick(&pool, None, language_code)
    }

    /// A dialogue by id, in the wanted locale when there are several.
    pub fn find(&self, id: &str, locale: Option<&str>) -> Option<&Script> {
        let pool: Vec<&Script> = self
            .entries
            .iter()
            .map(|e| &e.script)
            .filter(|s| s.id == id)
            .collect();
        pick(&pool, Some(id), locale.or(Some("ru")))
    }
}

fn primary(lang: &str) -> String {
    lang.split(['-', '_'])
        .next()
        .unwrap_or(lang)
        .to_ascii_lowercase()
}

fn pick<'a>(
    pool: &[&'a Script],
    _id: Option<&str>,
    language_code: Option<&str>,
) -> Option<&'a Script> {
    if let Some(lang) = language_code.map(primary) {
        let same_lang: Vec<&Script> = pool
            .iter()
            .copied()
            .filter(|s| primary(&s.locale) == lang)
            .collect();
        if let Some(s) = same_lang
            .iter()
            .find(|s| s.id == "default")
            .or(same_lang.first())
        {
            return Some(s);
        }
    }
    pool.iter()
        .find(|s| s.id == "default")
        .or(pool.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Catalog {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dialogues");
        Catalog::load(&dir).expect("shipped dialogues load")
    }

    #[test]
    fn the_dialogues_built_into_the_binary_are_the_shipped_files() {
        let (built_in, diags) = Catalog::from_sources(shipped_sources());
        assert!(diags.is_empty(), "{diags:?}");
        let files = shipped();
        let names = |c: &Catalog| {
            c.entries
                .iter()
                .map(|e| (e.file_name.clone(), e.source.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&Catalog::shipped()), names(&files));
        assert_eq!(names(&built_in), names(&files));
    }

    #[test]
    fn a_missing_default_folder_falls_back_to_the_shipped_dialogues_and_a_given_one_does_not() {
        let missing = Path::new(env!("CARGO_MANIFEST_DIR")).join("no-such-dialogues");
        let (catalog, shipped) =
            Catalog::load_configured(&missing, false).expect("shipped dialogues");
        assert!(shipped);
        assert!(catalog.find("default", Some("ru")).is_some());
        let errors = match Catalog::load_configured(&missing, true) {
            Ok(_) => panic!("a configured folder that is missing must be an error"),
            Err(errors) => errors,
        };
        assert!(
            errors[0]
                .message
                .contains("cannot read the dialogue folder")
        );
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dialogues");
        let (_, shipped) = Catalog::load_configured(&dir, false).expect("the folder loads");
        assert!(!shipped);
    }

    #[test]
    fn the_shipped_dialogues_load_and_pass_check() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dialogues");
        let report = Catalog::check(&dir);
        assert_eq!(report.errors(), 0, "{:?}", report.diagnostics);
        assert_eq!(report.warnings(), 0, "{:?}", report.diagnostics);
        assert!(report.dialogues >= 2);
    }

    #[test]
    fn the_language_picks_the_locale_and_russian_is_the_fallback() {
        let c = shipped();
        assert_eq!(
            c.select("direct", Some("en-US")).map(|s| s.locale.as_str()),
            Some("en")
        );
        assert_eq!(
            c.select("vk_ads", Some("ru")).map(|s| s.locale.as_str()),
            Some("ru")
        );
        assert_eq!(
            c.select("direct", None).map(|s| s.id.as_str()),
            Some("default")
        );
        assert!(c.select("direct", Some("de")).is_some());
    }

    #[test]
    fn a_single_dialogue_without_default_id_serves_everyone() {
        let yaml = "id: promo\nlocale: en\nsources: [\"fb_*\"]\nstart: hi\nsteps:\n  hi: { say: \"Hi\", end: true }\n";
        let (c, _) = Catalog::from_sources(vec![("promo.yaml".into(), yaml.into())]);
        assert_eq!(
            c.select("vk_ads", Some("ru")).map(|s| s.id.as_str()),
            Some("promo")
        );
        assert_eq!(c.select("fb_x", None).map(|s| s.id.as_str()), Some("promo"));
    }

    #[test]
    fn the_same_id_and_locale_twice_is_an_error() {
        let yaml = "id: promo\nlocale: en\nsources: [\"*\"]\nstart: hi\nsteps:\n  hi: { say: \"Hi\", end: true }\n";
        let (_, d) = Catalog::from_sources(vec![
            ("a.yaml".into(), yaml.into()),
            ("b.yaml".into(), yaml.into()),
        ]);
        assert!(
            d.iter()
                .any(|d| d.severity == Severity::Error && d.message.contains("already defined")),
            "{d:?}"
        );
    }
}
