//! Byte-level framing of streamed responses: newline-delimited lines (NDJSON) and SSE events.
//!
//! Both decoders take raw `&[u8]` chunks exactly as they come off the socket and keep partial
//! lines between chunks, so a multi-byte character split across two chunks survives. Text is
//! validated as UTF-8 once per complete line, never per chunk.

use crate::error::{Error, Result, truncate_for_error};

/// Longest line either decoder accepts: 8 MiB.
pub const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

/// Splits a byte stream into lines ending in `\n` or `\r\n`.
///
/// Feed chunks with [`LineDecoder::push`], then take lines with [`LineDecoder::next_line`] until
/// it returns `None`; at the end of the stream call [`LineDecoder::finish`] for a final line that
/// had no newline.
#[derive(Debug)]
pub struct LineDecoder {
    buf: Vec<u8>,
    /// Offset of the first byte not yet returned.
    start: usize,
    /// Offset up to which `buf[start..]` is known to hold no newline.
    scanned: usize,
    max_line: usize,
    keep_blank: bool,
    line_number: u64,
}

impl Default for LineDecoder {
    fn default() -> Self {
        LineDecoder::new(MAX_LINE_BYTES, false)
    }
}

impl LineDecoder {
    /// A decoder that rejects lines over `max_line` bytes and, unless `keep_blank`, skips
    /// blank lines.
    pub fn new(max_line: usize, keep_blank: bool) -> Self {
        LineDecoder {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            max_line,
            keep_blank,
            line_number: 0,
        }
    }

    /// Appends a chunk of the stream.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            self.scanned = 0;
        } else if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete line with its 1-based number (counting blank lines), without its line
    /// ending; `Ok(None)` when more bytes are needed.
    pub fn next_line(&mut self) -> Result<Option<(u64, &str)>> {
        loop {
            let from = self.scanned.max(self.start);
            let Some(offset) = self.buf[from..].iter().position(|&b| b == b'\n') else {
                self.scanned = self.buf.len();
                let pending = self.buf.len() - self.start;
                if pending > self.max_line {
                    return Err(self.too_long(pending));
                }
                return Ok(None);
            };
            let end = from + offset;
            let line_start = self.start;
            self.start = end + 1;
            self.scanned = self.start;
            self.line_number += 1;
            let mut line_end = end;
            if line_end > line_start && self.buf[line_end - 1] == b'\r' {
                line_end -= 1;
            }
            if line_end - line_start > self.max_line {
                return Err(self.too_long(line_end - line_start));
            }
            if line_end == line_start && !self.keep_blank {
                continue;
            }
            let number = self.line_number;
            return decode_utf8(number, &self.buf[line_start..line_end]).map(|s| Some((number, s)));
        }
    }

    /// The final line of a stream that did not end in a newline, if any.
    pub fn finish(&mut self) -> Result<Option<(u64, &str)>> {
        let mut rest = &self.buf[self.start..];
        self.start = self.buf.len();
        self.scanned = self.start;
        if let [head @ .., b'\r'] = rest {
            rest = head;
        }
        if rest.is_empty() {
            return Ok(None);
        }
        self.line_number += 1;
        decode_utf8(self.line_number, rest).map(|s| Some((self.line_number, s)))
    }

    fn too_long(&self, len: usize) -> Error {
        let preview =
            String::from_utf8_lossy(&self.buf[self.start..self.buf.len().min(self.start + 256)]);
        Error::Decode {
            line_number: self.line_number + 1,
            line: truncate_for_error(&preview, 256),
            reason: format!(
                "line of {len} bytes exceeds the limit of {} bytes",
                self.max_line
            ),
        }
    }
}

fn decode_utf8(line_number: u64, bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|err| Error::Decode {
        line_number,
        line: truncate_for_error(&String::from_utf8_lossy(bytes), 512),
        reason: format!("invalid UTF-8: {err}"),
    })
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The line number of the event's last `data:` line, for error messages.
    pub line_number: u64,
}

/// Decodes a `text/event-stream` into [`SseEvent`]s.
///
/// Comment lines (`: keepalive`) and `id:`/`retry:` fields are skipped; an event is dispatched at
/// a blank line, and a final event that lacks its blank line is dispatched by
/// [`SseDecoder::finish`] (servers do end streams that way).
#[derive(Debug)]
pub struct SseDecoder {
    lines: LineDecoder,
    event: Option<String>,
    data: Option<String>,
    data_line: u64,
}

impl Default for SseDecoder {
    fn default() -> Self {
        SseDecoder {
            lines: LineDecoder::new(MAX_LINE_BYTES, true),
            event: None,
            data: None,
            data_line: 0,
        }
    }
}

impl SseDecoder {
    /// Appends a chunk of the stream.
    pub fn push(&mut self, chunk: &[u8]) {
        self.lines.push(chunk);
    }

    /// The next complete event; `Ok(None)` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>> {
        while let Some((number, line)) = self.lines.next_line()? {
            if line.is_empty() {
                if let Some(event) = self.dispatch() {
                    return Ok(Some(event));
                }
                continue;
            }
            Self::field(
                line,
                number,
                &mut self.event,
                &mut self.data,
                &mut self.data_line,
            );
        }
        Ok(None)
    }

    /// The last event of a stream that ended without its blank line, if any.
    pub fn finish(&mut self) -> Result<Option<SseEvent>> {
        if let Some((number, line)) = self.lines.finish()? {
            Self::field(
                line,
                number,
                &mut self.event,
                &mut self.data,
                &mut self.data_line,
            );
        }
        Ok(self.dispatch())
    }

    fn field(
        line: &str,
        number: u64,
        event: &mut Option<String>,
        data: &mut Option<String>,
        data_line: &mut u64,
    ) {
        if line.starts_with(':') {
            return;
        }
        let (name, value) = match line.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match name {
            "data" => {
                match data {
                    Some(existing) => {
                        existing.push('\n');
                        existing.push_str(value);
                    }
                    None => *data = Some(value.to_owned()),
                }
                *data_line = number;
            }
            "event" => *event = Some(value.to_owned()),
            _ => {}
        }
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        self.data.take().map(|data| SseEvent {
            event,
            data,
            line_number: self.data_line,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(chunks: &[&[u8]], keep_blank: bool) -> Vec<(u64, String)> {
        let mut decoder = LineDecoder::new(64, keep_blank);
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.push(chunk);
            while let Some((n, line)) = decoder.next_line().unwrap() {
                out.push((n, line.to_owned()));
            }
        }
        if let Some((n, line)) = decoder.finish().unwrap() {
            out.push((n, line.to_owned()));
        }
        out
    }

    type LineCase<'a> = (&'a str, &'a [&'a [u8]], bool, &'a [(u64, &'a str)]);
    type SseCase<'a> = (&'a str, Vec<&'a [u8]>, Vec<(Option<String>, String)>);

    #[test]
    fn line_framing_table() {
        let owned = |v: &[(u64, &str)]| -> Vec<(u64, String)> {
            v.iter().map(|(n, s)| (*n, s.to_string())).collect()
        };
        let cases: &[LineCase<'_>] = &[
            ("one chunk", &[b"a\nb\n"], false, &[(1, "a"), (2, "b")]),
            (
                "split line",
                &[b"ab", b"c\nd", b"\n"],
                false,
                &[(1, "abc"), (2, "d")],
            ),
            ("crlf", &[b"a\r\nb\r", b"\n"], false, &[(1, "a"), (2, "b")]),
            (
                "blank skipped",
                &[b"a\n\n\r\nb\n"],
                false,
                &[(1, "a"), (4, "b")],
            ),
            (
                "blank kept",
                &[b"a\n\nb\n"],
                true,
                &[(1, "a"), (2, ""), (3, "b")],
            ),
            (
                "final line without newline",
                &[b"a\nlast"],
                false,
                &[(1, "a"), (2, "last")],
            ),
            ("split multibyte", &[b"\xc3", b"\xa9\n"], false, &[(1, "é")]),
            ("empty stream", &[], false, &[]),
            (
                "byte at a time",
                &[b"h", b"\xe2", b"\x82", b"\xac", b"\n", b"x"],
                false,
                &[(1, "h€"), (2, "x")],
            ),
        ];
        for (name, chunks, keep_blank, expected) in cases {
            assert_eq!(
                lines_of(chunks, *keep_blank),
                owned(expected),
                "case {name}"
            );
        }
    }

    #[test]
    fn overlong_line_is_an_error_naming_the_line() {
        let mut decoder = LineDecoder::new(8, false);
        decoder.push(b"ok\n0123456789");
        assert_eq!(decoder.next_line().unwrap(), Some((1, "ok")));
        let err = decoder.next_line().unwrap_err();
        assert!(
            matches!(&err, Error::Decode { line_number: 2, line, .. } if line.starts_with("0123")),
            "{err:?}"
        );
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut decoder = LineDecoder::default();
        decoder.push(b"\xff\xfe\n");
        assert!(matches!(
            decoder.next_line(),
            Err(Error::Decode { line_number: 1, .. })
        ));
    }

    #[test]
    fn buffer_is_compacted_as_lines_are_consumed() {
        let mut decoder = LineDecoder::default();
        for _ in 0..10_000 {
            decoder.push(b"0123456789\n");
            assert_eq!(decoder.next_line().unwrap().map(|(_, l)| l.len()), Some(10));
        }
        assert!(decoder.buf.capacity() < 1024, "{}", decoder.buf.capacity());
    }

    fn events_of(chunks: &[&[u8]]) -> Vec<(Option<String>, String)> {
        let mut decoder = SseDecoder::default();
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.push(chunk);
            while let Some(ev) = decoder.next_event().unwrap() {
                out.push((ev.event, ev.data));
            }
        }
        if let Some(ev) = decoder.finish().unwrap() {
            out.push((ev.event, ev.data));
        }
        out
    }

    #[test]
    fn sse_framing_table() {
        let d = |s: &str| (None, s.to_owned());
        let cases: Vec<SseCase<'_>> = vec![
            (
                "two events",
                vec![b"data: a\n\ndata: b\n\n"],
                vec![d("a"), d("b")],
            ),
            ("no space after colon", vec![b"data:a\n\n"], vec![d("a")]),
            (
                "multi-line data",
                vec![b"data: a\ndata: b\n\n"],
                vec![d("a\nb")],
            ),
            (
                "comments skipped",
                vec![b": keepalive\n\ndata: x\n\n"],
                vec![d("x")],
            ),
            ("crlf", vec![b"data: x\r\n\r\n"], vec![d("x")]),
            (
                "split across chunks",
                vec![b"da", b"ta: {\"a\"", b":1}\n", b"\n"],
                vec![d("{\"a\":1}")],
            ),
            (
                "final event without blank line",
                vec![b"data: [DONE]\n"],
                vec![d("[DONE]")],
            ),
            (
                "final line without newline",
                vec![b"data: [DONE]"],
                vec![d("[DONE]")],
            ),
            (
                "named event",
                vec![b"event: error\ndata: x\n\n"],
                vec![(Some("error".into()), "x".into())],
            ),
            (
                "id and retry ignored",
                vec![b"id: 1\nretry: 5\ndata: x\n\n"],
                vec![d("x")],
            ),
            (
                "split multibyte",
                vec![b"data: \xc3", b"\xa9\n\n"],
                vec![d("é")],
            ),
        ];
        for (name, chunks, expected) in cases {
            assert_eq!(events_of(&chunks), expected, "case {name}");
        }
    }
}
