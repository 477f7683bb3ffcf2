//! A real etcd for tests: Debian's `etcd-server` (`scripts/services/etcd.sh
//! install`), one member on free loopback ports (client, peer, metrics) with
//! its own data dir, stopped by pid. `etcdctl` reads back what the daemons
//! wrote, independently of the daemon's client.
//!
//! If etcd is missing, tests fail saying how to install it: they never skip.
//!
//! [`Etcd::start_with_tls`] adds a second client listener on another
//! address (a test namespace's hub) that speaks TLS and requires client
//! certificates from a throwaway CA ([`crate::pki::Pki`]); `etcdctl` keeps
//! using the loopback one.

use std::net::{IpAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::daemon::free_port;
use crate::pki::Pki;
use crate::wait::poll_until;

/// How long etcd may take to answer `/health`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The etcd binary: `CRONSUN_ETCD`, else `etcd` on the `PATH`.
pub fn binary() -> PathBuf {
    std::env::var_os("CRONSUN_ETCD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("etcd"))
}

/// One etcd member; killed (by pid) when dropped.
pub struct Etcd {
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
    metrics_port: u16,
    tls: Option<TlsListener>,
    child: Option<Child>,
}

/// The extra TLS client listener.
struct TlsListener {
    ip: IpAddr,
    port: u16,
    pki: Pki,
}

impl Etcd {
    #[track_caller]
    pub fn start() -> Etcd {
        Etcd::start_inner(|_| None)
    }

    /// [`Etcd::start`] plus a TLS client listener on `ip` (client
    /// certificates required); the certificates are issued into its dir.
    #[track_caller]
    pub fn start_with_tls(ip: IpAddr) -> Etcd {
        Etcd::start_inner(|dir| {
            Some(TlsListener {
                ip,
                port: free_port(),
                pki: Pki::issue(dir, &[ip]),
            })
        })
    }

    #[track_caller]
    fn start_inner(tls: impl FnOnce(&std::path::Path) -> Option<TlsListener>) -> Etcd {
        let dir = tempfile::Builder::new()
            .prefix("cronsun-etcd-")
            .tempdir()
            .expect("create a temp dir for etcd");
        let tls = tls(dir.path());
        let mut e = Etcd {
            tls,
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            metrics_port: free_port(),
            child: None,
        };
        e.spawn();
        e
    }

    #[track_caller]
    fn spawn(&mut self) {
        let log = crate::procs::append_log(&self.dir.path().join("etcd.log"));
        let mut client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut cmd = Command::new(binary());
        if let (Some(t), Some(url)) = (&self.tls, self.tls_endpoint()) {
            client = format!("{client},{url}");
            cmd.arg(format!("--cert-file={}", t.pki.server_cert.display()))
                .arg(format!("--key-file={}", t.pki.server_key.display()))
                .arg(format!("--trusted-ca-file={}", t.pki.ca.display()))
                .arg("--client-cert-auth");
        }
        let child = cmd
            .arg("--name=cronsun-test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=cronsun-test={peer}"))
            .arg(format!(
                "--listen-metrics-urls=http://127.0.0.1:{}",
                self.metrics_port
            ))
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .env_remove("ETCDCTL_API")
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start etcd {} ({e}): run `scripts/services/etcd.sh install` \
                     (or set CRONSUN_ETCD); the cluster tests need a real etcd",
                    binary().display()
                )
            });
        self.child = Some(child);
        let port = self.client_port;
        let up = poll_until(START_TIMEOUT, Duration::from_millis(50), || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            health(&mut s).then_some(())
        });
        assert!(
            up.is_some(),
            "etcd did not answer /health on 127.0.0.1:{port} within {START_TIMEOUT:?}; log:\n{}",
            self.log()
        );
    }

    /// `http://127.0.0.1:<client port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// `https://<ip>:<port>` of the TLS listener, if started with one.
    pub fn tls_endpoint(&self) -> Option<String> {
        self.tls
            .as_ref()
            .map(|t| format!("https://{}:{}", t.ip, t.port))
    }

    /// The CA and client certificate for the TLS listener.
    pub fn pki(&self) -> Option<&Pki> {
        self.tls.as_ref().map(|t| &t.pki)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// Pid of the etcd process while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// SIGKILL, and wait until it has exited.
    pub fn kill9(&mut self) {
        crate::procs::kill_and_reap(&mut self.child);
    }

    /// Starts it again on the same ports and data.
    #[track_caller]
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart() needs a killed etcd");
        self.spawn();
    }

    /// The sum of a Prometheus counter or gauge from etcd's own `/metrics`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let mut s = TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        let text = http_get(&mut s, "/metrics")?;
        let values: Vec<f64> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                (k == name || k.starts_with(&format!("{name}{{"))).then(|| v.parse().ok())?
            })
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }

    /// `etcdctl` against this member; panics naming the command on failure.
    #[track_caller]
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new("etcdctl")
            .arg(format!("--endpoints={}", self.endpoint()))
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .unwrap_or_else(|e| panic!("cannot run etcdctl ({e}): install etcd-client"));
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Keys under `prefix` (`etcdctl get --prefix --keys-only`).
    #[track_caller]
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.ctl(&["get", "--prefix", "--keys-only", prefix])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// The value of one key, if present.
    #[track_caller]
    pub fn value(&self, key: &str) -> Option<String> {
        let out = self.ctl(&["get", "--print-value-only", key]);
        let v = out.trim_end_matches('\n');
        (!out.is_empty()).then(|| v.to_string())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("===== etcd log =====\n{}", self.log());
        }
        self.kill9();
    }
}

fn http_get(s: &mut TcpStream, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let (head, rest) = body.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| rest.to_string())
}

fn health(s: &mut TcpStream) -> bool {
    http_get(s, "/health").is_some_and(|b| b.contains("\"health\":\"true\""))
}
