//! The job model (DESIGN §2) and its validation.
//!
//! A [`Job`] is what users write (job files, API bodies) and what the stores
//! keep. [`Job::validate`] is the single gate every write goes through: it
//! rejects a bad job whole, naming the field, and normalises what must be
//! explicit once saved (each rule's time zone, the name).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

use crate::duration::Dur;
use crate::ids::is_valid_job_id;
use crate::schedule::{JobSchedule, Schedule};

/// Largest `output_limit` a job may ask for (DESIGN §2).
pub const MAX_OUTPUT_LIMIT: u64 = 1024 * 1024;
/// Rules per job, retries per run: bounds that keep a job's cost predictable.
pub const MAX_RULES: usize = 32;
pub const MAX_RETRIES: u32 = 20;
pub const MAX_CATCHUP: u32 = 1000;

/// A job definition. Field names are part of the public contract (DESIGN §8).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// Stable id, `[a-z0-9][a-z0-9_-]*`.
    pub id: String,
    /// Human name; defaults to the id.
    #[serde(default)]
    pub name: String,
    /// Folder for humans and for permissions.
    #[serde(default = "default_group")]
    pub group: String,
    /// argv list, or a string split like a shell would (no expansion) unless `shell = true`.
    pub command: CommandLine,
    /// Run `command` (a string) with `/bin/sh -c`.
    #[serde(default)]
    pub shell: bool,
    /// One or more schedules; the job's instants are their union.
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub kind: JobKind,
    #[serde(default)]
    pub concurrency: Concurrency,
    /// Upper bound of simultaneous runs under `concurrency = "allow"`.
    #[serde(default = "default_max_parallel")]
    pub max_parallel: u32,
    /// Wall-clock limit of a run; none means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    /// Time between SIGTERM and SIGKILL.
    #[serde(default = "default_kill_grace")]
    pub kill_grace: Dur,
    #[serde(default)]
    pub retries: u32,
    #[serde(default = "default_retry_delay")]
    pub retry_delay: Dur,
    #[serde(default)]
    pub on_lost: OnLost,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<RunAs>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, EnvValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default)]
    pub missed: Missed,
    /// Latest a scheduled instant may start; default: the smaller of the period and 5 min.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_deadline: Option<Dur>,
    #[serde(default = "default_max_catchup")]
    pub max_catchup: u32,
    #[serde(default)]
    pub paused: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Notify::is_empty")]
    pub notify: Notify,
    #[serde(default = "default_output_limit")]
    pub output_limit: ByteSize,
    #[serde(default, skip_serializing_if = "Limits::is_empty")]
    pub limits: Limits,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Set by the store; updates must name the revision they change.
    #[serde(default)]
    pub revision: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated_at: Option<Timestamp>,
}

fn default_group() -> String {
    "default".into()
}
fn default_max_parallel() -> u32 {
    1
}
fn default_kill_grace() -> Dur {
    Dur::secs(10)
}
fn default_retry_delay() -> Dur {
    Dur::secs(30)
}
fn default_max_catchup() -> u32 {
    10
}
fn default_output_limit() -> ByteSize {
    ByteSize(64 * 1024)
}

/// One schedule of a job with where it runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Cron expression, macro, `@every <d> [offset <o>]` or `@at <RFC 3339>`.
    pub schedule: String,
    /// IANA zone; resolved and stored explicitly when the job is saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_nodes: Vec<String>,
}

/// The command: an argv list, or one string.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CommandLine {
    Argv(Vec<String>),
    Line(String),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Every selected node runs every instant.
    All,
    /// Exactly one live selected node runs each instant (the default: cron semantics).
    #[default]
    One,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Concurrency {
    /// Up to `max_parallel` runs at once.
    Allow,
    /// An instant that finds the job running is recorded `skipped` (the default).
    #[default]
    Forbid,
    /// Kill the running run, then start.
    Replace,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnLost {
    #[default]
    Record,
    Retry,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Missed {
    /// Record missed instants and do nothing else (the default, as classic cron).
    #[default]
    Skip,
    /// Record them, then run one catch-up run.
    Once,
    /// Record them and run each, oldest first, at most `max_catchup`.
    All,
}

/// The user (and optionally group) a job runs as: `"user"`, `"user:group"` or a table.
#[derive(Clone, Debug, PartialEq, Eq, ToSchema)]
pub struct RunAs {
    pub user: String,
    pub group: Option<String>,
}

impl fmt::Display for RunAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.group {
            Some(g) => write!(f, "{}:{g}", self.user),
            None => f.write_str(&self.user),
        }
    }
}

impl FromStr for RunAs {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (user, group) = match s.split_once(':') {
            Some((u, g)) => (u, Some(g.to_string())),
            None => (s, None),
        };
        let r = RunAs {
            user: user.to_string(),
            group,
        };
        r.check()?;
        Ok(r)
    }
}

impl RunAs {
    fn check(&self) -> Result<(), String> {
        let ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 32
                && n.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'$'))
                && !n.starts_with('-')
        };
        if !ok(&self.user) {
            return Err(format!("{:?} is not a valid user name", self.user));
        }
        if let Some(g) = &self.group {
            if !ok(g) {
                return Err(format!("{g:?} is not a valid group name"));
            }
        }
        Ok(())
    }
}

impl Serialize for RunAs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RunAs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Table { user: String, group: Option<String> },
        }
        match Repr::deserialize(d)? {
            Repr::Text(s) => s.parse().map_err(serde::de::Error::custom),
            Repr::Table { user, group } => {
                let r = RunAs { user, group };
                r.check().map_err(serde::de::Error::custom)?;
                Ok(r)
            }
        }
    }
}

/// An environment value; `secret` ones are write-only: the API never returns them.
#[derive(Clone, Debug, PartialEq, Eq, ToSchema)]
pub struct EnvValue {
    /// `None` when read back redacted, or when an update keeps the stored secret.
    pub value: Option<String>,
    pub secret: bool,
}

impl EnvValue {
    pub fn plain(v: impl Into<String>) -> Self {
        EnvValue {
            value: Some(v.into()),
            secret: false,
        }
    }
}

impl Serialize for EnvValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match (&self.value, self.secret) {
            (Some(v), false) => s.serialize_str(v),
            (v, _) => {
                let mut m = s.serialize_map(None)?;
                if let Some(v) = v {
                    m.serialize_entry("value", v)?;
                }
                m.serialize_entry("secret", &self.secret)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Table {
                value: Option<String>,
                #[serde(default)]
                secret: bool,
            },
        }
        Ok(match Repr::deserialize(d)? {
            Repr::Text(v) => EnvValue::plain(v),
            Repr::Table { value, secret } => EnvValue { value, secret },
        })
    }
}

/// Where alerts about this job go. Delivery comes with the notification work;
/// the fields are stored and validated now so job files stay stable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<NotifyEvent>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mail: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<String>,
}

impl Notify {
    pub fn is_empty(&self) -> bool {
        self.on.is_empty() && self.mail.is_empty() && self.webhooks.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotifyEvent {
    Failure,
    Recovery,
    Missed,
    Timeout,
    Overrun,
    Lost,
}

/// Resource limits applied to the run's cgroup.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// CPU cores, e.g. 0.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<u32>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.cpu.is_none() && self.tasks.is_none()
    }
}

/// A byte count, written as an integer or a string such as `"64KiB"`, `"512M"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, ToSchema)]
#[schema(value_type = String)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid size {s:?} (use e.g. 65536, \"64KiB\", \"512M\")"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "K" | "KB" | "KiB" | "k" => 1 << 10,
            "M" | "MB" | "MiB" => 1 << 20,
            "G" | "GB" | "GiB" => 1 << 30,
            other => return Err(format!("unknown size unit {other:?} in {s:?}")),
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, m) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n >= m && n.is_multiple_of(m) {
                return write!(f, "{}{unit}", n / m);
            }
        }
        write!(f, "{n}")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            N(u64),
            S(String),
        }
        match Repr::deserialize(d)? {
            Repr::N(n) => Ok(ByteSize(n)),
            Repr::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A job refused, with the field that caused it (`rules[1].schedule`, `env.PATH`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize, ToSchema)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// What validation needs from its surroundings.
#[derive(Clone, Debug)]
pub struct ValidateContext {
    /// Zone given to rules that name none (the configured zone, else `UTC`).
    pub default_timezone: String,
    /// "Now", from the caller's clock; `@at` instants before it are refused.
    pub now: Timestamp,
    /// Accept an `@at` in the past (a run-now of a one-shot job).
    pub allow_past_at: bool,
}

impl Job {
    /// Checks every field and normalises the job in place. On error nothing
    /// about the job should be stored.
    pub fn validate(&mut self, ctx: &ValidateContext) -> Result<(), ValidationError> {
        if !is_valid_job_id(&self.id) {
            return Err(ValidationError::new(
                "id",
                format!(
                    "{:?} is not a valid job id: use 1-128 characters of [a-z0-9_-], starting with a letter or digit",
                    self.id
                ),
            ));
        }
        if self.name.trim().is_empty() {
            self.name = self.id.clone();
        }
        check_text("name", &self.name, 200)?;
        if !is_valid_group(&self.group) {
            return Err(ValidationError::new(
                "group",
                format!(
                    "{:?} is not a valid group: use 1-64 characters of [A-Za-z0-9_.-]",
                    self.group
                ),
            ));
        }
        self.argv()?;
        if self.rules.is_empty() {
            return Err(ValidationError::new(
                "rules",
                "a job needs at least one rule",
            ));
        }
        if self.rules.len() > MAX_RULES {
            return Err(ValidationError::new(
                "rules",
                format!("at most {MAX_RULES} rules per job"),
            ));
        }
        for (i, rule) in self.rules.iter_mut().enumerate() {
            let tz = rule
                .timezone
                .clone()
                .unwrap_or_else(|| ctx.default_timezone.clone());
            let schedule = Schedule::parse(&rule.schedule, &tz, &self.id)
                .map_err(|e| ValidationError::new(format!("rules[{i}].schedule"), e.to_string()))?;
            if let Some(at) = schedule.one_shot_instant() {
                if at <= ctx.now && !ctx.allow_past_at && !self.paused {
                    return Err(ValidationError::new(
                        format!("rules[{i}].schedule"),
                        format!("@at {at} is in the past"),
                    ));
                }
            }
            rule.timezone = Some(schedule.timezone_name().to_string());
            for (name, list) in [
                ("nodes", &rule.nodes),
                ("groups", &rule.groups),
                ("exclude_nodes", &rule.exclude_nodes),
            ] {
                for (j, v) in list.iter().enumerate() {
                    if !is_valid_group(v) {
                        return Err(ValidationError::new(
                            format!("rules[{i}].{name}[{j}]"),
                            format!("{v:?} is not a valid node or group name"),
                        ));
                    }
                }
            }
        }
        if self.concurrency == Concurrency::Allow && self.max_parallel == 0 {
            return Err(ValidationError::new("max_parallel", "must be at least 1"));
        }
        if let Some(t) = self.timeout {
            if t.0.as_secs() < 1 {
                return Err(ValidationError::new("timeout", "must be at least 1s"));
            }
        }
        check_range(
            "kill_grace",
            self.kill_grace,
            Dur::millis(0),
            Dur::secs(3600),
        )?;
        check_range(
            "retry_delay",
            self.retry_delay,
            Dur::millis(0),
            Dur::secs(86_400),
        )?;
        if let Some(d) = self.start_deadline {
            check_range("start_deadline", d, Dur::secs(1), Dur::secs(366 * 86_400))?;
        }
        if self.retries > MAX_RETRIES {
            return Err(ValidationError::new(
                "retries",
                format!("at most {MAX_RETRIES}"),
            ));
        }
        if self.max_catchup > MAX_CATCHUP {
            return Err(ValidationError::new(
                "max_catchup",
                format!("at most {MAX_CATCHUP}"),
            ));
        }
        if self.output_limit.0 > MAX_OUTPUT_LIMIT || self.output_limit.0 < 2 {
            return Err(ValidationError::new(
                "output_limit",
                format!(
                    "must be between 2 bytes and 1MiB, got {}",
                    self.output_limit
                ),
            ));
        }
        for (k, v) in &self.env {
            check_env(k, v)?;
        }
        if let Some(w) = &self.workdir {
            if !w.starts_with('/') || w.contains('\0') {
                return Err(ValidationError::new(
                    "workdir",
                    format!("{w:?} must be an absolute path"),
                ));
            }
        }
        if let Some(r) = &self.run_as {
            r.check().map_err(|m| ValidationError::new("run_as", m))?;
        }
        if let Some(m) = self.limits.memory {
            if m.0 < 1 << 20 {
                return Err(ValidationError::new(
                    "limits.memory",
                    "must be at least 1MiB",
                ));
            }
        }
        if let Some(c) = self.limits.cpu {
            if !(c.is_finite() && (0.01..=4096.0).contains(&c)) {
                return Err(ValidationError::new(
                    "limits.cpu",
                    "must be a number of cores between 0.01 and 4096",
                ));
            }
        }
        if self.limits.tasks == Some(0) {
            return Err(ValidationError::new("limits.tasks", "must be at least 1"));
        }
        for (k, v) in &self.labels {
            if !is_valid_group(k) {
                return Err(ValidationError::new(
                    format!("labels.{k}"),
                    "label keys use [A-Za-z0-9_.-]",
                ));
            }
            check_text(&format!("labels.{k}"), v, 256)?;
        }
        check_text("description", &self.description, 4096)?;
        if let Some(r) = &self.paused_reason {
            check_text("paused_reason", r, 1024)?;
        }
        for (i, url) in self.notify.webhooks.iter().enumerate() {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ValidationError::new(
                    format!("notify.webhooks[{i}]"),
                    "must be an http(s) URL",
                ));
            }
        }
        for (i, addr) in self.notify.mail.iter().enumerate() {
            if !addr.contains('@') || addr.contains(char::is_whitespace) {
                return Err(ValidationError::new(
                    format!("notify.mail[{i}]"),
                    format!("{addr:?} is not a mail address"),
                ));
            }
        }
        Ok(())
    }

    /// The argv this job executes: the list, the string split shell-like
    /// (quotes and backslashes, no expansion), or `/bin/sh -c <string>`.
    pub fn argv(&self) -> Result<Vec<String>, ValidationError> {
        let argv = match (&self.command, self.shell) {
            (CommandLine::Line(line), true) => {
                vec!["/bin/sh".into(), "-c".into(), line.clone()]
            }
            (CommandLine::Argv(_), true) => {
                return Err(ValidationError::new(
                    "shell",
                    "shell = true needs command as one string",
                ))
            }
            (CommandLine::Line(line), false) => shell_words::split(line).map_err(|e| {
                ValidationError::new("command", format!("cannot split {line:?}: {e}"))
            })?,
            (CommandLine::Argv(v), false) => v.clone(),
        };
        if argv.is_empty() || argv[0].is_empty() {
            return Err(ValidationError::new("command", "the command is empty"));
        }
        if let Some(i) = argv.iter().position(|a| a.contains('\0')) {
            return Err(ValidationError::new(
                format!("command[{i}]"),
                "contains a NUL byte",
            ));
        }
        if argv.len() > 4096 || argv.iter().map(String::len).sum::<usize>() > 128 * 1024 {
            return Err(ValidationError::new("command", "command is too long"));
        }
        Ok(argv)
    }

    /// The job's schedule (the union of its rules). Only valid after [`Job::validate`].
    pub fn schedule(&self) -> Result<JobSchedule, ValidationError> {
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, r) in self.rules.iter().enumerate() {
            let tz = r.timezone.as_deref().unwrap_or("UTC");
            rules.push(Schedule::parse(&r.schedule, tz, &self.id).map_err(|e| {
                ValidationError::new(format!("rules[{i}].schedule"), e.to_string())
            })?);
        }
        Ok(JobSchedule::new(rules))
    }

    /// The job with secret env values removed, as the API shows it.
    pub fn redacted(&self) -> Job {
        let mut j = self.clone();
        for v in j.env.values_mut() {
            if v.secret {
                v.value = None;
            }
        }
        j
    }

    /// Fills secrets that an update left empty from the stored job, so clients
    /// can send back what they read without knowing the secrets.
    pub fn keep_secrets_from(&mut self, stored: &Job) {
        for (k, v) in self.env.iter_mut() {
            if v.secret && v.value.is_none() {
                if let Some(old) = stored.env.get(k) {
                    v.value.clone_from(&old.value);
                }
            }
        }
    }

    /// Whether two versions differ in anything a user wrote (ignores store-managed fields).
    pub fn same_definition(&self, other: &Job) -> bool {
        let strip = |j: &Job| Job {
            revision: 0,
            created_at: None,
            updated_at: None,
            ..j.clone()
        };
        strip(self) == strip(other)
    }
}

fn is_valid_group(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

fn check_text(field: &str, s: &str, max: usize) -> Result<(), ValidationError> {
    if s.len() > max {
        return Err(ValidationError::new(field, format!("at most {max} bytes")));
    }
    if s.contains('\0') {
        return Err(ValidationError::new(field, "contains a NUL byte"));
    }
    Ok(())
}

fn check_range(field: &str, d: Dur, min: Dur, max: Dur) -> Result<(), ValidationError> {
    if d < min || d > max {
        return Err(ValidationError::new(
            field,
            format!("must be between {min} and {max}, got {d}"),
        ));
    }
    Ok(())
}

fn check_env(k: &str, v: &EnvValue) -> Result<(), ValidationError> {
    let field = format!("env.{k}");
    let valid_name = !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if !valid_name {
        return Err(ValidationError::new(
            field,
            "variable names use [A-Za-z0-9_] and do not start with a digit",
        ));
    }
    if k.starts_with("CRONSUN_") {
        return Err(ValidationError::new(
            field,
            "CRONSUN_* variables are set by cronsun",
        ));
    }
    match &v.value {
        Some(val) => check_text(&field, val, 32 * 1024),
        None if v.secret => Ok(()),
        None => Err(ValidationError::new(field, "needs a value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!("64KiB".parse::<ByteSize>(), Ok(ByteSize(65536)));
        assert_eq!("512M".parse::<ByteSize>(), Ok(ByteSize(512 << 20)));
        assert_eq!(ByteSize(65536).to_string(), "64KiB");
        assert!("12X".parse::<ByteSize>().is_err());
        assert!("99999999999999999999G".parse::<ByteSize>().is_err());
    }

    #[test]
    fn run_as_forms() {
        let r: RunAs = "backup:disk".parse().expect("parses");
        assert_eq!(r.user, "backup");
        assert_eq!(r.group.as_deref(), Some("disk"));
        assert!("bad user".parse::<RunAs>().is_err());
        let j: RunAs = serde_json::from_str(r#"{"user":"a","group":"b"}"#).expect("table");
        assert_eq!(j.to_string(), "a:b");
    }

    #[test]
    fn env_secret_is_write_only() {
        let j: BTreeMap<String, EnvValue> =
            serde_json::from_str(r#"{"A":"1","TOKEN":{"value":"s3","secret":true}}"#).expect("env");
        let shown = serde_json::to_string(&j).expect("ser");
        assert!(shown.contains("s3"));
        let mut redacted = j.clone();
        for v in redacted.values_mut() {
            if v.secret {
                v.value = None;
            }
        }
        let shown = serde_json::to_string(&redacted).expect("ser");
        assert!(!shown.contains("s3"), "{shown}");
    }

    #[test]
    fn argv_forms() {
        let mut j: Job = serde_json::from_value(serde_json::json!({
            "id": "x", "command": "echo 'a b' c\\ d", "rules": [{"schedule": "* * * * *"}]
        }))
        .expect("job");
        assert_eq!(j.argv().expect("argv"), vec!["echo", "a b", "c d"]);
        j.shell = true;
        assert_eq!(j.argv().expect("argv")[..2], ["/bin/sh", "-c"]);
        j.command = CommandLine::Line("echo 'unterminated".into());
        j.shell = false;
        assert_eq!(j.argv().unwrap_err().field, "command");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = serde_json::from_value::<Job>(serde_json::json!({
            "id": "x", "command": ["true"], "rules": [], "colour": "red"
        }))
        .unwrap_err()
        .to_string();
        assert!(e.contains("colour"), "{e}");
    }
}
