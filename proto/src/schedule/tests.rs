use super::*;

fn show(expr: &str, tz: &str, from: &str, n: usize) -> Vec<String> {
    let from: Timestamp = from.parse().expect("from");
    preview(expr, tz, from, n)
        .expect("valid")
        .iter()
        .map(|z| z.to_string())
        .collect()
}

#[test]
fn scratch() {
    for (e, tz, from) in [
        ("0 */2 * * *", "Europe/Berlin", "2026-10-24T22:00:00Z"),
        ("0 1-3 * * *", "Europe/Berlin", "2026-03-28T22:00:00Z"),
        ("15 2 * * *", "Australia/Lord_Howe", "2026-10-03T00:00:00Z"),
        (
            "*/15 1 * * *",
            "Australia/Lord_Howe",
            "2026-04-04T00:00:00Z",
        ),
        ("0 0 * * *", "America/Santiago", "2026-09-01T00:00:00Z"),
        ("0 0 * * *", "America/Santiago", "2026-04-01T00:00:00Z"),
        ("0 0 29 2 *", "UTC", "2096-03-01T00:00:00Z"),
    ] {
        println!("{e} {tz}: {:?}", show(e, tz, from, 8));
    }
}
