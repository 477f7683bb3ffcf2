//! Server-Sent Events: an incremental parser that accepts the body in chunks
//! split anywhere (even inside a `\r\n`), with bounded line and event sizes,
//! and the streams built on it.

use std::collections::VecDeque;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::ClientError;
use crate::run::RunRecord;

/// Longest line accepted; an `end` event carries a whole run record with up
/// to 1 MiB of output, JSON-escaped.
pub const MAX_LINE: usize = 8 * 1024 * 1024;
/// Largest event (all `data` lines together).
pub const MAX_EVENT: usize = 16 * 1024 * 1024;

/// One dispatched event: its type (`message` when none was given) and its
/// `data` lines joined with `\n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// Why a stream was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("event stream line longer than {0} bytes")]
    LineTooLong(usize),
    #[error("event stream event larger than {0} bytes")]
    EventTooLarge(usize),
}

/// Incremental `text/event-stream` parser (WHATWG HTML §9.2.6).
#[derive(Debug)]
pub struct SseParser {
    line: Vec<u8>,
    after_cr: bool,
    at_start: bool,
    event: String,
    data: String,
    has_data: bool,
    max_line: usize,
    max_event: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::with_limits(MAX_LINE, MAX_EVENT)
    }
}

impl SseParser {
    /// A parser refusing lines longer than `max_line` and events larger than `max_event` bytes.
    pub fn with_limits(max_line: usize, max_event: usize) -> Self {
        SseParser {
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            event: String::new(),
            data: String::new(),
            has_data: false,
            max_line,
            max_event,
        }
    }

    /// Feeds the next chunk, appending every event it completes to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if rest[0] == b'\n' {
                    rest = &rest[1..];
                    continue;
                }
            }
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => {
                    self.append(&rest[..i])?;
                    self.after_cr = rest[i] == b'\r';
                    rest = &rest[i + 1..];
                    self.end_line(out)?;
                }
                None => {
                    self.append(rest)?;
                    break;
                }
            }
        }
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() > self.max_line {
            return Err(SseError::LineTooLong(self.max_line));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let raw = std::mem::take(&mut self.line);
        let mut text = String::from_utf8_lossy(&raw).into_owned();
        if std::mem::take(&mut self.at_start) && text.starts_with('\u{feff}') {
            text.drain(..'\u{feff}'.len_utf8());
        }
        if text.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if text.starts_with(':') {
            return Ok(()); // comment / keep-alive
        }
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text.as_str(), ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.data.len() + value.len() + 1 > self.max_event {
                    return Err(SseError::EventTooLarge(self.max_event));
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {} // id, retry and unknown fields do not matter here
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        if std::mem::take(&mut self.has_data) {
            let event = if event.is_empty() {
                "message".to_string()
            } else {
                event
            };
            out.push(SseEvent { event, data });
        }
    }
}

/// A live event stream from the server; ends when the server closes it.
pub struct SseStream {
    body: Incoming,
    parser: SseParser,
    queue: VecDeque<SseEvent>,
    done: bool,
    server: String,
}

impl SseStream {
    pub(crate) fn new(body: Incoming, server: String) -> Self {
        SseStream {
            body,
            parser: SseParser::default(),
            queue: VecDeque::new(),
            done: false,
            server,
        }
    }

    /// The next event, `None` once the server closed the stream (a partial
    /// event at the end is dropped, as the SSE rules say).
    pub async fn next(&mut self) -> Option<Result<SseEvent, ClientError>> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Some(Ok(ev));
            }
            if self.done {
                return None;
            }
            match self.body.frame().await {
                None => self.done = true,
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(ClientError::Protocol(format!(
                        "event stream from {} broke: {e}",
                        self.server
                    ))));
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if let Err(e) = self.feed(&data) {
                            self.done = true;
                            return Some(Err(e));
                        }
                    }
                }
            }
        }
    }

    fn feed(&mut self, data: &Bytes) -> Result<(), ClientError> {
        let mut out = Vec::new();
        self.parser.feed(data, &mut out).map_err(|e| {
            ClientError::Protocol(format!("{} sent a bad event stream: {e}", self.server))
        })?;
        self.queue.extend(out);
        Ok(())
    }
}

/// What a run's live stream says (`GET /api/v1/runs/{id}/stream`).
#[derive(Clone, Debug, PartialEq)]
pub enum RunEvent {
    /// A chunk of output (stdout and stderr interleaved).
    Output(String),
    /// The run ended; its final record. The stream closes after this.
    End(Box<RunRecord>),
}

/// A run's live output followed by its final record.
pub struct RunStream {
    inner: SseStream,
}

impl RunStream {
    pub(crate) fn new(inner: SseStream) -> Self {
        RunStream { inner }
    }

    /// The next output chunk or the end record; unknown event types are skipped.
    pub async fn next(&mut self) -> Option<Result<RunEvent, ClientError>> {
        loop {
            let ev = match self.inner.next().await? {
                Ok(ev) => ev,
                Err(e) => return Some(Err(e)),
            };
            match ev.event.as_str() {
                // Output chunks are JSON strings; tolerate a server sending raw text.
                "output" => {
                    let text = serde_json::from_str::<String>(&ev.data).unwrap_or(ev.data);
                    return Some(Ok(RunEvent::Output(text)));
                }
                "end" => {
                    return Some(
                        serde_json::from_str::<RunRecord>(&ev.data)
                            .map(|r| RunEvent::End(Box::new(r)))
                            .map_err(|e| {
                                ClientError::Protocol(format!("bad run record in `end` event: {e}"))
                            }),
                    );
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_chunks(input: &[u8], size: usize) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for chunk in input.chunks(size) {
            p.feed(chunk, &mut out).expect("valid stream");
        }
        out
    }

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn any_chunking_gives_the_same_events() {
        let input = "\u{feff}: hello\r\nevent: output\r\ndata: \"a\\nb\"\r\n\r\ndata:x\rdata: y\r\rid: 3\nevent: end\ndata: {}\n\nevent: partial\ndata: lost";
        let want = vec![
            ev("output", "\"a\\nb\""),
            ev("message", "x\ny"),
            ev("end", "{}"),
        ];
        for size in 1..=input.len() {
            assert_eq!(
                parse_in_chunks(input.as_bytes(), size),
                want,
                "chunk size {size}"
            );
        }
    }

    #[test]
    fn utf8_split_across_chunks_is_kept() {
        let input = "event: output\ndata: \"größe 🙂\"\n\n".as_bytes();
        for size in 1..=input.len() {
            assert_eq!(
                parse_in_chunks(input, size),
                vec![ev("output", "\"größe 🙂\"")]
            );
        }
    }

    #[test]
    fn events_without_data_are_not_dispatched() {
        assert_eq!(
            parse_in_chunks(b"event: ping\n\ndata\n\n", 3),
            vec![ev("message", "")]
        );
    }

    #[test]
    fn long_lines_and_events_are_refused() {
        let mut p = SseParser::with_limits(8, 12);
        let mut out = Vec::new();
        assert_eq!(
            p.feed(b"data: 12345", &mut out),
            Err(SseError::LineTooLong(8))
        );
        let mut p = SseParser::with_limits(16, 12);
        assert_eq!(
            p.feed(b"data:1234567\ndata:1234567\n", &mut out),
            Err(SseError::EventTooLarge(12))
        );
    }
}
