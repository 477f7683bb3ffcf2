//! `@every <d> [offset <o>]`: instants at `epoch + offset + k * period`, and
//! `@at <instant>`: a single instant. Neither depends on a time zone.

use std::time::Duration;

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use super::error::{EveryProblem, ScheduleError};
use super::zone::{first_second_after, timestamp};

/// A fixed period anchored to the Unix epoch plus an offset, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Every {
    period: u64,
    offset: u64,
}

impl Every {
    /// Parses the words after `@every`. Without an explicit offset, the
    /// offset is derived from `job_id` so that jobs sharing a period are
    /// spread out, identically on every node.
    pub(crate) fn parse(args: &str, job_id: &str) -> Result<Every, ScheduleError> {
        let words: Vec<&str> = args.split_whitespace().collect();
        let split = words.iter().position(|w| w.eq_ignore_ascii_case("offset"));
        let (period_words, offset_words) = match split {
            Some(i) => (&words[..i], Some(&words[i + 1..])),
            None => (&words[..], None),
        };
        if period_words.is_empty() {
            return Err(EveryProblem::MissingPeriod.into());
        }
        let period_text = period_words.join(" ");
        let period = whole_seconds("period", &period_text)?;
        if period == 0 {
            return Err(EveryProblem::PeriodTooShort(period_text).into());
        }
        let offset = match offset_words {
            None => default_offset(job_id, period),
            Some([]) => return Err(EveryProblem::MissingOffset.into()),
            Some(words) => {
                let offset_text = words.join(" ");
                let offset = whole_seconds("offset", &offset_text)?;
                if offset >= period {
                    return Err(EveryProblem::OffsetTooLarge {
                        offset: offset_text,
                        period: period_text,
                    }
                    .into());
                }
                offset
            }
        };
        Ok(Every { period, offset })
    }

    pub(crate) fn period(&self) -> Duration {
        Duration::from_secs(self.period)
    }

    pub(crate) fn offset(&self) -> Duration {
        Duration::from_secs(self.offset)
    }

    /// The first instant strictly after `t`.
    pub(crate) fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let period = i64::try_from(self.period).ok()?;
        let offset = i64::try_from(self.offset).ok()?;
        let lowest = first_second_after(t)?;
        let periods = lowest
            .checked_sub(offset)?
            .checked_add(period - 1)?
            .div_euclid(period);
        timestamp(periods.checked_mul(period)?.checked_add(offset)?)
    }
}

/// A stable per-job offset: the first 8 bytes of SHA-256 of the job id,
/// modulo the period.
fn default_offset(job_id: &str, period: u64) -> u64 {
    let digest = Sha256::digest(job_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % period
}

fn whole_seconds(part: &'static str, text: &str) -> Result<u64, ScheduleError> {
    let duration = humantime::parse_duration(text).map_err(|e| EveryProblem::NotADuration {
        part,
        text: text.to_string(),
        reason: e.to_string(),
    })?;
    if duration.subsec_nanos() != 0 {
        return Err(EveryProblem::SubSecond {
            part,
            text: text.to_string(),
        }
        .into());
    }
    Ok(duration.as_secs())
}

/// Parses the words after `@at`: one RFC 3339 instant with an offset.
pub(crate) fn parse_at(args: &str) -> Result<Timestamp, ScheduleError> {
    let text = args.trim();
    if text.is_empty() || text.contains(char::is_whitespace) {
        return Err(ScheduleError::At(text.to_string()));
    }
    text.parse()
        .map_err(|_| ScheduleError::At(text.to_string()))
}
