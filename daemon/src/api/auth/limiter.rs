//! Login attempt limits per source address and per user name, in memory.
//! Failures are counted in fixed windows; a key over its limit is refused
//! until its window ends. The map is bounded: when full, expired windows
//! go first, then the oldest.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins one address may make per window.
pub const PER_ADDRESS: u32 = 20;
/// Failed logins one user name may receive per window.
pub const PER_USER: u32 = 5;
/// Window length.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Most keys remembered.
const MAX_KEYS: usize = 10_000;

#[derive(Default)]
pub struct LoginLimiter {
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl LoginLimiter {
    /// `Some(retry_after)` if either key is over its limit.
    pub fn blocked(&self, addr: &str, user: &str) -> Option<Duration> {
        let now = Instant::now();
        let map = self.windows.lock().ok()?;
        let over = |key: String, limit: u32| {
            map.get(&key).and_then(|(start, n)| {
                let end = *start + WINDOW;
                (*n >= limit && end > now).then(|| end - now)
            })
        };
        let a = over(format!("a:{addr}"), PER_ADDRESS);
        let u = over(format!("u:{user}"), PER_USER);
        a.max(u)
    }

    /// Counts a failed attempt against both keys.
    pub fn failed(&self, addr: &str, user: &str) {
        let now = Instant::now();
        let Ok(mut map) = self.windows.lock() else {
            return;
        };
        for key in [format!("a:{addr}"), format!("u:{user}")] {
            if map.len() >= MAX_KEYS && !map.contains_key(&key) {
                map.retain(|_, (start, _)| *start + WINDOW > now);
                if map.len() >= MAX_KEYS {
                    if let Some(oldest) = map
                        .iter()
                        .min_by_key(|(_, (start, _))| *start)
                        .map(|(k, _)| k.clone())
                    {
                        map.remove(&oldest);
                    }
                }
            }
            let e = map.entry(key).or_insert((now, 0));
            if e.0 + WINDOW <= now {
                *e = (now, 0);
            }
            e.1 += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_limit_blocks_then_other_users_pass() {
        let l = LoginLimiter::default();
        for _ in 0..PER_USER {
            assert!(l.blocked("1.2.3.4", "bob").is_none());
            l.failed("1.2.3.4", "bob");
        }
        let wait = l.blocked("1.2.3.4", "bob").expect("blocked");
        assert!(wait <= WINDOW);
        assert!(l.blocked("1.2.3.4", "carol").is_none());
    }

    #[test]
    fn map_stays_bounded() {
        let l = LoginLimiter::default();
        for i in 0..(MAX_KEYS + 10) {
            l.failed(&format!("10.0.{}.{}", i / 256, i % 256), "x");
        }
        assert!(l.windows.lock().expect("lock").len() <= MAX_KEYS);
    }
}
