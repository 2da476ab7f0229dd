//! From generated token bytes to text deltas: UTF-8 assembly across tokens, and stop strings
//! that may span tokens, held back so that no part of a stop string is ever emitted.

/// Joins the byte pieces of successive tokens into text.
///
/// A token may end inside a multi-byte character; those bytes wait for the next token. Bytes
/// that can never form valid UTF-8 become U+FFFD.
#[derive(Debug, Default)]
pub(crate) struct Utf8Assembler {
    pending: Vec<u8>,
}

impl Utf8Assembler {
    /// Adds a token's bytes and returns the text they complete (possibly empty).
    pub(crate) fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return out;
                }
                Err(err) => {
                    let valid = err.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match err.error_len() {
                        // An incomplete character at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Returns whatever is left when generation ends (an unfinished character becomes U+FFFD).
    pub(crate) fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

/// What [`StopScanner::push`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scan {
    /// No stop string yet; this text is safe to emit.
    Continue(String),
    /// A stop string was found; this is the text before it, the last to emit.
    Stopped(String),
}

/// Finds stop strings in generated text, holding back any tail that could be the start of one.
#[derive(Debug, Default)]
pub(crate) struct StopScanner {
    stops: Vec<String>,
    held: String,
}

impl StopScanner {
    /// A scanner for these stop strings; empty strings are ignored.
    pub(crate) fn new(stops: &[String]) -> Self {
        StopScanner {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    /// Adds newly generated text.
    pub(crate) fn push(&mut self, text: &str) -> Scan {
        self.held.push_str(text);
        // The held text had no complete stop string before, so any match ends in `text`; the
        // earliest start is where the answer ends.
        let first = self.stops.iter().filter_map(|s| self.held.find(s)).min();
        if let Some(at) = first {
            let before = self.held[..at].to_owned();
            self.held.clear();
            return Scan::Stopped(before);
        }
        let keep = self
            .stops
            .iter()
            .map(|stop| partial_suffix(&self.held, stop))
            .max()
            .unwrap_or(0);
        let emit: String = self.held.drain(..self.held.len() - keep).collect();
        Scan::Continue(emit)
    }

    /// Returns the held-back text when generation ends without a stop string.
    pub(crate) fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`.
fn partial_suffix(text: &str, stop: &str) -> usize {
    (1..stop.len())
        .rev()
        .filter(|&k| stop.is_char_boundary(k))
        .find(|&k| text.ends_with(&stop[..k]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assemble(pieces: &[&[u8]]) -> Vec<String> {
        let mut asm = Utf8Assembler::default();
        let mut out: Vec<String> = pieces.iter().map(|p| asm.push(p)).collect();
        out.push(asm.finish());
        out
    }

    #[test]
    fn utf8_is_assembled_across_tokens() {
        let e_acute = "é".as_bytes();
        let crab = "🦀".as_bytes();
        let cases: Vec<(Vec<&[u8]>, Vec<&str>)> = vec![
            (vec![b"ab", b"c"], vec!["ab", "c", ""]),
            (vec![&e_acute[..1], &e_acute[1..]], vec!["", "é", ""]),
            (
                vec![&crab[..1], &crab[1..3], &crab[3..], b"!"],
                vec!["", "", "🦀", "!", ""],
            ),
            (vec![b"a\xff", b"b"], vec!["a\u{FFFD}", "b", ""]),
            (vec![b"x", &crab[..2]], vec!["x", "", "\u{FFFD}"]),
        ];
        for (pieces, want) in cases {
            assert_eq!(assemble(&pieces), want, "{pieces:?}");
        }
    }

    fn scan(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut scanner = StopScanner::new(&stops);
        let mut out = String::new();
        for piece in pieces {
            match scanner.push(piece) {
                Scan::Continue(text) => out.push_str(&text),
                Scan::Stopped(text) => {
                    out.push_str(&text);
                    return (out, true);
                }
            }
        }
        out.push_str(&scanner.finish());
        (out, false)
    }

    #[test]
    fn stop_strings_end_the_text_before_them() {
        let cases: &[(&[&str], &[&str], &str, bool)] = &[
            (&[], &["a", "b"], "ab", false),
            (&["\n\n"], &["one\n", "\ntwo"], "one", true),
            (&["END"], &["x E", "N", "D y"], "x ", true),
            (&["END"], &["x E", "N", "d"], "x ENd", false),
            (&["END"], &["x EN"], "x EN", false),
            (&["stop", "op"], &["a st", "op"], "a ", true),
            (&["stop", "op"], &["a sto", "p"], "a ", true),
            (&["op", "stop"], &["a sto", "p"], "a ", true),
            (&[""], &["ab"], "ab", false),
            (&["é!"], &["café", "!"], "caf", true),
        ];
        for (stops, pieces, want, stopped) in cases {
            assert_eq!(
                scan(stops, pieces),
                (want.to_string(), *stopped),
                "{stops:?} {pieces:?}"
            );
        }
    }

    #[test]
    fn partial_stop_text_is_held_back_not_emitted() {
        let mut scanner = StopScanner::new(&["</answer>".to_string()]);
        assert_eq!(scanner.push("42 </an"), Scan::Continue("42 ".into()));
        assert_eq!(scanner.push("swer"), Scan::Continue(String::new()));
        assert_eq!(scanner.push("> more"), Scan::Stopped(String::new()));
    }
}
