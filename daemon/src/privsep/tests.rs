//! The executor refuses forged requests: the policy it enforces is its own,
//! whatever the agent sends. These drive the real request loop over a real
//! socketpair with hand-made frames.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cronsun_proto::job::{Limits, RunAs};

use super::supervisor::serve_for_tests;
use super::wire::{read_frame, write_frame, Reply, Request};
use crate::exec::{ExecPolicy, LocalExecutor, RunSpec, SpawnError};

fn spec(key: &str, argv: &[&str], run_as: Option<&str>) -> RunSpec {
    RunSpec {
        key: format!("forged{}~{key}#1", std::process::id()),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        run_as: run_as.map(|u| RunAs {
            user: u.to_string(),
            group: None,
        }),
        env: vec![],
        workdir: None,
        timeout: Some(Duration::from_secs(5)),
        kill_grace: Duration::from_secs(1),
        output_limit: 1024,
        limits: Limits::default(),
    }
}

fn spawn_result(agent: &mut UnixStream, id: u64, s: RunSpec) -> Result<(), SpawnError> {
    write_frame(agent, &Request::Spawn { id, spec: s }).expect("send");
    loop {
        match read_frame::<Reply>(agent).expect("reply") {
            Reply::Spawned { id: got, result } if got == id => return result.map(|_| ()),
            _ => continue,
        }
    }
}

#[test]
fn forged_requests_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let policy = ExecPolicy {
        default_run_as: "nobody".into(),
        allowed_users: vec!["nobody".into()],
        allowed_commands: Some(vec!["/bin/true".into()]),
    };
    let exec = LocalExecutor::new(policy, dir.path(), tx).expect("executor");
    let (mut agent, ours) = UnixStream::pair().expect("socketpair");
    let link = Arc::new(Mutex::new(Default::default()));
    let server = std::thread::spawn(move || serve_for_tests(ours, &exec, &link));

    // run_as root, which the policy does not list.
    let r = spawn_result(&mut agent, 1, spec("root", &["/bin/true"], Some("root")));
    assert!(
        matches!(&r, Err(SpawnError::Refused(m)) if m.contains("root")),
        "{r:?}"
    );
    // A command outside the allow-list.
    let r = spawn_result(&mut agent, 2, spec("cmd", &["/bin/sh", "-c", "id"], None));
    assert!(matches!(&r, Err(SpawnError::Refused(_))), "{r:?}");
    // A malformed frame is answered with Refused and the link goes on.
    agent.write_all(&5u32.to_be_bytes()).expect("send");
    agent.write_all(b"nope!").expect("send");
    assert!(matches!(
        read_frame::<Reply>(&mut agent).expect("reply"),
        Reply::Refused { .. }
    ));
    // A spec the executor rejects on shape (output_limit over 1 MiB).
    let mut big = spec("big", &["/bin/true"], None);
    big.output_limit = 1 << 30;
    let r = spawn_result(&mut agent, 3, big);
    assert!(matches!(&r, Err(SpawnError::Refused(_))), "{r:?}");
    drop(agent);
    server.join().expect("server thread");
}
