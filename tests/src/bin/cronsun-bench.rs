//! `cronsun-bench [--quick] [--only fire|cpu|api|mongo]`: fire latency,
//! scheduler CPU/RSS and API latency of the real daemon, the MongoDB run
//! store's write path and search, with targets and same-run baselines. See `tests/src/bench/`.

#[path = "../bench/mod.rs"]
mod bench;

use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let opts = match bench::Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cronsun-bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    let t = Instant::now();
    match bench::run(&opts) {
        Ok(report) => {
            println!(
                "\n== report ({:.0?}{}) ==",
                t.elapsed(),
                if opts.quick { ", --quick" } else { "" }
            );
            print!("{}", report.render());
            if report.misses() > 0 {
                println!("{} figure(s) miss their target", report.misses());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cronsun-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
