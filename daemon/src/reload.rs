//! SIGHUP: re-read the config, apply in place what can change at runtime,
//! and say by name what needs a restart.
//!
//! Changed in place: `log.level`; `retention.*` (the next retention pass
//! runs at once); `scheduler.max_concurrent_runs`, `scheduler.drain_timeout`,
//! `scheduler.clock_step_tolerance`; `security.default_run_as`,
//! `security.allowed_users`, `security.allowed_commands` — applied by the
//! executor: with privilege separation the root executor re-reads the file
//! itself on the SIGHUP it receives first (the agent cannot hand it a
//! policy). Everything else (node id, state dir, listeners, `lead`, the
//! default zone, agent user, stores) keeps its running value until a restart.
//! A config that does not validate changes nothing.

use std::path::Path;

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::exec::Executor;
use crate::logging::{self, LevelChange};
use crate::scheduler::{Limits, SchedulerHandle};
use crate::store::Retention;

/// What a new config changes compared with the running one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Keys that take effect without a restart.
    pub applied: Vec<&'static str>,
    /// Sections with changes that need a restart.
    pub restart: Vec<&'static str>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty() && self.restart.is_empty()
    }
}

/// The keys that change at runtime, each with how to copy it.
type Copy = fn(&mut Config, &Config);
const LIVE: &[(&str, Copy)] = &[
    ("log.level", |d, s| d.log.level.clone_from(&s.log.level)),
    ("retention.max_age", |d, s| {
        d.retention.max_age = s.retention.max_age;
    }),
    ("retention.max_runs_per_job", |d, s| {
        d.retention.max_runs_per_job = s.retention.max_runs_per_job;
    }),
    ("scheduler.max_concurrent_runs", |d, s| {
        d.scheduler.max_concurrent_runs = s.scheduler.max_concurrent_runs;
    }),
    ("scheduler.drain_timeout", |d, s| {
        d.scheduler.drain_timeout = s.scheduler.drain_timeout;
    }),
    ("scheduler.clock_step_tolerance", |d, s| {
        d.scheduler.clock_step_tolerance = s.scheduler.clock_step_tolerance;
    }),
    ("security.default_run_as", |d, s| {
        d.security
            .default_run_as
            .clone_from(&s.security.default_run_as);
    }),
    ("security.allowed_users", |d, s| {
        d.security
            .allowed_users
            .clone_from(&s.security.allowed_users);
    }),
    ("security.allowed_commands", |d, s| {
        d.security
            .allowed_commands
            .clone_from(&s.security.allowed_commands);
    }),
];

fn dbg(v: &impl std::fmt::Debug) -> String {
    format!("{v:?}")
}

/// Compares `running` with `new`; returns the changes and the config that
/// is in effect once the live keys are applied (restart-only values stay
/// as they run, so the next reload still reports them).
pub fn diff(running: &Config, new: &Config) -> (Changes, Config) {
    let mut changes = Changes::default();
    let mut effective = running.clone();
    for (key, copy) in LIVE {
        let before = dbg(&effective);
        copy(&mut effective, new);
        if dbg(&effective) != before {
            changes.applied.push(key);
        }
    }
    let sections: [(&'static str, String, String); 8] = [
        ("[node]", dbg(&effective.node), dbg(&new.node)),
        ("[web]", dbg(&effective.web), dbg(&new.web)),
        (
            "[scheduler]",
            dbg(&effective.scheduler),
            dbg(&new.scheduler),
        ),
        ("[security]", dbg(&effective.security), dbg(&new.security)),
        (
            "[retention]",
            dbg(&effective.retention),
            dbg(&new.retention),
        ),
        ("[log]", dbg(&effective.log), dbg(&new.log)),
        ("[etcd]", dbg(&effective.etcd), dbg(&new.etcd)),
        ("[mongodb]", dbg(&effective.mongodb), dbg(&new.mongodb)),
    ];
    changes.restart = sections
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(name, _, _)| name)
        .collect();
    if changes.restart.is_empty() && dbg(&effective) != dbg(new) {
        changes.restart.push("other settings");
    }
    (changes, effective)
}

/// The parts of a running agent that a reload reaches.
pub struct Live {
    pub sched: SchedulerHandle,
    pub exec: Executor,
    pub retention: watch::Sender<Retention>,
}

impl Live {
    /// Handles one SIGHUP: `running` becomes the config now in effect.
    pub async fn reload(&self, path: &Path, running: &mut Config) {
        let new = match Config::load(path, true) {
            Ok(c) => c,
            Err(e) => {
                error!("SIGHUP: new config rejected, nothing changed: {e}");
                return;
            }
        };
        let (changes, effective) = diff(running, &new);
        if changes.is_empty() {
            info!("SIGHUP: config unchanged");
            return;
        }
        // Once per section: three changed scheduler keys are one update.
        let mut sections: Vec<&str> = changes
            .applied
            .iter()
            .filter_map(|k| k.split('.').next())
            .collect();
        sections.dedup();
        for section in sections {
            self.apply(section, &effective).await;
        }
        *running = effective;
        if !changes.applied.is_empty() {
            info!("SIGHUP: applied {}", changes.applied.join(", "));
        }
        if !changes.restart.is_empty() {
            warn!(
                "SIGHUP: restart cronsund to apply the changes in {}",
                changes.restart.join(", ")
            );
        }
    }

    async fn apply(&self, section: &str, cfg: &Config) {
        match section {
            "log" => match logging::set_level(&cfg.log.level) {
                Ok(LevelChange::Applied) => {}
                Ok(LevelChange::OverriddenByEnv) => warn!(
                    "SIGHUP: log.level changed but {} is set and keeps precedence",
                    logging::ENV
                ),
                Ok(LevelChange::NotReloadable) => {}
                Err(e) => error!("SIGHUP: {e}"),
            },
            "retention" => {
                self.retention.send_replace(retention(cfg));
            }
            "scheduler" => {
                if let Err(e) = self.sched.set_limits(limits(cfg)).await {
                    error!("SIGHUP: cannot apply the [scheduler] limits: {e}");
                }
            }
            "security" => {
                // The remote executor has re-read the file itself.
                self.exec.set_policy(cfg.exec_policy());
            }
            _ => {}
        }
    }
}

/// The retention policy of a config.
pub fn retention(cfg: &Config) -> Retention {
    Retention {
        max_age: Some(cfg.retention.max_age.0),
        max_per_job: Some(cfg.retention.max_runs_per_job),
    }
}

/// The scheduler limits of a config.
pub fn limits(cfg: &Config) -> Limits {
    Limits {
        drain_timeout: cfg.scheduler.drain_timeout.0,
        step_tolerance: cfg.scheduler.clock_step_tolerance.0,
        max_concurrent: cfg.scheduler.max_concurrent_runs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cronsun_proto::Dur;
    use std::time::Duration;

    #[test]
    fn unchanged_config_changes_nothing() {
        let c = Config::default();
        let (changes, effective) = diff(&c, &c.clone());
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(dbg(&effective), dbg(&c));
    }

    #[test]
    fn live_keys_are_applied_and_the_rest_needs_a_restart() {
        let old = Config::default();
        let mut new = old.clone();
        new.log.level = "debug".into();
        new.security.allowed_users = vec!["backup".into()];
        new.scheduler.max_concurrent_runs = 7;
        new.scheduler.timezone = "Asia/Tokyo".into();
        new.web.listen = "127.0.0.1:9999".parse().unwrap();
        let (changes, effective) = diff(&old, &new);
        assert_eq!(
            changes.applied,
            vec![
                "log.level",
                "scheduler.max_concurrent_runs",
                "security.allowed_users"
            ]
        );
        assert_eq!(changes.restart, vec!["[web]", "[scheduler]"]);
        // In effect: the live values; the restart-only ones as they run.
        assert_eq!(effective.log.level, "debug");
        assert_eq!(effective.scheduler.max_concurrent_runs, 7);
        assert_eq!(effective.scheduler.timezone, old.scheduler.timezone);
        assert_eq!(effective.web.listen, old.web.listen);
        // Reloading the same file again still names the pending restart.
        let (again, _) = diff(&effective, &new);
        assert!(again.applied.is_empty());
        assert_eq!(again.restart, vec!["[web]", "[scheduler]"]);
    }

    #[test]
    fn retention_and_limits_follow_the_config() {
        let mut c = Config::default();
        c.retention.max_age = Dur(Duration::from_secs(60));
        c.retention.max_runs_per_job = 5;
        c.scheduler.max_concurrent_runs = 3;
        assert_eq!(
            retention(&c),
            Retention {
                max_age: Some(Duration::from_secs(60)),
                max_per_job: Some(5)
            }
        );
        assert_eq!(limits(&c).max_concurrent, 3);
    }
}
