//! Fault points for crash tests (DESIGN §1): in debug builds, naming a point
//! in `CRONSUN_FAULTS` (comma-separated) makes the daemon abort there, as a
//! kill -9 would ([`hit`]), or makes an operation fail there ([`fails`]).
//! With `CRONSUN_FAULTS_FILE` set, the list is read from that file at each
//! check instead, so a test can switch faults on and off while the daemon
//! runs. Release builds compile this to nothing.

/// Aborts the process if `point` is enabled.
pub fn hit(point: &str) {
    if cfg!(debug_assertions) && enabled(point) {
        eprintln!("cronsund: fault point {point:?} hit, aborting");
        std::process::abort();
    }
}

/// Whether the operation at `point` must fail now (an injected I/O error).
pub fn fails(point: &str) -> bool {
    cfg!(debug_assertions) && enabled(point)
}

fn enabled(point: &str) -> bool {
    let list = match std::env::var_os("CRONSUN_FAULTS_FILE") {
        Some(f) => std::fs::read_to_string(f).unwrap_or_default(),
        None => std::env::var("CRONSUN_FAULTS").unwrap_or_default(),
    };
    list.split([',', '\n']).any(|p| p.trim() == point)
}
