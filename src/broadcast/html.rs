//! The marketer's HTML, checked against what Telegram's HTML parse mode accepts, before a
//! broadcast is accepted: allowed tags only, balanced nesting, escaped `<`, `>` and `&`, and at
//! most 4096 characters once the markup is removed.

/// Telegram's limit on a message's text, after entity parsing (UTF-16 code units).
pub const MAX_TEXT: usize = 4096;

/// Why a text was refused; `at` is the 1-based character position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("HTML error at character {at}: {message}")]
pub struct HtmlError {
    pub at: usize,
    pub message: String,
}

/// What a valid text looks like to the recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// The visible text (markup removed, entities decoded).
    pub visible: String,
    /// Its length as Telegram counts it (UTF-16 code units).
    pub length: usize,
}

const TAGS: &[&str] = &[
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
];

/// Checks `html` as Telegram's HTML parse mode would, stricter on one point: a bare `&` must be
/// written `&amp;`.
pub fn check(html: &str) -> Result<Checked, HtmlError> {
    let chars: Vec<char> = html.chars().collect();
    let mut visible = String::with_capacity(html.len());
    let mut stack: Vec<(String, usize)> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '&' => {
                let (ch, len) = entity(&chars[i..]).ok_or_else(|| HtmlError {
                    at: i + 1,
                    message: "a bare \"&\": write &amp; (entities allowed: &lt; &gt; &amp; &quot; and &#NNN;)".into(),
                })?;
                visible.push(ch);
                i += len;
            }
            '<' if chars.get(i + 1) == Some(&'/') => {
                let begin = i;
                let close = chars[i..]
                    .iter()
                    .position(|&c| c == '>')
                    .ok_or_else(|| HtmlError {
                        at: begin + 1,
                        message: "an end tag is not closed with \">\"".into(),
                    })?;
                let name: String = chars[i + 2..i + close]
                    .iter()
                    .collect::<String>()
                    .trim()
                    .to_ascii_lowercase();
                let Some((open, _)) = stack.pop() else {
                    return Err(HtmlError {
                        at: begin + 1,
                        message: format!("</{name}> closes a tag that was never opened"),
                    });
                };
                if name != open {
                    return Err(HtmlError {
                        at: begin + 1,
                        message: format!(
                            "expected </{open}> here, found </{name}>: tags must nest"
                        ),
                    });
                }
                i += close + 1;
            }
            '<' => {
                let begin = i;
                let close = chars[i..]
                    .iter()
                    .position(|&c| c == '>')
                    .ok_or_else(|| HtmlError {
                        at: begin + 1,
                        message: "a \"<\" that starts no tag: write &lt;".into(),
                    })?;
                let inner: String = chars[i + 1..i + close].iter().collect();
                let name = start_tag(&inner, begin + 1)?;
                if name == "pre" || name == "code" {
                    // Telegram allows <code> inside <pre> only; nothing else nests in code.
                    if stack.iter().any(|(t, _)| t == "code") {
                        return Err(HtmlError {
                            at: begin + 1,
                            message: format!("<{name}> cannot be inside <code>"),
                        });
                    }
                }
                stack.push((name, begin + 1));
                i += close + 1;
            }
            '>' => {
                return Err(HtmlError {
                    at: i + 1,
                    message: "a bare \">\": write &gt;".into(),
                });
            }
            c => {
                visible.push(c);
                i += 1;
            }
        }
    }
    if let Some((open, at)) = stack.pop() {
        return Err(HtmlError {
            at,
            message: format!("<{open}> is never closed"),
        });
    }
    let length = visible.encode_utf16().count();
    if visible.trim().is_empty() {
        return Err(HtmlError {
            at: 1,
            message: "the text is empty".into(),
        });
    }
    if length > MAX_TEXT {
        return Err(HtmlError {
            at: chars.len(),
            message: format!(
                "the text is {length} characters without markup; Telegram allows {MAX_TEXT}"
            ),
        });
    }
    Ok(Checked { visible, length })
}

/// Checks the inside of `<…>`; returns the tag name.
fn start_tag(inner: &str, at: usize) -> Result<String, HtmlError> {
    let bad = |message: String| HtmlError { at, message };
    let trimmed = inner.trim_end().trim_end_matches('/');
    let mut parts = trimmed.splitn(2, |c: char| c.is_whitespace());
    let name = parts.next().unwrap_or_default().to_ascii_lowercase();
    let attrs = attributes(parts.next().unwrap_or_default())
        .ok_or_else(|| bad(format!("the attributes of <{name}> do not parse")))?;
    if !TAGS.contains(&name.as_str()) {
        return Err(bad(format!(
            "Telegram does not accept <{name}>; allowed tags: b, strong, i, em, u, ins, s, strike, del, \
             span class=\"tg-spoiler\", tg-spoiler, a href, code, pre, blockquote, tg-emoji"
        )));
    }
    if trimmed.len() != inner.trim_end().len() {
        return Err(bad(format!(
            "<{name}/> is not allowed: open and close the tag"
        )));
    }
    let get = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let allowed: &[&str] = match name.as_str() {
        "a" => &["href"],
        "span" => &["class"],
        "code" => &["class"],
        "blockquote" => &["expandable"],
        "tg-emoji" => &["emoji-id"],
        _ => &[],
    };
    if let Some((n, _)) = attrs.iter().find(|(n, _)| !allowed.contains(&n.as_str())) {
        return Err(bad(format!("<{name}> does not take the attribute {n:?}")));
    }
    match name.as_str() {
        "a" => {
            let href = get("href").unwrap_or_default();
            let ok = ["http://", "https://", "tg://", "mailto:"]
                .iter()
                .any(|p| href.to_ascii_lowercase().starts_with(p));
            if !ok {
                return Err(bad(
                    "<a> needs href=\"https://…\" (or http://, tg://, mailto:)".into(),
                ));
            }
        }
        "span" if get("class") != Some("tg-spoiler") => {
            return Err(bad(
                "<span> is allowed only as <span class=\"tg-spoiler\">".into()
            ));
        }
        "code" => {
            if let Some(c) = get("class")
                && !c.starts_with("language-")
            {
                return Err(bad("<code class> must be language-NAME".into()));
            }
        }
        "tg-emoji" => {
            let ok = get("emoji-id")
                .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
            if !ok {
                return Err(bad("<tg-emoji> needs emoji-id=\"NUMBER\"".into()));
            }
        }
        _ => {}
    }
    Ok(name)
}

/// `k="v" k2='v2' k3=v3 flag` → pairs; `None` when quoting is broken.
fn attributes(s: &str) -> Option<Vec<(String, String)>> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i >= chars.len() {
            return Some(out);
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' {
            i += 1;
        }
        let name: String = chars[start..i]
            .iter()
            .collect::<String>()
            .to_ascii_lowercase();
        if name.is_empty() || name.contains(['"', '\'', '<']) {
            return None;
        }
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i >= chars.len() || chars[i] != '=' {
            out.push((name, String::new()));
            continue;
        }
        i += 1;
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let value = match chars.get(i) {
            Some(&q) if q == '"' || q == '\'' => {
                let len = chars[i + 1..].iter().position(|&c| c == q)?;
                let v: String = chars[i + 1..i + 1 + len].iter().collect();
                i += len + 2;
                v
            }
            Some(_) => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() {
                    i += 1;
                }
                chars[start..i].iter().collect()
            }
            None => return None,
        };
        out.push((name, decode_attr(&value)));
    }
}

fn decode_attr(v: &str) -> String {
    let chars: Vec<char> = v.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '&'
            && let Some((c, len)) = entity(&chars[i..])
        {
            out.push(c);
            i += len;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// Decodes an entity at the start of `s` (which begins with `&`): the character and how many
/// characters it took.
fn entity(s: &[char]) -> Option<(char, usize)> {
    let end = s.iter().take(12).position(|&c| c == ';')?;
    let name: String = s[1..end].iter().collect();
    let ch = match name.as_str() {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        _ => {
            let code = if let Some(hex) = name.strip_prefix("#x").or(name.strip_prefix("#X")) {
                u32::from_str_radix(hex, 16).ok()?
            } else {
                name.strip_prefix('#')?.parse::<u32>().ok()?
            };
            char::from_u32(code).filter(|&c| c != '\0')?
        }
    };
    Some((ch, end + 1))
}

/// Escapes plain text for HTML parse mode.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn telegram_markup_is_accepted() {
        let html = "<b>Скидка 20%</b> до пятницы! <i>только</i> <a href=\"https://example.com/?a=1&amp;b=2\">здесь</a> \
                    <span class=\"tg-spoiler\">секрет</span> <tg-spoiler>ещё</tg-spoiler> <u>u</u><s>s</s> \
                    <pre><code class=\"language-rust\">fn main() {}</code></pre> <blockquote expandable>цитата</blockquote> \
                    <tg-emoji emoji-id=\"5368324170671202286\">👍</tg-emoji> 5 &lt; 6 &amp; 7 &gt; 2 &#169;";
        let c = check(html).unwrap();
        assert!(c.visible.starts_with("Скидка 20% до пятницы!"));
        assert!(c.visible.contains("5 < 6 & 7 > 2 ©"));
    }

    #[test]
    fn rejected_markup_says_what_and_where() {
        let cases = [
            ("<div>x</div>", 1, "does not accept <div>"),
            ("a <b>bold</i>", 10, "expected </b>"),
            ("<b>open", 1, "never closed"),
            ("x</b>", 2, "never opened"),
            ("Tom & Jerry", 5, "bare \"&\""),
            ("1 < 2", 3, "starts no tag"),
            ("2 > 1", 3, "bare \">\""),
            ("<span>x</span>", 1, "tg-spoiler"),
            ("<a>x</a>", 1, "href"),
            ("<a href=\"javascript:alert(1)\">x</a>", 1, "href"),
            ("<b onclick=\"x\">x</b>", 1, "attribute"),
            ("<br/>", 1, "does not accept <br"),
            ("&nbsp;", 1, "bare"),
            ("<b></b>", 1, "empty"),
        ];
        for (html, at, words) in cases {
            let e = check(html).unwrap_err();
            assert_eq!(e.at, at, "{html}: {e}");
            assert!(e.to_string().contains(words), "{html}: {e}");
        }
    }

    #[test]
    fn length_is_counted_after_markup_in_utf16() {
        let inside = "a".repeat(4096);
        assert!(check(&format!("<b>{inside}</b>")).is_ok());
        assert!(check(&format!("<b>{inside}!</b>")).is_err());
        // An emoji outside the BMP counts twice.
        let emoji = "😀".repeat(2048);
        assert_eq!(check(&emoji).unwrap().length, 4096);
        assert!(check(&format!("{emoji}a")).is_err());
        assert_eq!(check(&"&amp;".repeat(4096)).unwrap().length, 4096);
    }

    proptest! {
        #[test]
        fn junk_never_panics(s in ".{0,200}") {
            let _ = check(&s);
        }

        #[test]
        fn near_html_junk_never_panics(s in "[<>/&;#a-z=\"' ]{0,80}") {
            let _ = check(&s);
        }

        #[test]
        fn escaped_text_is_always_accepted(s in "[^\\x00]{1,300}") {
            prop_assume!(!s.trim().is_empty());
            let c = check(&escape(&s)).unwrap();
            prop_assert_eq!(c.visible, s);
        }
    }
}
