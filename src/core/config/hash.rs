//! The canonical form of a resolved config that the run directory's content hash is computed
//! from ([`Resolved::hash_input`], [`canonical_json`]).
use std::collections::BTreeMap;

use super::{Count, Grader, KvCacheFormat, ModelInit, Resolved, RftConfig, WeightFormat, DEFAULT_TOLERANCE};

/// Version of the canonical form. Bump it when generation semantics change, so that old run
/// directories are never mistaken for new ones.
pub const HASH_FORMAT: &str = "rftx-run-v2";

impl Resolved {
    /// The canonical JSON object the run hash is computed from: every key that can change the
    /// samples or the measurements, plus the digests of the model file and the question set.
    /// `engine` is what the config names, never what a machine has: the kind of device and the
    /// weight format (`auto` made concrete for that kind), so that a run has one directory on a
    /// login node, on the GPU node that runs a shard and in a CPU-only build. On the CPU the
    /// object is what it was before GPUs existed, so CPU run hashes did not change; on a GPU it
    /// says `cuda` (the GPU model is recorded per session, and a run is never resumed or merged
    /// across two). Deliberately left out: `name` (it prefixes the directory),
    /// paths (the digests stand for the content), `checkpoint.every` (durability only: change
    /// it and resume), `[memory]` (a budget never changes the samples; raise it and resume) and
    /// `[plan]`, `model.arch` unless it shapes a random model (planning only).
    pub fn hash_input(
        &self,
        engine: &EngineKey,
        model_sha256: &str,
        questions_sha256: &str,
        questions: usize,
    ) -> serde_json::Value {
        let c = &self.config;
        let mut model = serde_json::json!({ "sha256": model_sha256, "weights": engine.weights.as_str() });
        if let Some(kv) = engine.kv_cache {
            model["kv_cache"] = kv.as_str().into();
        }
        if c.model.init == ModelInit::Random {
            model["init"] = "random".into();
            model["arch"] = c.model.arch.clone().unwrap_or_default().into();
        }
        let mut v = serde_json::json!({
            "format": HASH_FORMAT,
            "seed": c.seed,
            "model": model,
            "data": { "sha256": questions_sha256, "questions": questions },
            "prompt": c.prompt,
            "generation": c.generation,
            "rft": c.rft.hash_value(c.data.is_builtin()),
        });
        // One question at a time is how every run was made before batching existed: leaving the
        // key out keeps their hashes.
        if c.generation.prompts_per_batch == Count::N(1) {
            if let Some(g) = v["generation"].as_object_mut() {
                g.remove("prompts_per_batch");
            }
        }
        if engine.gpu {
            v["device"] = serde_json::json!({ "kind": "cuda" });
            // The kernels and the GEMMs' choice change a GPU run's bits: named where they are
            // not the defaults every earlier GPU run had.
            if !c.model.gpu_kernels.is_default() {
                v["device"]["kernels"] = c.model.gpu_kernels.as_str().into();
            }
            if !c.model.batch_invariant {
                v["device"]["batch_invariant"] = false.into();
            }
        }
        v
    }
}

impl RftConfig {
    /// `[rft]` as the run hash (and a regrade's directory) holds it: the keys that can change a
    /// verdict, each only where it is set or not its default, so that earlier runs keep their
    /// hashes. `tolerance`, which every earlier hash held, is `0.05` where unset means what it
    /// always did (the built-in set; graders other than `numeric`) and `"auto"` where unset now
    /// makes whole-number references exact. `command` counts only for the command grader, and
    /// `command_timeout_s` never (a verifier that is too slow fails the run; it changes no verdict).
    pub fn hash_value(&self, builtin_data: bool) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("[rft] serialises");
        let tolerance = match self.tolerance {
            Some(t) => serde_json::json!(t),
            None if builtin_data || self.grader != Grader::Numeric => serde_json::json!(DEFAULT_TOLERANCE),
            None => serde_json::json!("auto"),
        };
        if let Some(m) = v.as_object_mut() {
            m.insert("tolerance".into(), tolerance);
            m.remove("command_timeout_s");
            if self.grader != Grader::Command {
                m.remove("command");
            }
            // `extract = "answer_tag"` is what `auto` means for every grader but `math`: left out,
            // the hash such runs had before `auto` existed. The math grader names its rules'
            // version, so that a run graded before math_verify's rules is never resumed with them.
            if self.extract == super::Extract::AnswerTag && self.grader != Grader::Math {
                m.remove("extract");
            }
            if self.grader == Grader::Math {
                m.insert("math".into(), "math_verify-0.9.0".into());
            }
        }
        v
    }
}

/// What a config names, as far as the samples depend on it: the weight format, the KV cache's
/// element type and whether the device is a GPU (from the config and the build, never from
/// probing the machine).
#[derive(Debug, Clone, PartialEq)]
pub struct EngineKey {
    pub weights: WeightFormat,
    /// `model.kv_cache` where it differs from the activations' dtype (`None`: the cache every
    /// run had before the key existed, so that their hashes stay).
    pub kv_cache: Option<KvCacheFormat>,
    pub gpu: bool,
}

/// JSON with object keys sorted at every level and no whitespace: a canonical byte string.
pub fn canonical_json(v: &serde_json::Value) -> String {
    fn sort(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let sorted: BTreeMap<&String, serde_json::Value> = m.iter().map(|(k, v)| (k, sort(v))).collect();
                let mut out = serde_json::Map::new();
                for (k, v) in sorted {
                    out.insert(k.clone(), v);
                }
                serde_json::Value::Object(out)
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    // serde_json keeps insertion order when `preserve_order` is on somewhere in the build, so the
    // keys are written in sorted order explicitly rather than relying on the map type.
    let mut out = String::new();
    write_canonical(&sort(v), &mut out);
    out
}

fn write_canonical(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).unwrap());
                out.push(':');
                write_canonical(&m[*k], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rft_keys_enter_the_hash_only_where_they_change_a_verdict() {
        let default = RftConfig::default();
        let key = |r: &RftConfig, builtin, k: &str| r.hash_value(builtin).get(k).map(canonical_json);
        // What every hash held before `tolerance` could be unset, on the built-in set.
        assert_eq!(key(&default, true, "tolerance").as_deref(), Some("0.05"));
        assert_eq!(key(&default, false, "tolerance").as_deref(), Some("\"auto\""));
        let explicit = RftConfig {
            tolerance: Some(0.05),
            ..default.clone()
        };
        assert_eq!(key(&explicit, false, "tolerance").as_deref(), Some("0.05"));
        let math = RftConfig {
            grader: Grader::Math,
            ..default.clone()
        };
        assert_eq!(key(&math, false, "tolerance").as_deref(), Some("0.05"));
        let command = RftConfig {
            grader: Grader::Command,
            command: Some(vec!["python3".into(), "v.py".into()]),
            command_timeout_s: 5.0,
            ..default.clone()
        };
        assert_eq!(
            key(&command, false, "command").as_deref(),
            Some(r#"["python3","v.py"]"#)
        );
        assert_eq!(key(&command, false, "grader").as_deref(), Some("\"command\""));
        assert_eq!(key(&command, false, "command_timeout_s"), None);
        let unused = RftConfig {
            grader: Grader::Numeric,
            ..command
        };
        assert_eq!(unused.hash_value(true), default.hash_value(true));
    }

    #[test]
    fn preference_keys_enter_the_hash_only_when_set() {
        let default = RftConfig::default();
        // What every run hashed before the keys existed: they are absent.
        assert_eq!(canonical_json(&default.hash_value(true)), r#"{"tolerance":0.05}"#);
        let set = RftConfig {
            max_pairs_per_question: Some(2),
            keep_pass_rate: Some([0.1, 0.9]),
            ..default
        };
        assert_eq!(
            canonical_json(&set.hash_value(true)),
            r#"{"keep_pass_rate":[0.1,0.9],"max_pairs_per_question":2,"tolerance":0.05}"#
        );
    }

    #[test]
    fn generation_keys_enter_the_hash_only_when_set() {
        let default = crate::core::config::Config::default().generation;
        let key = |g: &crate::core::config::GenerationConfig| canonical_json(&serde_json::to_value(g).unwrap());
        let before = key(&default);
        assert!(
            !before.contains("logprobs") && !before.contains("stop_after_correct"),
            "{before}"
        );
        let set = crate::core::config::GenerationConfig {
            logprobs: true,
            stop_after_correct: Some(3),
            ..default
        };
        let after = key(&set);
        assert!(
            after.contains(r#""logprobs":true"#) && after.contains(r#""stop_after_correct":3"#),
            "{after}"
        );
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let v = serde_json::json!({"b": 1, "a": {"d": [1, {"z": 0, "y": 0.7}], "c": "x"}});
        assert_eq!(canonical_json(&v), r#"{"a":{"c":"x","d":[1,{"y":0.7,"z":0}]},"b":1}"#);
    }
}
