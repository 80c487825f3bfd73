//! The Jinja environment transformers renders chat templates in
//! (`transformers.utils.chat_template_utils._compile_jinja_template`), rebuilt on minijinja:
//! `trim_blocks`, `lstrip_blocks`, loop controls, Python's string methods, the `{% generation %}`
//! tag (its body rendered in a scope of its own), `raise_exception`, `strftime_now` (a fixed
//! date here) and `tojson` with Python's `json.dumps` output.
use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};

use super::rewrite;
use super::strftime::Date;

/// An environment holding `source` as the template `chat`.
pub fn environment(source: &str, date: Date) -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .expect("the default delimiters");
    env.set_syntax(syntax);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |m: String| -> Result<String, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, m))
    });
    env.add_function("strftime_now", move |format: String| date.strftime(&format));
    env.add_filter("tojson", tojson);
    env.add_filter(rewrite::ITERABLE_FILTER, iterable_or_fail);
    env.add_test("iterable", |v: Value| !v.is_none() && v.try_iter().is_ok());
    env.add_template_owned("chat", rewrite::rewrite(source))?;
    Ok(env)
}

/// Python's None is not iterable: a `for` loop over it fails (the rewritten loops pass their
/// iterable through this filter), and `none is iterable` is false.
fn iterable_or_fail(value: Value) -> Result<Value, Error> {
    if value.is_none() {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "'NoneType' object is not iterable",
        ));
    }
    Ok(value)
}

/// transformers' `tojson` filter: `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`, byte for byte (no HTML escaping, `", "` and `": "` unless
/// indented).
fn tojson(value: Value, kwargs: Kwargs) -> Result<String, Error> {
    let ensure_ascii: bool = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => Some(" ".repeat(usize::try_from(i64::try_from(v)?.max(0)).unwrap_or(0))),
        },
    };
    let (item_sep, key_sep) = match kwargs.get::<Option<Value>>("separators")? {
        Some(s) if !s.is_none() => {
            let part = |i: usize| -> Result<String, Error> {
                Ok(s.get_item_by_index(i)?.as_str().unwrap_or_default().to_string())
            };
            (part(0)?, part(1)?)
        }
        _ if indent.is_some() => (",".to_string(), ": ".to_string()),
        _ => (", ".to_string(), ": ".to_string()),
    };
    let sort_keys: bool = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let style = JsonStyle {
        ensure_ascii,
        indent,
        item_sep,
        key_sep,
        sort_keys,
    };
    let mut out = String::new();
    style.write(&value, 0, &mut out)?;
    Ok(out)
}

/// `json.dumps`'s settings.
struct JsonStyle {
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

impl JsonStyle {
    fn write(&self, v: &Value, depth: usize, out: &mut String) -> Result<(), Error> {
        match v.kind() {
            ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
            ValueKind::Number => out.push_str(&number(v)),
            ValueKind::String => self.string(v.as_str().unwrap_or_default(), out),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = v.try_iter()?.collect();
                self.container(('[', ']'), items.len(), depth, out, |i, out| {
                    self.write(&items[i], depth + 1, out)
                })?;
            }
            ValueKind::Map => {
                let mut pairs: Vec<(String, Value)> = Vec::new();
                for key in v.try_iter()? {
                    let item = v.get_item(&key)?;
                    pairs.push((key_text(&key)?, item));
                }
                if self.sort_keys {
                    pairs.sort_by(|a, b| a.0.cmp(&b.0));
                }
                self.container(('{', '}'), pairs.len(), depth, out, |i, out| {
                    self.string(&pairs[i].0, out);
                    out.push_str(&self.key_sep);
                    self.write(&pairs[i].1, depth + 1, out)
                })?;
            }
            _ => return Err(not_serializable(v)),
        }
        Ok(())
    }

    /// `[...]` or `{...}` of `n` items, each written by `item`, indented as json.dumps does.
    fn container(
        &self,
        (open, close): (char, char),
        n: usize,
        depth: usize,
        out: &mut String,
        mut item: impl FnMut(usize, &mut String) -> Result<(), Error>,
    ) -> Result<(), Error> {
        out.push(open);
        if n == 0 {
            out.push(close);
            return Ok(());
        }
        let newline = |out: &mut String, d: usize| {
            if let Some(ind) = &self.indent {
                out.push('\n');
                (0..d).for_each(|_| out.push_str(ind));
            }
        };
        for i in 0..n {
            if i > 0 {
                out.push_str(&self.item_sep);
            }
            newline(out, depth + 1);
            item(i, out)?;
        }
        newline(out, depth);
        out.push(close);
        Ok(())
    }

    /// A JSON string as Python writes it: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, other control
    /// characters as `\u00XX`; with `ensure_ascii`, everything outside ' '..='~' as `\uXXXX`.
    fn string(&self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && !(' '..='~').contains(&c)) => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// A dict key as json.dumps writes it: strings as they are, numbers, booleans and None as JSON.
fn key_text(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
        ValueKind::Number => Ok(number(key)),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.to_string()),
        ValueKind::None => Ok("null".to_string()),
        _ => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("keys must be str, int, float, bool or None, not {}", key.kind()),
        )),
    }
}

fn not_serializable(v: &Value) -> Error {
    let kind = match v.kind() {
        ValueKind::Undefined => "Undefined".to_string(),
        k => k.to_string(),
    };
    Error::new(
        ErrorKind::InvalidOperation,
        format!("Object of type {kind} is not JSON serializable"),
    )
}

/// An integer as it is; a float as Python's `repr` writes it (`3.0`, `0.1`, `1e-05`, `1e+16`,
/// `NaN`, `Infinity`).
fn number(v: &Value) -> String {
    if v.is_integer() {
        return v.to_string();
    }
    let Ok(f) = f64::try_from(v.clone()) else {
        return v.to_string();
    };
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    python_float_repr(f)
}

fn python_float_repr(f: f64) -> String {
    let sci = format!("{f:e}"); // shortest round-trip digits: "-1.2345e-5"
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e}'s exponent is an integer");
    if (-4..16).contains(&exp) {
        let s = format!("{f}");
        return if s.contains('.') { s } else { format!("{s}.0") };
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, ctx: Value) -> String {
        let env = environment(source, Date::DEFAULT).unwrap();
        env.get_template("chat").unwrap().render(ctx).unwrap()
    }

    #[test]
    fn generation_bodies_have_a_scope_of_their_own() {
        assert_eq!(
            render(
                "{% set x = 1 %}{% generation %}{% set x = 2 %}{{ x }}{% endgeneration %}{{ x }}\n",
                Value::UNDEFINED
            ),
            "21"
        );
    }

    /// Each against Python 3.11's json.dumps with the same arguments.
    #[test]
    fn tojson_writes_what_json_dumps_writes() {
        let ctx = minijinja::context! {
            v => Value::from(minijinja::value::Serde(serde_json::json!({"b": [1, 2.5, 1e-5, 1e16, 3.0, null, true], "a": "é\"<x>\n\u{1}😀", "c": {}, "d": []}))),
        };
        assert_eq!(
            render("{{ v | tojson }}", ctx.clone()),
            r#"{"b": [1, 2.5, 1e-05, 1e+16, 3.0, null, true], "a": "é\"<x>\n\u0001😀", "c": {}, "d": []}"#
        );
        assert_eq!(
            render(
                "{{ v | tojson(ensure_ascii=True, sort_keys=true, separators=(',', ':')) }}",
                ctx.clone()
            ),
            r#"{"a":"\u00e9\"<x>\n\u0001\ud83d\ude00","b":[1,2.5,1e-05,1e+16,3.0,null,true],"c":{},"d":[]}"#
        );
        assert_eq!(
            render(
                "{{ v.b[:2] | tojson(indent=2) }}|{{ {'k': [1]} | tojson(indent=4) }}",
                ctx
            ),
            "[\n  1,\n  2.5\n]|{\n    \"k\": [\n        1\n    ]\n}"
        );
        let env = environment("{{ nothing | tojson }}", Date::DEFAULT).unwrap();
        let e = env.get_template("chat").unwrap().render(Value::UNDEFINED).unwrap_err();
        assert!(
            e.to_string()
                .contains("Object of type Undefined is not JSON serializable"),
            "{e}"
        );
    }

    #[test]
    fn none_is_not_iterable() {
        let ctx = minijinja::context! { tools => Value::from(()), xs => vec![1, 2] };
        assert_eq!(
            render(
                "{{ tools is iterable }} {{ xs is iterable }} {{ nothing is iterable }}",
                ctx.clone()
            ),
            "False True True"
        );
        assert_eq!(
            render(
                "{% for x in xs %}{{ x }}{% endfor %}{% for x in nothing %}{{ x }}{% endfor %}",
                ctx.clone()
            ),
            "12"
        );
        let env = environment("{% for t in tools %}{{ t }}{% endfor %}", Date::DEFAULT).unwrap();
        let e = env.get_template("chat").unwrap().render(ctx).unwrap_err();
        assert!(e.to_string().contains("'NoneType' object is not iterable"), "{e}");
    }

    #[test]
    fn strftime_now_is_the_fixed_date() {
        assert_eq!(
            render("{{ strftime_now('%d %b %Y') }}", Value::UNDEFINED),
            "26 Jul 2024"
        );
    }
}
