//! Property tests: no TOML file and no `--set` string makes config loading panic; every
//! failure is a `ConfigError` with at least one message.
use proptest::prelude::*;

const KEYS: &[&str] = &[
    "name",
    "seed",
    "model.path",
    "model.weights",
    "model.arch",
    "data.source",
    "data.limit",
    "prompt.system",
    "prompt.examples",
    "generation.oversample",
    "generation.chunk_size",
    "generation.temperature",
    "generation.top_p",
    "generation.max_new_tokens",
    "rft.tolerance",
    "rft.grader",
    "rft.command",
    "rft.command_timeout_s",
    "checkpoint.every",
    "memory.budget",
    "memory.on_exceed",
    "plan.layout",
    "plan.prompts_per_batch",
    "plan.device",
    "generation",
    "nope",
    "generation.nope",
    "a.b.c",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        any::<bool>().prop_map(|v| v.to_string()),
        "[a-z0-9_ .\\-]{0,12}".prop_map(|s| format!("{s:?}")),
        "[\\[\\]{}=\"',.a-z0-9 ]{0,16}",
        Just("[1, 2]".to_string()),
        Just("{ a = 1 }".to_string()),
        Just("nan".to_string()),
        Just("-inf".to_string()),
        Just("\"\"".to_string()),
    ]
}

fn check(text: &str, sets: &[String]) -> Result<(), TestCaseError> {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("c.toml");
    std::fs::write(&f, text).unwrap();
    match rftx::core::config::load(&f, sets) {
        Ok(r) => {
            prop_assert!(rftx::core::config::validate(&r.config).is_empty());
            // A valid config round-trips through its resolved TOML (paths made absolute).
            let again = d.path().join("again.toml");
            std::fs::write(&again, r.to_toml()).unwrap();
            prop_assert_eq!(
                rftx::core::config::load(&again, &[]).map(|x| x.to_toml()).ok(),
                Some(r.to_toml())
            );
        }
        Err(e) => prop_assert!(!e.problems.is_empty() && e.problems.iter().all(|p| !p.is_empty())),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "[\\[\\]{}=\"'#,.\\n a-z0-9_\\-]{0,120}") {
        check(&text, &[])?;
    }

    #[test]
    fn key_value_files_never_panic(pairs in prop::collection::vec((prop::sample::select(KEYS), value()), 0..6)) {
        let mut text = String::new();
        for (k, v) in &pairs {
            // Dotted keys are valid TOML at the top level.
            text.push_str(&format!("{k} = {v}\n"));
        }
        check(&text, &[])?;
    }

    #[test]
    fn set_arguments_never_panic(sets in prop::collection::vec(
        prop_oneof![
            (prop::sample::select(KEYS), value()).prop_map(|(k, v)| format!("{k}={v}")),
            "[=a-z0-9_. \"\\[\\]\\-]{0,24}",
        ],
        0..5,
    )) {
        check("", &sets)?;
    }
}
