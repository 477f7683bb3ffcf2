//! Config parsing never panics on arbitrary text, and every error it returns
//! names the file (and a line when the input has one).

use std::path::Path;

use cronsund::config::Config;
use proptest::prelude::*;

fn fragment() -> impl Strategy<Value = String> {
    let section = prop::sample::select(vec![
        "[node]",
        "[web]",
        "[scheduler]",
        "[security]",
        "[retention]",
        "[log]",
        "[bogus]",
    ]);
    let key = prop::sample::select(vec![
        "id",
        "state_dir",
        "groups",
        "listen",
        "socket",
        "timezone",
        "drain_timeout",
        "lead",
        "clock_step_tolerance",
        "max_concurrent_runs",
        "default_run_as",
        "allowed_users",
        "allowed_commands",
        "max_age",
        "max_runs_per_job",
        "level",
        "colour",
    ]);
    let value = prop_oneof![
        "[ -~]{0,16}".prop_map(|s| format!("{s:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("[\"a\", 1]".to_string()),
        Just("{ x = 1 }".to_string()),
        Just("true".to_string()),
    ];
    (section, key, value).prop_map(|(s, k, v)| format!("{s}\n{k} = {v}\n"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,300}") {
        if let Err(e) = Config::parse(Path::new("/etc/cronsun/cronsun.toml"), &s) {
            prop_assert!(e.to_string().starts_with("/etc/cronsun/cronsun.toml"), "{e}");
        }
    }

    #[test]
    fn plausible_configs_never_panic_and_errors_have_a_line(parts in prop::collection::vec(fragment(), 0..8)) {
        let text = parts.concat();
        if let Err(e) = Config::parse(Path::new("/etc/cronsun/cronsun.toml"), &text) {
            prop_assert!(e.line.is_some(), "no line for {text:?}: {e}");
        }
    }
}
