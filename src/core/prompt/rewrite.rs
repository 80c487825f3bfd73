//! Template source rewritten where minijinja would read it otherwise than Jinja2 (as
//! transformers configures it) does, before minijinja compiles it:
//!
//! * `{% generation %}` / `{% endgeneration %}` (transformers' assistant-mask tag, whose body is
//!   a call block: rendered in a scope of its own) become `{% with %}` / `{% endwith %}`;
//! * `{% for x in EXPR %}` becomes `{% for x in (EXPR)|__rftx_iterable %}`: minijinja iterates
//!   `none` as an empty list where Python raises `TypeError: 'NoneType' object is not iterable`
//!   (a tool-use template's `for tool in tools` without tools), and the filter raises it.
//!
//! Whitespace control (`{%-`, `-%}`, `+`) is kept; comments, `{{ … }}` and `{% raw %}` blocks are
//! copied as they are, and string literals are never looked into.

/// The filter the rewritten `for` tags pass their iterable through.
pub const ITERABLE_FILTER: &str = "__rftx_iterable";

/// `source` with its `generation` and `for` tags rewritten.
pub fn rewrite(source: &str) -> String {
    let mut out = String::with_capacity(source.len() + 64);
    let mut rest = source;
    while let Some(at) = rest.find('\u{7b}') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let len = if rest.starts_with("{#") {
            rest.find("#}").map_or(rest.len(), |e| e + 2)
        } else if rest.starts_with("{{") {
            delimited_end(rest, "}}")
        } else if rest.starts_with("{%") {
            let len = delimited_end(rest, "%}");
            let tag = &rest[..len];
            if tag_name(tag) == Some("raw") {
                raw_end(rest, len)
            } else {
                out.push_str(&rewrite_tag(tag));
                rest = &rest[len..];
                continue;
            }
        } else {
            1
        };
        out.push_str(&rest[..len]);
        rest = &rest[len..];
    }
    out.push_str(rest);
    out
}

/// The length of the tag or expression at the start of `s` through `close`, string literals
/// skipped; all of `s` if it is never closed.
fn delimited_end(s: &str, close: &str) -> usize {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(2) {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if s[i..].starts_with(close) => return i + close.len(),
            None => {}
        }
    }
    s.len()
}

/// The end of a `{% raw %}` block whose opening tag is `open_len` long: after its `endraw` tag.
fn raw_end(s: &str, open_len: usize) -> usize {
    let mut at = open_len;
    while let Some(i) = s[at..].find("{%") {
        let len = delimited_end(&s[at + i..], "%}");
        if tag_name(&s[at + i..at + i + len]) == Some("endraw") {
            return at + i + len;
        }
        at += i + 2;
    }
    s.len()
}

/// A block tag split as `{%` + control, its inner text, control + `%}`.
fn split_tag(tag: &str) -> Option<(&str, &str, &str)> {
    let body = tag.strip_prefix("{%")?.strip_suffix("%}")?;
    let open = if body.starts_with(['-', '+']) { &body[..1] } else { "" };
    let body = &body[open.len()..];
    let close = if body.ends_with(['-', '+']) && !body.is_empty() {
        &body[body.len() - 1..]
    } else {
        ""
    };
    Some((open, &body[..body.len() - close.len()], close))
}

/// The statement's name (`for`, `generation`, `raw`, …).
fn tag_name(tag: &str) -> Option<&str> {
    let (_, inner, _) = split_tag(tag)?;
    let inner = inner.trim_start();
    let end = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    Some(&inner[..end])
}

fn rewrite_tag(tag: &str) -> String {
    let Some((open, inner, close)) = split_tag(tag) else {
        return tag.to_string();
    };
    match tag_name(tag) {
        Some("generation") if inner.trim() == "generation" => format!("{{%{open} with {close}%}}"),
        Some("endgeneration") if inner.trim() == "endgeneration" => format!("{{%{open} endwith {close}%}}"),
        Some("for") => match for_iterable(inner) {
            Some((start, end)) => format!(
                "{{%{open}{}({}) | {ITERABLE_FILTER}{}{close}%}}",
                &inner[..start],
                &inner[start..end],
                &inner[end..]
            ),
            None => tag.to_string(),
        },
        _ => tag.to_string(),
    }
}

/// Where the iterable of `for TARGET in ITERABLE [if COND] [recursive]` is in `inner`: after the
/// first `in` at bracket depth 0, up to a top-level `if` or `recursive` or the end.
fn for_iterable(inner: &str) -> Option<(usize, usize)> {
    let words = top_level_words(inner);
    let (_, in_end) = *words.iter().find(|(s, e)| &inner[*s..*e] == "in")?;
    let end = words
        .iter()
        .filter(|(s, _)| *s > in_end)
        .find(|(s, e)| matches!(&inner[*s..*e], "if" | "recursive"))
        .map_or(inner.trim_end().len(), |(s, _)| *s);
    let start = in_end + (inner[in_end..].len() - inner[in_end..].trim_start().len());
    if end <= start {
        return None;
    }
    let end = start + inner[start..end].trim_end().len();
    (end > start).then_some((start, end))
}

/// Byte ranges of the names in `inner` outside string literals and brackets, not after a `.`.
fn top_level_words(inner: &str) -> Vec<(usize, usize)> {
    let (mut words, mut depth, mut quote, mut escaped) = (Vec::new(), 0i32, None::<char>, false);
    let mut word_start: Option<usize> = None;
    for (i, c) in inner.char_indices().chain(std::iter::once((inner.len(), ' '))) {
        if let Some(q) = quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        let word_char = c.is_ascii_alphanumeric() || c == '_';
        match (word_start, word_char) {
            (None, true) if !c.is_ascii_digit() => word_start = Some(i),
            (Some(s), false) => {
                let after_dot = inner[..s].trim_end().ends_with('.');
                if depth == 0 && !after_dot {
                    words.push((s, i));
                }
                word_start = None;
            }
            _ => {}
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_become_with_blocks() {
        assert_eq!(
            rewrite("a{%- generation -%}b{%endgeneration%}{% generation_x %}{%+ generation +%}"),
            "a{%- with -%}b{% endwith %}{% generation_x %}{%+ with +%}"
        );
    }

    #[test]
    fn for_iterables_pass_through_the_filter() {
        let cases = [
            ("{% for t in tools %}", "{% for t in (tools) | __rftx_iterable %}"),
            (
                "{%- for k, v in m.items() if k != 'in' -%}",
                "{%- for k, v in (m.items()) | __rftx_iterable if k != 'in' -%}",
            ),
            (
                "{% for x in (a if c else b) recursive %}",
                "{% for x in ((a if c else b)) | __rftx_iterable recursive %}",
            ),
            (
                "{%for m in messages[1:] + [{'role': 'x %}'}]%}",
                "{%for m in (messages[1:] + [{'role': 'x %}'}]) | __rftx_iterable%}",
            ),
            (
                "{% for (a, b) in x.in %}",
                "{% for (a, b) in (x.in) | __rftx_iterable %}",
            ),
        ];
        for (src, want) in cases {
            assert_eq!(rewrite(src), want, "{src}");
        }
    }

    #[test]
    fn comments_expressions_strings_and_raw_blocks_are_kept() {
        for src in [
            "{# {% for x in y %} #}",
            "{{ '{% for x in y %}' }}",
            "{% raw %}{% for x in y %}{% generation %}{% endraw %}",
            "{% set s = \"{% for x in y %}\" %}",
            "{ plain { text",
            "{% for x in %}",
            "{% for",
        ] {
            assert_eq!(rewrite(src), src);
        }
    }
}
