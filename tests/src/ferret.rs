//! A real MongoDB-protocol server for tests: FerretDB 1.24.2 with its SQLite
//! backend (`scripts/services/ferretdb.sh install` builds it once), on a
//! temp dir and a free loopback port, stopped by pid. An independent client
//! (`pymongo`) reads back what the daemon stored.
//!
//! If FerretDB or pymongo is missing, tests fail saying how to install them:
//! they never skip silently.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::Deserialize;
use tempfile::TempDir;

use crate::daemon::free_port;
use crate::wait::poll_until;

/// How long FerretDB may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The FerretDB binary: `CRONSUN_FERRETDB`, else the cache the install
/// script fills.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CRONSUN_FERRETDB") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("CRONSUN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/cronsun")
        });
    cache.join("bin/ferretdb")
}

/// How to start a [`Ferret`].
#[derive(Clone, Debug, Default)]
pub struct FerretOptions {
    /// Listen on this port (default: a free one).
    pub port: Option<u16>,
    /// Require SCRAM authentication with this user (in `admin`) and password.
    pub auth: Option<(String, String)>,
}

/// One FerretDB process; killed (by pid) when dropped.
pub struct Ferret {
    dir: TempDir,
    port: u16,
    /// FerretDB's own HTTP handlers (default 8088 would clash between tests).
    debug_port: u16,
    auth: Option<(String, String)>,
    child: Option<Child>,
}

impl Ferret {
    #[track_caller]
    pub fn start() -> Ferret {
        Ferret::start_with(FerretOptions::default())
    }

    #[track_caller]
    pub fn start_with(opts: FerretOptions) -> Ferret {
        let bin = binary();
        assert!(
            bin.exists(),
            "FerretDB is not installed at {}: run `scripts/services/ferretdb.sh install` \
             (or set CRONSUN_FERRETDB); the MongoDB tests need a real server",
            bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("cronsun-ferret-")
            .tempdir()
            .expect("create a temp dir for FerretDB");
        let port = opts.port.unwrap_or_else(free_port);
        // The kernel may hand out the same ephemeral port twice in a row.
        let debug_port = (0..100)
            .map(|_| free_port())
            .find(|p| *p != port)
            .expect("a second free port");
        let mut f = Ferret {
            dir,
            port,
            debug_port,
            auth: opts.auth,
            child: None,
        };
        f.spawn();
        f
    }

    #[track_caller]
    fn spawn(&mut self) {
        let log = crate::procs::append_log(&self.dir.path().join("ferretdb.log"));
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).expect("create the FerretDB data dir");
        let mut cmd = Command::new(binary());
        if let Some((user, password)) = &self.auth {
            cmd.arg("--test-enable-new-auth")
                .arg("--setup-database=admin")
                .arg(format!("--setup-username={user}"))
                .arg(format!("--setup-password={password}"));
        }
        let child = cmd
            .arg("--handler=sqlite")
            .arg(format!("--sqlite-url=file:{}/", data.display()))
            .arg(format!("--listen-addr=127.0.0.1:{}", self.port))
            .arg("--telemetry=disable")
            .arg("--log-level=warn")
            .arg(format!("--debug-addr=127.0.0.1:{}", self.debug_port))
            .arg(format!("--state-dir={}", self.dir.path().display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start FerretDB {}: {e}", binary().display()));
        self.child = Some(child);
        let port = self.port;
        let up = poll_until(START_TIMEOUT, Duration::from_millis(50), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(
            up.is_some(),
            "FerretDB did not listen on 127.0.0.1:{port} within {START_TIMEOUT:?}; log:\n{}",
            self.log()
        );
    }

    /// The URI with credentials when it requires authentication.
    pub fn uri(&self) -> String {
        match &self.auth {
            Some((u, p)) => format!(
                "mongodb://{u}:{p}@127.0.0.1:{}/?authSource=admin",
                self.port
            ),
            None => format!("mongodb://127.0.0.1:{}", self.port),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ferretdb.log")).unwrap_or_default()
    }

    /// SIGKILL, and wait until it has exited.
    pub fn kill9(&mut self) {
        crate::procs::kill_and_reap(&mut self.child);
    }

    /// Starts it again on the same port and data.
    #[track_caller]
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart() needs a killed FerretDB");
        self.spawn();
    }

    /// The `runs` documents of `job` (all fields but the output's tail), read by pymongo.
    #[track_caller]
    pub fn runs_of(&self, db: &str, job: &str) -> Vec<StoredRun> {
        let out = Command::new("python3")
            .arg("-c")
            .arg(PY_RUNS)
            .args([&self.uri(), db, job])
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "the pymongo reader failed (is pymongo installed? `pip install pymongo`): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "pymongo reader printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

impl Drop for Ferret {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(200).collect();
            eprintln!(
                "===== FerretDB 127.0.0.1:{} log (last 200 lines) =====",
                self.port
            );
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// One `runs` document as the independent client sees it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct StoredRun {
    #[serde(rename = "_id")]
    pub id: String,
    pub run_id: String,
    pub attempt: u32,
    pub status: String,
    pub seq: u8,
    pub trigger: String,
    /// Milliseconds since the epoch.
    pub scheduled_ms: i64,
    /// Set when the spool shed the output (SHA-256 hex).
    pub output_digest: Option<String>,
    pub output_head: String,
}

const PY_RUNS: &str = r#"
import datetime, json, sys, pymongo
uri, db, job = sys.argv[1], sys.argv[2], sys.argv[3]
c = pymongo.MongoClient(uri, serverSelectionTimeoutMS=10000)
out = []
for d in c[db].runs.find({"job_id": job}, {"output_tail": 0}):
    out.append({"_id": d["_id"], "run_id": d["run_id"], "attempt": d["attempt"],
                "status": d["status"], "seq": d["seq"], "trigger": d["trigger"],
                "output_digest": d.get("output_digest"), "output_head": d.get("output_head", ""),
                "scheduled_ms": round(d["scheduled_at"].replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)})
print(json.dumps(out))
"#;
