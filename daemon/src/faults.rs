//! Fault points for crash tests (DESIGN §1): in debug builds, naming a point
//! in `CRONSUN_FAULTS` (comma-separated) makes the daemon abort there, as a
//! kill -9 would. Release builds compile this to nothing.

/// Aborts the process if `point` is enabled.
pub fn hit(point: &str) {
    if cfg!(debug_assertions) && enabled(point) {
        eprintln!("cronsund: fault point {point:?} hit, aborting");
        std::process::abort();
    }
}

fn enabled(point: &str) -> bool {
    std::env::var("CRONSUN_FAULTS")
        .map(|v| v.split(',').any(|p| p.trim() == point))
        .unwrap_or(false)
}
