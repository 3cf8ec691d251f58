//! An incremental Server-Sent Events parser.

use memchr::memchr2;

/// One dispatched server-sent event, borrowed from the parser's buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The event type: the last `event:` field, or `message` when there was none.
    pub event: &'a str,
    /// The data: every `data:` line of the event joined with `\n`.
    pub data: &'a [u8],
    /// The last `id:` field seen on the stream, if any (it persists across events).
    pub id: Option<&'a str>,
}

impl SseEvent<'_> {
    /// Whether this is OpenAI's terminal `data: [DONE]`.
    pub fn is_done(&self) -> bool {
        self.data == b"[DONE]"
    }

    /// The data as UTF-8, if it is.
    pub fn data_str(&self) -> Option<&str> {
        std::str::from_utf8(self.data).ok()
    }
}

/// The default bound on one line and one event's data: 4 MiB.
pub const DEFAULT_MAX_EVENT_LEN: usize = 4 * 1024 * 1024;

/// An incremental parser of `text/event-stream` bodies, following the WHATWG
/// algorithm: lines end in `\n`, `\r\n` or `\r` (also split across chunks), multi-line
/// `data:` is joined with `\n`, comments (`:`) and unknown fields are skipped, a leading
/// BOM is dropped.
///
/// Feed it chunks as they arrive with [`feed`](Self::feed); it calls back once per
/// complete event, borrowing from the chunk where it can, and keeps only a partial
/// line between chunks. That carry-over is bounded: a line or an event over the limit
/// is dropped and [`overflowed`](Self::overflowed) turns true, while the stream itself
/// (forwarded by the tee, not the parser) is untouched.
///
/// ```
/// use tower_ai_core::SseParser;
/// let mut p = SseParser::new();
/// let mut seen = Vec::new();
/// for chunk in ["event: ping\nda", "ta: {\"a\"\r", "\n:comment\ndata: 1}\n\n"] {
///     p.feed(chunk.as_bytes(), |e| seen.push((e.event.to_owned(), e.data.to_vec())));
/// }
/// assert_eq!(seen, vec![("ping".to_owned(), b"{\"a\"\n1}".to_vec())]);
/// ```
#[derive(Debug)]
pub struct SseParser {
    line: Vec<u8>,
    data: Vec<u8>,
    data_lines: usize,
    event: String,
    id: Option<String>,
    skip_lf: bool,
    started: bool,
    /// How many bytes of a leading BOM were matched while not `started`.
    bom: u8,
    discarding_line: bool,
    discarding_event: bool,
    overflowed: bool,
    max_len: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser with the [default bound](DEFAULT_MAX_EVENT_LEN).
    pub fn new() -> Self {
        Self::with_max_len(DEFAULT_MAX_EVENT_LEN)
    }

    /// A parser that keeps at most `max_len` bytes of a line or of an event's data.
    pub fn with_max_len(max_len: usize) -> Self {
        Self {
            line: Vec::new(),
            data: Vec::new(),
            data_lines: 0,
            event: String::new(),
            id: None,
            skip_lf: false,
            started: false,
            bom: 0,
            discarding_line: false,
            discarding_event: false,
            overflowed: false,
            max_len,
        }
    }

    /// Whether a line or event was dropped for being over the bound.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Whether the stream stopped in the middle of a line or an event: at the end of a
    /// stream, a partial event is not dispatched (as the spec says), and a caller can
    /// tell the stream was cut short.
    pub fn has_partial(&self) -> bool {
        !self.line.is_empty()
            || self.data_lines > 0
            || self.discarding_line
            || (!self.started && self.bom > 0)
    }

    /// Feeds one chunk, calling `on_event` for every event it completes.
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(SseEvent<'_>)) {
        let mut rest = chunk;
        if !self.started {
            // A leading BOM is dropped, also when it is split across chunks.
            const BOM: &[u8; 3] = b"\xEF\xBB\xBF";
            while usize::from(self.bom) < BOM.len() {
                match rest.split_first() {
                    None => return,
                    Some((&b, tail)) if b == BOM[usize::from(self.bom)] => {
                        self.bom += 1;
                        rest = tail;
                    }
                    Some(_) => break,
                }
            }
            self.started = true;
            if usize::from(self.bom) < BOM.len() {
                // Not a BOM after all: what matched of it starts the first line.
                self.line.extend_from_slice(&BOM[..usize::from(self.bom)]);
            }
        }
        if self.skip_lf && !rest.is_empty() {
            self.skip_lf = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(i) = memchr2(b'\n', b'\r', rest) {
            let line = &rest[..i];
            let mut after = &rest[i + 1..];
            if rest[i] == b'\r' {
                match after.first() {
                    Some(b'\n') => after = &after[1..],
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            if self.discarding_line {
                self.discarding_line = false;
                self.line.clear();
            } else if self.line.is_empty() {
                self.line_complete(line, &mut on_event);
            } else if self.line.len() + line.len() > self.max_len {
                self.overflowed = true;
                self.line.clear();
            } else {
                let mut buf = std::mem::take(&mut self.line);
                buf.extend_from_slice(line);
                self.line_complete(&buf, &mut on_event);
                buf.clear();
                self.line = buf;
            }
            rest = after;
        }
        if !rest.is_empty() && !self.discarding_line {
            if self.line.len() + rest.len() > self.max_len {
                self.overflowed = true;
                self.discarding_line = true;
                self.line = Vec::new();
            } else {
                self.line.extend_from_slice(rest);
            }
        }
    }

    fn line_complete(&mut self, line: &[u8], on_event: &mut impl FnMut(SseEvent<'_>)) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.discarding_event {
                    return;
                }
                if self.data.len() + value.len() + 1 > self.max_len {
                    self.overflowed = true;
                    self.discarding_event = true;
                    self.data = Vec::new();
                    return;
                }
                if self.data_lines > 0 {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.data_lines += 1;
            }
            b"event" => {
                self.event.clear();
                match std::str::from_utf8(value) {
                    Ok(v) => self.event.push_str(v),
                    Err(_) => self.event.push_str(&String::from_utf8_lossy(value)),
                }
            }
            b"id" if !value.contains(&0) => {
                self.id = Some(String::from_utf8_lossy(value).into_owned());
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(SseEvent<'_>)) {
        if self.data_lines > 0 && !self.discarding_event {
            on_event(SseEvent {
                event: if self.event.is_empty() {
                    "message"
                } else {
                    &self.event
                },
                data: &self.data,
                id: self.id.as_deref(),
            });
        }
        self.data.clear();
        self.data_lines = 0;
        self.event.clear();
        self.discarding_event = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Seen = Vec<(String, String)>;

    fn parse_chunks(chunks: &[&[u8]]) -> Seen {
        let mut p = SseParser::new();
        let mut seen = Vec::new();
        for c in chunks {
            p.feed(c, |e| {
                seen.push((
                    e.event.to_owned(),
                    String::from_utf8(e.data.to_vec()).unwrap(),
                ))
            });
        }
        seen
    }

    const STREAM: &str = "event: message_start\ndata: {\"a\":1}\n\n: keep-alive\n\ndata: line1\ndata: line2\n\nid: 7\ndata: [DONE]\n\n";

    fn expected() -> Seen {
        vec![
            ("message_start".into(), "{\"a\":1}".into()),
            ("message".into(), "line1\nline2".into()),
            ("message".into(), "[DONE]".into()),
        ]
    }

    /// Found by the `sse` fuzz target: a BOM split across chunks was kept as part of
    /// the first field's name, so the first line (here an `id:`) was lost.
    #[test]
    fn a_bom_split_across_chunks_is_dropped() {
        let whole: &[u8] = b"\xEF\xBB\xBFevent: e\ndata: x\n\n";
        let want = vec![("e".to_owned(), "x".to_owned())];
        assert_eq!(parse_chunks(&[whole]), want);
        assert_eq!(
            parse_chunks(&[&whole[..1], &whole[1..2], &whole[2..]]),
            want
        );
        assert_eq!(parse_chunks(&[&whole[..2], b"", &whole[2..]]), want);
        // Bytes that only begin like a BOM are the stream's own.
        let mut p = SseParser::new();
        let mut ids = Vec::new();
        for c in [&b"\xEF\xBB"[..], b"id: 1\ndata: y\n\n"] {
            p.feed(c, |e| ids.push(e.id.map(str::to_owned)));
        }
        assert_eq!(ids, vec![None]);
        // A stream cut inside a BOM was cut short.
        let mut p = SseParser::new();
        p.feed(b"\xEF", |_| {});
        assert!(p.has_partial());
    }

    #[test]
    fn whole() {
        assert_eq!(parse_chunks(&[STREAM.as_bytes()]), expected());
    }

    #[test]
    fn every_split_point_and_every_line_ending() {
        for ending in ["\n", "\r\n", "\r"] {
            let stream = STREAM.replace('\n', ending);
            let bytes = stream.as_bytes();
            for i in 0..=bytes.len() {
                for j in i..=bytes.len() {
                    let seen = parse_chunks(&[&bytes[..i], &bytes[i..j], &bytes[j..]]);
                    assert_eq!(seen, expected(), "ending {ending:?} split at {i},{j}");
                }
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let bytes = STREAM.replace('\n', "\r\n");
        let chunks: Vec<&[u8]> = bytes.as_bytes().chunks(1).collect();
        assert_eq!(parse_chunks(&chunks), expected());
    }

    #[test]
    fn fields() {
        let mut p = SseParser::new();
        let mut ids = Vec::new();
        p.feed(
            b"\xEF\xBB\xBFid: 1\ndata\nretry: 10\nfoo: bar\n\nid: 2\ndata:x\n\n",
            |e| ids.push((e.id.map(str::to_owned), e.data.to_vec())),
        );
        assert_eq!(
            ids,
            vec![
                (Some("1".into()), b"".to_vec()),
                (Some("2".into()), b"x".to_vec())
            ]
        );
        // An event with no data is not dispatched.
        let seen = parse_chunks(&[b"event: x\n\ndata: y\n\n"]);
        assert_eq!(seen, vec![("message".into(), "y".into())]);
    }

    #[test]
    fn partial_at_end_is_not_dispatched() {
        let mut p = SseParser::new();
        let mut n = 0;
        p.feed(b"data: a\n\ndata: b\n", |_| n += 1);
        assert_eq!(n, 1);
        assert!(p.has_partial());
        let mut p = SseParser::new();
        p.feed(b"data: a\n\n", |_| {});
        assert!(!p.has_partial());
    }

    #[test]
    fn bounded() {
        let mut p = SseParser::with_max_len(8);
        let mut seen = Vec::new();
        p.feed(b"data: 0123", |e| seen.push(e.data.to_vec()));
        p.feed(b"456789\n\ndata: ok\n\n", |e| seen.push(e.data.to_vec()));
        assert!(p.overflowed());
        assert_eq!(seen, vec![b"ok".to_vec()]);
        // A long event made of short lines is dropped as a whole.
        let mut p = SseParser::with_max_len(8);
        let mut seen = Vec::new();
        p.feed(b"data: 12345\ndata: 12345\n\ndata: ok\n\n", |e| {
            seen.push(e.data.to_vec())
        });
        assert!(p.overflowed());
        assert_eq!(seen, vec![b"ok".to_vec()]);
        assert!(p.line.capacity() <= 16);
    }
}
