//! Layering (defaults < TOML file < `RFTX_…` < `--set`) with figment, and every problem reported
//! with its origin, key path and fix.
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};

use super::{validate, Config, ConfigError, Resolved, ENV_PREFIX, ENV_RESERVED};

/// A `--set key.path=value` override. The value is parsed as TOML (`5`, `0.7`, `"text"`,
/// `[1, 2]`); a value that is not valid TOML is taken as a plain string.
#[derive(Debug, Clone)]
pub struct SetArg {
    raw: String,
    key: String,
    value: Value,
}

/// A value given on the command line: TOML (`5`, `0.7`, `"text"`, `[1, 2]`), or else the text
/// itself as a string (`q8_0`).
pub fn parse_value(text: &str) -> toml::Value {
    let text = text.trim();
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

impl SetArg {
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        let Some((key, value)) = raw.split_once('=') else {
            return Err(ConfigError::one(format!(
                "--set {raw}: expected KEY=VALUE, e.g. --set generation.chunk_size=5"
            )));
        };
        let key = key.trim();
        let valid_segment = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !key.split('.').all(valid_segment) {
            return Err(ConfigError::one(format!(
                "--set {raw}: `{key}` is not a key path; use dotted names such as generation.chunk_size"
            )));
        }
        let value = Value::serialize(parse_value(value)).map_err(|e| ConfigError::one(format!("--set {raw}: {e}")))?;
        Ok(SetArg {
            raw: raw.to_string(),
            key: key.to_string(),
            value,
        })
    }

    /// The dotted key path it sets.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl Provider for SetArg {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("--set {}", self.raw))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let nested = figment::util::nest(&self.key, self.value.clone());
        let dict = nested.into_dict().unwrap_or_default();
        Ok(Profile::Default.collect(dict))
    }
}

/// Reads `file`, layers the environment and the `--set` arguments over it and validates the result.
pub fn load(file: &Path, sets: &[String]) -> Result<Resolved, ConfigError> {
    let sets = sets.iter().map(|s| SetArg::parse(s)).collect::<Result<Vec<_>, _>>()?;
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError::one(format!("{}: cannot read the config file: {e}", file.display())))?;
    if let Err(e) = toml::from_str::<toml::Table>(&text) {
        let msg = e.to_string().trim_end().replace('\n', "\n    ");
        return Err(ConfigError::one(format!("{}: invalid TOML: {msg}", file.display())));
    }
    let layers = Figment::from(Serialized::defaults(Config::default()))
        .merge(Toml::file_exact(file))
        .merge(env_provider());
    let (config, figment) = extract(layers, sets)?;
    // A hub repository id (`Org/Name[@rev]`) that names nothing on disk stays as written: it is
    // resolved in the hub cache when the run is prepared.
    let model_path = config.model.path.as_ref().map(|p| {
        let resolved = resolve_path(&figment, "model.path", p);
        let repo_id = p.to_str().is_some_and(crate::source::hub::looks_like_repo_id);
        if repo_id && !resolved.exists() {
            p.clone()
        } else {
            resolved
        }
    });
    let data_path = (config.data.source != "builtin").then(|| {
        let raw = Path::new(&config.data.source);
        let resolved = resolve_path(&figment, "data.source", raw);
        // A hub dataset id stays an id unless a file of that name is beside the config.
        if crate::source::hub::looks_like_repo_id(&config.data.source) && !resolved.exists() {
            raw.to_path_buf()
        } else {
            resolved
        }
    });
    Ok(Resolved {
        config,
        file: file.to_path_buf(),
        model_path,
        data_path,
    })
}

/// `base` with the `--set` arguments layered over it and validated: for commands that work
/// from an existing config (a run's `config.toml`, or the defaults) rather than a file.
pub fn overlay(base: Config, sets: &[String]) -> Result<Config, ConfigError> {
    let sets = sets.iter().map(|s| SetArg::parse(s)).collect::<Result<Vec<_>, _>>()?;
    Ok(extract(Figment::from(Serialized::defaults(base)), sets)?.0)
}

/// `layers` with the `--set` arguments merged last, extracted and validated; each problem
/// starts with where its value came from. The figment is returned for resolving paths.
fn extract(layers: Figment, sets: Vec<SetArg>) -> Result<(Config, Figment), ConfigError> {
    let figment = sets.into_iter().fold(layers, |f, set| f.merge(set));
    let config: Config = figment.extract().map_err(|e| describe_figment_error(e, &figment))?;
    let mut problems = validate(&config);
    problems
        .iter_mut()
        .for_each(|p| *p = format!("{}: {p}", origin_of(&figment, key_of(p))));
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    Ok((config, figment))
}

fn env_provider() -> Env {
    Env::prefixed(ENV_PREFIX)
        .filter(|k| !ENV_RESERVED.iter().any(|r| k.as_str().eq_ignore_ascii_case(r)))
        .split("__")
}

/// The key path at the start of a validation problem (`generation.top_p = 2: …`).
fn key_of(problem: &str) -> &str {
    problem.split([' ', ':']).next().unwrap_or("")
}

/// Where the value of `key` came from: a file path, an environment variable or a `--set`.
fn origin_of(figment: &Figment, key: &str) -> String {
    match figment.find_metadata(key) {
        Some(md) => describe_metadata(md, key),
        None => "config".into(),
    }
}

fn describe_metadata(md: &Metadata, key: &str) -> String {
    match &md.source {
        Some(Source::File(p)) => p.display().to_string(),
        _ if md.name.contains("environment") => {
            format!(
                "environment variable {ENV_PREFIX}{}",
                key.to_uppercase().replace('.', "__")
            )
        }
        _ => md.name.to_string(),
    }
}

/// Relative paths are relative to the config file that set them, else to the working directory.
fn resolve_path(figment: &Figment, key: &str, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let base = match figment.find_metadata(key).and_then(|m| m.source.as_ref()) {
        Some(Source::File(f)) => f.parent().map(Path::to_path_buf).unwrap_or_default(),
        _ => PathBuf::new(),
    };
    crate::base::util::absolute(&base.join(path))
}

fn describe_figment_error(err: figment::Error, figment: &Figment) -> ConfigError {
    use figment::error::Kind;
    let problems = err
        .into_iter()
        .map(|e| {
            let path = e.path.join(".");
            let origin = match &e.metadata {
                Some(md) => describe_metadata(md, &path),
                None => origin_of(figment, &path),
            };
            let message = match &e.kind {
                Kind::UnknownField(field, expected) => {
                    // figment's path already ends with the unknown field.
                    let full = if path.ends_with(field.as_str()) {
                        path.clone()
                    } else if path.is_empty() {
                        field.clone()
                    } else {
                        format!("{path}.{field}")
                    };
                    let hint = closest(field, expected)
                        .map(|c| format!(" (did you mean `{c}`?)"))
                        .unwrap_or_default();
                    format!(
                        "{full}: unknown key{hint}; the keys allowed here are: {}",
                        expected.join(", ")
                    )
                }
                Kind::InvalidType(actual, expected) => {
                    format!("{path}: wrong type: found {actual}, expected {expected}")
                }
                Kind::InvalidValue(actual, expected) => {
                    format!("{path}: invalid value: found {actual}, expected {expected}")
                }
                Kind::UnknownVariant(actual, expected) => {
                    format!("{path} = \"{actual}\": not one of: {}", expected.join(", "))
                }
                other => format!("{path}: {other}"),
            };
            format!("{origin}: {message}")
        })
        .collect();
    ConfigError { problems }
}

/// The allowed key closest to a misspelt one, if any is close.
fn closest<'a>(field: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (strsim::levenshtein(field, a), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 3))
        .min()
        .map(|(_, a)| a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Count;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn file_then_set_layering() {
        let d = tempfile::tempdir().unwrap();
        let f = write(
            d.path(),
            "a.toml",
            "name = \"x\"\n[generation]\nchunk_size = 5\noversample = 6\n",
        );
        let r = load(&f, &["generation.chunk_size=2".into(), "seed=9".into()]).unwrap();
        assert_eq!(r.config.generation.chunk_size, Count::N(2));
        assert_eq!(r.config.generation.oversample, 6);
        assert_eq!(r.config.seed, 9);
        assert_eq!(r.config.name, "x");
        assert_eq!(r.config.generation.temperature, 0.7);
    }

    #[test]
    fn unknown_key_names_file_and_full_path() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "a.toml", "[generation]\nchunk_szie = 5\n");
        let e = load(&f, &[]).unwrap_err().to_string();
        assert!(e.contains("a.toml: generation.chunk_szie: unknown key"), "{e}");
        assert!(e.contains("did you mean `chunk_size`"), "{e}");
    }

    #[test]
    fn wrong_type_names_key() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "a.toml", "[generation]\ntemperature = \"hot\"\n");
        let e = load(&f, &[]).unwrap_err().to_string();
        assert!(e.contains("a.toml: generation.temperature: wrong type"), "{e}");
    }

    #[test]
    fn out_of_range_values_say_the_range_and_origin() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "a.toml", "[generation]\nchunk_size = 0\ntop_p = 1.5\n");
        let e = load(&f, &["generation.max_new_tokens=0".into()]).unwrap_err();
        let s = e.to_string();
        assert_eq!(e.problems.len(), 3, "{s}");
        assert!(s.contains("a.toml: generation.chunk_size = 0: must be ≥ 1"), "{s}");
        assert!(s.contains("a.toml: generation.top_p = 1.5: must be in (0, 1]"), "{s}");
        assert!(
            s.contains("--set generation.max_new_tokens=0: generation.max_new_tokens = 0: must be ≥ 1"),
            "{s}"
        );
    }

    #[test]
    fn generation_keys_are_checked_with_their_key_path() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "a.toml", "[generation]\nstop_after_correct = 0\n");
        let s = load(&f, &[]).unwrap_err().to_string();
        assert!(
            s.contains("a.toml: generation.stop_after_correct = 0: must be ≥ 1"),
            "{s}"
        );
        let e = load(&f, &["generation.stop_after_correct=-1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("generation.stop_after_correct"), "{e}");
        let e = load(&f, &["generation.logprobs=1".into()]).unwrap_err().to_string();
        assert!(e.contains("generation.logprobs"), "{e}");
        let c = load(
            &f,
            &[
                "generation.stop_after_correct=2".into(),
                "generation.logprobs=true".into(),
            ],
        )
        .unwrap()
        .config;
        assert_eq!(
            (c.generation.stop_after_correct, c.generation.logprobs),
            (Some(2), true)
        );
    }

    #[test]
    fn preference_keys_are_checked_with_their_key_path() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "a.toml", "[rft]\nkeep_pass_rate = [0.9, 0.1]\n");
        let s = load(&f, &[]).unwrap_err().to_string();
        assert!(
            s.contains("a.toml: rft.keep_pass_rate = [0.9, 0.1]: lo must be ≤ hi"),
            "{s}"
        );
        let e = load(
            &f,
            &[
                "rft.keep_pass_rate=[0, 1.5]".into(),
                "rft.max_pairs_per_question=0".into(),
            ],
        )
        .unwrap_err();
        let s = e.to_string();
        assert_eq!(e.problems.len(), 2, "{s}");
        assert!(
            s.contains("--set rft.keep_pass_rate=[0, 1.5]: rft.keep_pass_rate = [0, 1.5]: both bounds must be pass rates in [0, 1]"),
            "{s}"
        );
        assert!(s.contains("rft.max_pairs_per_question = 0: must be ≥ 1"), "{s}");
        // Whole numbers are pass rates too; equal bounds keep one pass rate.
        let c = load(&f, &["rft.keep_pass_rate=[0, 1]".into()]).unwrap().config;
        assert_eq!(c.rft.keep_pass_rate, Some([0.0, 1.0]));
        let c = load(&f, &["rft.keep_pass_rate=[0.2, 0.2]".into()]).unwrap().config;
        assert_eq!(c.rft.keep_pass_rate, Some([0.2, 0.2]));
        let e = load(&f, &["rft.keep_pass_rate=[0.2]".into()]).unwrap_err().to_string();
        assert!(e.contains("rft.keep_pass_rate"), "{e}");
    }

    #[test]
    fn set_errors() {
        assert!(SetArg::parse("generation.chunk_size")
            .unwrap_err()
            .to_string()
            .contains("expected KEY=VALUE"));
        assert!(SetArg::parse("a..b=1").is_err());
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "a.toml", "");
        let e = load(&f, &["generation.nope=1".into()]).unwrap_err().to_string();
        assert!(
            e.contains("--set generation.nope=1: generation.nope: unknown key"),
            "{e}"
        );
    }

    #[test]
    fn set_values_are_toml_or_strings() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "a.toml", "");
        let r = load(&f, &["name=plain-name".into(), "generation.temperature=1".into()]).unwrap();
        assert_eq!(r.config.name, "plain-name");
        assert_eq!(r.config.generation.temperature, 1.0);
    }

    #[test]
    fn invalid_toml_is_reported_with_position() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "a.toml", "[generation\n");
        let e = load(&f, &[]).unwrap_err().to_string();
        assert!(e.contains("a.toml: invalid TOML"), "{e}");
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn relative_paths_follow_the_file_that_set_them() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        let f = write(
            &d.path().join("sub"),
            "a.toml",
            "[model]\npath = \"m.gguf\"\n[data]\nsource = \"q.json\"\n",
        );
        let r = load(&f, &[]).unwrap();
        assert_eq!(
            r.model_path.unwrap(),
            crate::base::util::absolute(&d.path().join("sub/m.gguf"))
        );
        assert_eq!(
            r.data_path.unwrap(),
            crate::base::util::absolute(&d.path().join("sub/q.json"))
        );
    }

    #[test]
    fn prompt_date_and_template_vars_load_validate_and_enter_the_hash_only_when_set() {
        use crate::core::config::{EngineKey, WeightFormat};
        let d = tempfile::tempdir().unwrap();
        let engine = EngineKey {
            weights: WeightFormat::Q8_0,
            kv_cache: None,
            gpu: false,
        };
        let prompt_hash = |r: &Resolved| r.hash_input(&engine, "m", "q", 1)["prompt"].clone();
        let plain = load(&write(d.path(), "a.toml", ""), &[]).unwrap();
        let keys = prompt_hash(&plain);
        assert!(
            keys.get("date").is_none() && keys.get("template_vars").is_none(),
            "{keys}"
        );
        // A TOML date or a string; a table of any values.
        let text = "[prompt]\ndate = 2026-01-01\n[prompt.template_vars]\nenable_thinking = false\ndate_string = \"01 Jan 2026\"\n";
        let set = load(&write(d.path(), "b.toml", text), &[]).unwrap();
        assert_eq!(set.config.prompt.date.as_deref(), Some("2026-01-01"));
        assert_eq!(
            set.config.prompt.template_vars["enable_thinking"],
            toml::Value::Boolean(false)
        );
        let keys = prompt_hash(&set);
        assert_eq!(keys["date"], "2026-01-01");
        assert_eq!(
            keys["template_vars"],
            serde_json::json!({"date_string": "01 Jan 2026", "enable_thinking": false})
        );
        let quoted = load(&write(d.path(), "c.toml", ""), &["prompt.date=\"2026-01-01\"".into()]).unwrap();
        assert_eq!(quoted.config.prompt.date, set.config.prompt.date);
        let f2 = write(d.path(), "d.toml", &set.to_toml());
        assert_eq!(load(&f2, &[]).unwrap().config, set.config);
        let e = load(
            &write(d.path(), "f.toml", ""),
            &[
                "prompt.date=2025-02-29".into(),
                "prompt.template_vars.messages=[]".into(),
                "prompt.template_vars.add_generation_prompt=false".into(),
            ],
        )
        .unwrap_err();
        let s = e.to_string();
        assert_eq!(e.problems.len(), 3, "{s}");
        assert!(
            s.contains("prompt.date = \"2025-02-29\": \"2025-02-29\" is not a day of the calendar"),
            "{s}"
        );
        assert!(
            s.contains("prompt.template_vars.messages: rftx sets `messages` itself"),
            "{s}"
        );
        let e = load(&write(d.path(), "g.toml", ""), &["prompt.date=5".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("prompt.date: found 5, expected a date written YYYY-MM-DD"),
            "{e}"
        );
    }

    #[test]
    fn resolved_toml_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "a.toml", "name = \"rt\"\n[generation]\ntop_p = 0.9\n");
        let r = load(&f, &[]).unwrap();
        let f2 = write(d.path(), "b.toml", &r.to_toml());
        let r2 = load(&f2, &[]).unwrap();
        assert_eq!(r.config, r2.config);
    }
}
