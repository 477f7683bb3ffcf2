//! Running the `cronsun` CLI (and `cronsund validate`) as a subprocess with a
//! bounded run time.

use std::fmt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::Signal;

/// What a finished command printed and how it exited.
#[derive(Clone, Debug)]
pub struct CliOutput {
    pub program: String,
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for CliOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{} {}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.program,
            self.args.join(" "),
            self.status,
            self.stdout,
            self.stderr
        )
    }
}

impl CliOutput {
    /// The exit code (`None` when killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics (printing everything) unless the command exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.status.success(), "command failed: {self}");
        self
    }

    /// Panics unless the command exited with `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), Some(code), "unexpected exit code: {self}");
        self
    }

    /// stdout as JSON; panics with the output when it is not JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        match serde_json::from_str(self.stdout.trim()) {
            Ok(v) => v,
            Err(e) => panic!("stdout is not JSON ({e}): {self}"),
        }
    }
}

/// Runs `program args...` with `envs` (and no inherited `CRONSUN_*`
/// variables), stdin `/dev/null`, killing it by pid if it runs longer than
/// `timeout`, which is then reported as a failure.
#[track_caller]
pub fn run_cli(
    program: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    timeout: Duration,
) -> CliOutput {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CRONSUN_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let (out, timed_out) = match rx.recv_timeout(timeout) {
        Ok(out) => (out, false),
        Err(_) => {
            // Whatever it started goes too (a daemon that should have refused to start).
            let tree = crate::procs::descendants(pid);
            crate::procs::signal_pids(&[pid], Signal::SIGKILL);
            crate::procs::signal_pids(&tree, Signal::SIGKILL);
            let out = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("a SIGKILLed CLI process is reaped");
            (out, true)
        }
    };
    let out = out.unwrap_or_else(|e| panic!("waiting for {}: {e}", program.display()));
    let result = CliOutput {
        program: program.display().to_string(),
        args: args.iter().map(|s| s.to_string()).collect(),
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !timed_out,
        "command did not finish within {timeout:?} and was killed: {result}"
    );
    result
}
