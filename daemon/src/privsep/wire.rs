//! The socketpair protocol between the agent and the executor: frames of a
//! 4-byte big-endian length and a JSON body, at most [`MAX_FRAME`] bytes.
//!
//! Guarantees: a reader never allocates more than [`MAX_FRAME`] for a frame
//! and returns [`WireError::Malformed`] (naming the cause) for an oversized
//! or undecodable one, so the executor can refuse it without trusting the
//! agent. Messages are the executor's own types ([`RunSpec`], [`ExecEvent`],
//! ...), so nothing is translated.

use std::io::{self, Read, Write};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::exec::{ExecEvent, KillReason, LeftoverRun, RunSpec, SpawnError, Started, Usage};

/// Largest frame either side accepts.
pub const MAX_FRAME: u32 = 4 << 20;

/// Agent → executor.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// First message of every (re)started agent.
    Hello,
    Spawn {
        id: u64,
        spec: RunSpec,
    },
    Kill {
        id: u64,
        key: String,
        reason: KillReason,
    },
    Usage {
        id: u64,
        key: String,
    },
    Recover {
        id: u64,
    },
    /// systemd notification lines to forward (no reply).
    Notify {
        lines: String,
    },
}

/// Executor → agent.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// Answer to `Hello`: the runs the executor supervises right now (the
    /// new agent re-adopts them) and whether runs get cgroups.
    Welcome {
        running: Vec<String>,
        uses_cgroups: bool,
    },
    Spawned {
        id: u64,
        result: Result<Started, SpawnError>,
    },
    Killed {
        id: u64,
        found: bool,
    },
    Usage {
        id: u64,
        usage: Option<Usage>,
    },
    Recovered {
        id: u64,
        leftovers: Vec<LeftoverRun>,
    },
    /// A run finished (also replayed for runs that ended while no agent
    /// was connected).
    Event(ExecEvent),
    /// A request the executor could not decode or refused outright.
    Refused {
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed")]
    Closed,
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
}

pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), WireError> {
    let body = serde_json::to_vec(msg).map_err(|e| WireError::Malformed(e.to_string()))?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| *l <= MAX_FRAME)
        .ok_or_else(|| {
            WireError::Malformed(format!("frame of {} bytes is too large", body.len()))
        })?;
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame)?;
    Ok(())
}

/// Reads one frame. `Malformed` leaves the stream positioned after the bad
/// frame's body (when its length was acceptable), so the caller may go on.
pub fn read_frame<T: DeserializeOwned>(r: &mut impl Read) -> Result<T, WireError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len);
    if len > MAX_FRAME {
        return Err(WireError::Malformed(format!(
            "frame length {len} exceeds {MAX_FRAME}"
        )));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => WireError::Closed,
        _ => WireError::Io(e),
    })?;
    serde_json::from_slice(&body).map_err(|e| WireError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_and_garbage_frames_are_malformed() {
        let mut big = Vec::new();
        big.extend_from_slice(&(MAX_FRAME + 1).to_be_bytes());
        assert!(matches!(
            read_frame::<Request>(&mut big.as_slice()),
            Err(WireError::Malformed(_))
        ));
        let mut junk = Vec::new();
        junk.extend_from_slice(&3u32.to_be_bytes());
        junk.extend_from_slice(b"{x}");
        assert!(matches!(
            read_frame::<Request>(&mut junk.as_slice()),
            Err(WireError::Malformed(_))
        ));
        let mut ok = Vec::new();
        write_frame(&mut ok, &Request::Recover { id: 7 }).expect("encodes");
        assert!(matches!(
            read_frame::<Request>(&mut ok.as_slice()),
            Ok(Request::Recover { id: 7 })
        ));
    }
}
