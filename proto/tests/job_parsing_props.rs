//! Job parsing and validation never panic, whatever the input; a job that
//! validates once validates again (normalisation is stable).

use cronsun_proto::api::JobFile;
use cronsun_proto::job::ValidateContext;
use cronsun_proto::Job;
use proptest::prelude::*;

fn ctx() -> ValidateContext {
    ValidateContext {
        default_timezone: "UTC".into(),
        now: "2026-01-01T00:00:00Z".parse().expect("ts"),
        allow_past_at: false,
    }
}

/// JSON-ish fragments that exercise the job's fields.
fn field() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "id",
        "name",
        "group",
        "command",
        "shell",
        "rules",
        "kind",
        "concurrency",
        "max_parallel",
        "timeout",
        "kill_grace",
        "retries",
        "retry_delay",
        "on_lost",
        "run_as",
        "env",
        "workdir",
        "missed",
        "start_deadline",
        "max_catchup",
        "paused",
        "output_limit",
        "limits",
        "labels",
        "revision",
    ]);
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-z0-9 */,@:-]{0,20}".prop_map(|s| format!("{s:?}")),
        Just("[\"/bin/true\"]".to_string()),
        Just("[{\"schedule\": \"* * * * *\"}]".to_string()),
        "[ -~]{0,12}"
            .prop_map(|s| format!("[{{\"schedule\": {s:?}, \"timezone\": \"Europe/Berlin\"}}]")),
        Just("{\"A\": {\"secret\": true}}".to_string()),
        Just("{\"memory\": \"1M\", \"cpu\": -1}".to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
    ];
    (key, value).prop_map(|(k, v)| format!("{k:?}: {v}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_json_never_panics(s in "\\PC{0,200}") {
        if let Ok(mut j) = serde_json::from_str::<Job>(&s) {
            let _ = j.validate(&ctx());
        }
    }

    #[test]
    fn structured_jobs_never_panic_and_validation_is_stable(fields in prop::collection::vec(field(), 0..12)) {
        let text = format!("{{{}}}", fields.join(", "));
        if let Ok(mut j) = serde_json::from_str::<Job>(&text) {
            if j.validate(&ctx()).is_ok() {
                let once = j.clone();
                prop_assert!(j.validate(&ctx()).is_ok(), "revalidation failed: {text}");
                prop_assert_eq!(once, j);
            }
        }
    }

    #[test]
    fn arbitrary_toml_job_files_never_panic(s in "\\PC{0,300}") {
        if let Ok(f) = toml::from_str::<JobFile>(&s) {
            for mut j in f.job {
                let _ = j.validate(&ctx());
            }
        }
    }
}
