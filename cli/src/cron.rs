//! `cronsun cron next`: offline preview with exactly the daemon's schedule code.

use anyhow::{Context as _, Result};
use clap::Subcommand;
use cronsun_proto::schedule;
use jiff::{Timestamp, ZonedDateTime};

use crate::output;
use crate::Ctx;

#[derive(Debug, Subcommand)]
pub enum CronCmd {
    /// Print the next fire instants of a schedule, strictly after --from.
    ///
    /// Daylight saving (Vixie cron rule): a rule whose seconds, minute or hour
    /// field starts with `*` fires at every real instant whose wall time
    /// matches (nothing in a spring-forward gap, both passes of a repeated
    /// hour); every other rule fires once for wall times in a gap, at the end
    /// of the gap, and only at the first pass of a repeated time.
    Next {
        /// Cron expression (5 or 6 fields), macro (@daily), @every or @at.
        expr: String,
        /// IANA time zone of the schedule.
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// Start instant, RFC 3339 (e.g. 2026-03-28T00:00:00Z) [default: now].
        #[arg(long, value_parser = parse_timestamp)]
        from: Option<Timestamp>,
        /// How many instants.
        #[arg(short = 'n', default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
        n: u32,
    },
}

fn parse_timestamp(s: &str) -> Result<Timestamp, String> {
    s.parse::<Timestamp>().map_err(|e| {
        format!("{e} (use RFC 3339 such as 2026-03-28T00:00:00Z or 2026-03-28T02:00:00+01:00)")
    })
}

pub fn run(ctx: &Ctx, cmd: CronCmd) -> Result<u8> {
    match cmd {
        CronCmd::Next { expr, tz, from, n } => {
            let from = from.unwrap_or_else(Timestamp::now);
            let instants = schedule::preview(&expr, &tz, from, n as usize)
                .with_context(|| format!("schedule {expr:?} in {tz}"))?;
            let texts: Vec<String> = instants.iter().map(rfc3339).collect();
            if ctx.json() {
                output::json(&texts)?;
            } else if !texts.is_empty() {
                output::emit(&texts.join("\n"))?;
            }
            Ok(0)
        }
    }
}

/// RFC 3339 with the zone's offset, e.g. `2026-03-29T03:00:00+02:00`.
fn rfc3339(z: &ZonedDateTime) -> String {
    z.timestamp().display_with_offset(z.offset()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_the_zone_offset() {
        let z = "2026-03-29T03:00:00+02:00[Europe/Berlin]"
            .parse::<ZonedDateTime>()
            .expect("zoned");
        assert_eq!(rfc3339(&z), "2026-03-29T03:00:00+02:00");
        let z = "2026-03-28T00:00:00+00:00[UTC]"
            .parse::<ZonedDateTime>()
            .expect("zoned");
        assert_eq!(rfc3339(&z), "2026-03-28T00:00:00+00:00");
    }
}
