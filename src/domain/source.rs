//! Where a lead came from: the deep-link payload of `/start`.

use std::fmt;

/// A lead's source: 1–64 chars of `A-Za-z0-9_-`, or `direct` when `/start` had no payload.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Source(String);

/// Why a deep-link payload is not a source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a source is 1 to 64 characters of A-Z, a-z, 0-9, _ and -")]
pub struct SourceError;

impl Source {
    /// The source of a lead who came without a deep-link payload.
    pub fn direct() -> Source {
        Source("direct".to_owned())
    }

    /// Parses a deep-link payload.
    pub fn parse(payload: &str) -> Result<Source, SourceError> {
        let ok = (1..=64).contains(&payload.len())
            && payload
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Source(payload.to_owned()))
        } else {
            Err(SourceError)
        }
    }

    /// The source as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a pattern such as `vk_*` or `*` matches this source (`*` is any run of characters).
    pub fn matches(&self, pattern: &str) -> bool {
        glob_match(pattern.as_bytes(), self.0.as_bytes())
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `*`-only glob matching, iterative with backtracking to the last star.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_within_the_alphabet_parse() {
        assert!(Source::parse("vk_ads_nov").is_ok());
        assert!(Source::parse("a-b_C9").is_ok());
        assert!(Source::parse(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn payloads_outside_the_alphabet_are_refused() {
        assert!(Source::parse("").is_err());
        assert!(Source::parse(&"x".repeat(65)).is_err());
        assert!(Source::parse("vk ads").is_err());
        assert!(Source::parse("реклама").is_err());
    }

    #[test]
    fn patterns_match_with_stars() {
        let s = Source::parse("vk_ads_nov").unwrap();
        assert!(s.matches("*"));
        assert!(s.matches("vk_*"));
        assert!(s.matches("*_nov"));
        assert!(s.matches("vk*nov"));
        assert!(s.matches("vk_ads_nov"));
        assert!(!s.matches("fb_*"));
        assert!(!s.matches("vk_ads"));
        assert!(Source::direct().matches("direct"));
    }
}
