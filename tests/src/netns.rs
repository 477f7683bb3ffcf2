//! Separate hosts on one machine: network namespaces made by the test, each
//! joined to a bridge in the root namespace by a veth pair, with addresses
//! in a private /24 (`10.213.<n>.0/24`, one not used on this machine). The
//! root namespace holds the hub address `.1` (where the test's etcd
//! listens); host `i` has `.(10 + i)`. Cutting a host off takes its veth
//! down: its packets stop, as when a cable is pulled — no signal involved.
//!
//! A daemon runs inside its namespace through `nsenter --net` (see
//! [`Netns::exec_prefix`]). [`Netns::relay`] forwards a TCP port into a
//! namespace (used for the MongoDB-protocol server, which the daemon
//! reaches over plaintext only on loopback): the relay listens on the
//! host's loopback and connects out through the host's veth, so a cut host
//! loses its run store too.
//!
//! Everything is named with the test process's pid and a counter (names
//! stay under the kernel's 15-character limit) and removed on drop: relays
//! stopped, veths and the bridge deleted, namespaces deleted. Processes
//! running inside are the harness's ([`crate::Daemon`]) to stop, by pid;
//! drop them first. [`Netns::create`] returns why it cannot work here (not
//! root, no `ip`, namespaces not allowed), so a test can skip saying so.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// One namespaced host.
#[derive(Clone, Debug)]
pub struct Host {
    /// Namespace name (`/run/netns/<ns>`).
    pub ns: String,
    /// The root-namespace end of its veth pair (taken down to cut it off).
    pub veth: String,
    pub addr: Ipv4Addr,
}

/// A bridge, its hosts and relays; all removed on drop.
pub struct Netns {
    bridge: Option<String>,
    hub: Ipv4Addr,
    hosts: Vec<Host>,
    relays: Vec<Relay>,
}

/// Runs `ip args`, returning its stderr on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` ({e}): install iproute2"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip_output(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A `10.213.<n>.0/24` no address or route of this machine uses.
fn free_subnet(seed: u32) -> Result<u8, String> {
    let used = format!(
        "{}\n{}",
        ip_output(&["-4", "-o", "addr", "show"]),
        ip_output(&["-4", "route", "show", "table", "all"])
    );
    (0..250u32)
        .map(|k| u8::try_from((seed + k * 37) % 250 + 1).unwrap_or(1))
        .find(|n| !used.contains(&format!("10.213.{n}.")))
        .ok_or_else(|| "no free 10.213.x.0/24 subnet on this machine".into())
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// A bridge with `n` hosts, or why namespaces cannot be made here.
    pub fn create(n: usize) -> Result<Netns, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("network namespaces need root (the tests run as a user)".into());
        }
        if Command::new("nsenter").arg("--version").output().is_err() {
            return Err("`nsenter` is missing: install util-linux".into());
        }
        let pid = std::process::id();
        let k = NEXT.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}{k}", pid % 10_000_000);
        let subnet = free_subnet(pid + k * 101)?;
        let hub = Ipv4Addr::new(10, 213, subnet, 1);
        let mut net = Netns {
            bridge: None,
            hub,
            hosts: Vec::new(),
            relays: Vec::new(),
        };
        let bridge = format!("cs{tag}b");
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        net.bridge = Some(bridge.clone());
        ip(&["addr", "add", &format!("{hub}/24"), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 0..n {
            let host = Host {
                ns: format!("cronsun-{tag}-{i}"),
                veth: format!("cs{tag}h{i}"),
                addr: Ipv4Addr::new(10, 213, subnet, u8::try_from(10 + i).unwrap_or(250)),
            };
            let inner = format!("cs{tag}n{i}");
            ip(&["netns", "add", &host.ns])?;
            net.hosts.push(host.clone());
            ip(&[
                "link", "add", &host.veth, "type", "veth", "peer", "name", &inner,
            ])?;
            ip(&["link", "set", &inner, "netns", &host.ns])?;
            ip(&["link", "set", &host.veth, "master", &bridge])?;
            ip(&["link", "set", &host.veth, "up"])?;
            let ns = host.ns.as_str();
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", host.addr),
                "dev",
                &inner,
            ])?;
            ip(&["-n", ns, "link", "set", &inner, "up"])?;
        }
        Ok(net)
    }

    /// The root namespace's address on the bridge.
    pub fn hub(&self) -> Ipv4Addr {
        self.hub
    }

    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// The command prefix that runs a program inside host `i`: `nsenter
    /// --net=/run/netns/<ns>` enters only the network namespace and execs
    /// the program in place (same pid). `ip netns exec` would also give it a
    /// mount namespace with a fresh /sys, hiding the cgroup tree the
    /// executor uses.
    pub fn exec_prefix(&self, i: usize) -> Vec<String> {
        vec![
            "nsenter".into(),
            format!("--net=/run/netns/{}", self.hosts[i].ns),
            "--".into(),
        ]
    }

    /// Cuts host `i` off the network (its veth goes down).
    #[track_caller]
    pub fn cut(&self, i: usize) {
        if let Err(e) = ip(&["link", "set", &self.hosts[i].veth, "down"]) {
            panic!("cut host {i} off: {e}");
        }
    }

    /// Puts host `i` back on the network.
    #[track_caller]
    pub fn restore(&self, i: usize) {
        if let Err(e) = ip(&["link", "set", &self.hosts[i].veth, "up"]) {
            panic!("restore host {i}: {e}");
        }
    }

    /// Forwards `listen` (inside host `ns`'s namespace, or the root one
    /// with `None`) to `target` (reached from that same namespace).
    #[track_caller]
    pub fn relay(&mut self, ns: Option<usize>, listen: SocketAddr, target: SocketAddr) {
        let ns = ns.map(|i| self.hosts[i].ns.clone());
        match Relay::start(ns.as_deref(), listen, target) {
            Ok(r) => self.relays.push(r),
            Err(e) => panic!("relay {listen} -> {target} in {ns:?}: {e}"),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for r in &mut self.relays {
            r.stop();
        }
        for h in &self.hosts {
            let _ = ip(&["link", "del", &h.veth]);
            if let Err(e) = ip(&["netns", "del", &h.ns]) {
                eprintln!("cleanup: {e}");
            }
        }
        if let Some(b) = &self.bridge {
            if let Err(e) = ip(&["link", "del", b]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// A TCP forwarder whose sockets live in one namespace (its threads enter
/// it first; threads they spawn inherit it).
struct Relay {
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

fn enter(ns: &str) -> Result<(), String> {
    let f = std::fs::File::open(format!("/run/netns/{ns}"))
        .map_err(|e| format!("open /run/netns/{ns}: {e}"))?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("setns into {ns}: {e}"))
}

/// Copies `from` to `to` until EOF or an error, then half-closes `to`.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

impl Relay {
    fn start(ns: Option<&str>, listen: SocketAddr, target: SocketAddr) -> Result<Relay, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let ns = ns.map(str::to_string);
        let stopping = stop.clone();
        let accept = std::thread::spawn(move || {
            let bound = ns
                .as_deref()
                .map_or(Ok(()), enter)
                .and_then(|()| TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}")))
                .and_then(|l| {
                    l.set_nonblocking(true)
                        .map(|()| l)
                        .map_err(|e| e.to_string())
                });
            let listener = match bound {
                Ok(l) => {
                    let _ = tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let Ok(out) = TcpStream::connect_timeout(&target, Duration::from_secs(5))
                        else {
                            continue;
                        };
                        let (Ok(c2), Ok(o2)) = (conn.try_clone(), out.try_clone()) else {
                            continue;
                        };
                        std::thread::spawn(move || pump(conn, out));
                        std::thread::spawn(move || pump(o2, c2));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(Relay {
                stop,
                accept: Some(accept),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the relay did not start within 10s".into()),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}
