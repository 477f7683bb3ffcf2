//! This node: its id (configured, or persisted in the state dir), its facts
//! for `/api/v1/nodes`, first-start secrets, and clock health.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use rand::RngExt;

/// What the API says about this node.
#[derive(Clone, Debug)]
pub struct NodeFacts {
    pub id: String,
    pub hostname: String,
    pub groups: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub started_at: Timestamp,
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The node id: configured, else the one persisted in `state_dir/node_id`,
/// else derived from the hostname and persisted.
pub fn node_id(configured: Option<&str>, state_dir: &Path) -> std::io::Result<String> {
    if let Some(id) = configured {
        return Ok(id.to_string());
    }
    let path = state_dir.join("node_id");
    match std::fs::read_to_string(&path) {
        Ok(s) if crate::config::is_node_id(s.trim()) => return Ok(s.trim().to_string()),
        Ok(_) | Err(_) => {}
    }
    let mut id: String = hostname()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if id.is_empty() {
        id = "node".into();
    }
    write_private(&path, id.as_bytes(), false)?;
    Ok(id)
}

/// Writes a file readable only by its owner (mode 0600). With `keep`, an
/// existing file is left alone and `false` is returned.
pub fn write_private(path: &Path, content: &[u8], keep: bool) -> std::io::Result<bool> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).mode(0o600);
    if keep {
        opts.create_new(true);
    } else {
        opts.create(true).truncate(true);
    }
    match opts.open(path) {
        Ok(mut f) => {
            f.write_all(content)?;
            f.sync_all()?;
            Ok(true)
        }
        Err(e) if keep && e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Replaces `path` with a new file of `mode` holding `data`, synced: a stale
/// file is removed first, so the mode and owner are always the new file's
/// (never those of whatever was there).
pub fn replace_file(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// The admin token: created at first start in `state_dir/admin.token`
/// (0600); only its path is ever logged.
pub fn admin_token(state_dir: &Path) -> std::io::Result<(String, PathBuf, bool)> {
    let path = state_dir.join("admin.token");
    let bytes: [u8; 32] = rand::rng().random();
    let fresh = hex::encode(bytes);
    let created = write_private(&path, format!("{fresh}\n").as_bytes(), true)?;
    let token = std::fs::read_to_string(&path)?.trim().to_string();
    if token.len() < 16 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} holds no usable token (remove it to make a new one)",
                path.display()
            ),
        ));
    }
    Ok((token, path, created))
}

/// Whether the kernel says the clock is synchronised (`adjtimex`, no
/// `STA_UNSYNC`, max error under 500 ms).
pub fn clock_synchronised() -> bool {
    clock_within(std::time::Duration::from_millis(500))
}

/// Whether the kernel says the clock is synchronised with a max error
/// under `max_error` (the cluster's clock-health gate, `[etcd] max_skew`).
pub fn clock_within(max_error: std::time::Duration) -> bool {
    let limit = i64::try_from(max_error.as_micros()).unwrap_or(i64::MAX);
    clock_status().is_some_and(|(unsync, maxerror_us)| !unsync && maxerror_us < limit)
}

/// (`STA_UNSYNC` set, max error in µs) from `adjtimex` in read-only mode.
#[allow(unsafe_code)]
fn clock_status() -> Option<(bool, i64)> {
    // SAFETY: `timex` is plain data; zeroed with modes = 0 asks adjtimex to
    // only read the kernel's state into it.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `tx` is a valid, exclusively borrowed timex for the call.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return None;
    }
    Some((tx.status & libc::STA_UNSYNC != 0, tx.maxerror))
}

/// Bounds glibc's malloc arenas. By default every thread that allocates may
/// get an arena of its own (up to 8 per core); with per-run supervisor
/// threads and the runtime's workers that multiplies resident memory for no
/// gain in a daemon this size. Called first thing in `main`, before threads.
#[allow(unsafe_code)]
pub fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator parameter; no pointers involved.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns freed heap memory to the kernel (after a large job apply, whose
/// parsing peaks far above the steady state).
#[allow(unsafe_code)]
pub fn release_free_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
