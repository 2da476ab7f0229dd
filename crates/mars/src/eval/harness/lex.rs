//! A small lexer for Rust source: enough to find macro calls, attributes, modules and function
//! bodies in test text without being fooled by strings, chars and comments.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Ident,
    Punct(u8),
    Literal,
    Lifetime,
    /// `//!` or `/*!`: an inner doc comment, which is an inner attribute.
    InnerDoc,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Token {
    pub(super) kind: Kind,
    pub(super) start: usize,
    pub(super) end: usize,
}

/// Splits Rust source into tokens, skipping whitespace and comments (except inner doc
/// comments). Good enough for well-formed code; malformed input yields some tokens and never
/// panics.
pub(super) fn tokens(src: &str) -> Vec<Token> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if b[i..].starts_with(b"//") {
            let end = src[i..].find('\n').map_or(b.len(), |n| i + n);
            if b[i..].starts_with(b"//!") {
                out.push(Token {
                    kind: Kind::InnerDoc,
                    start,
                    end,
                });
            }
            i = end;
            continue;
        }
        if b[i..].starts_with(b"/*") {
            let inner = b[i..].starts_with(b"/*!");
            let mut depth = 0usize;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            if inner {
                out.push(Token {
                    kind: Kind::InnerDoc,
                    start,
                    end: i,
                });
            }
            continue;
        }
        let kind;
        if let Some(end) = raw_string_end(b, i) {
            i = end;
            kind = Kind::Literal;
        } else if c == b'"' || (c == b'b' && b.get(i + 1) == Some(&b'"')) {
            i += if c == b'b' { 2 } else { 1 };
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
            kind = Kind::Literal;
        } else if c == b'\'' || (c == b'b' && b.get(i + 1) == Some(&b'\'')) {
            let q = if c == b'b' { i + 1 } else { i };
            match char_literal_end(src, q) {
                Some(end) => {
                    i = end;
                    kind = Kind::Literal;
                }
                None => {
                    // A lifetime or label: `'a`.
                    i = q + 1;
                    while i < b.len() && is_ident_byte(b[i]) {
                        i += 1;
                    }
                    kind = Kind::Lifetime;
                }
            }
        } else if is_ident_start(c) {
            while i < b.len() && is_ident_byte(b[i]) {
                i += 1;
            }
            kind = Kind::Ident;
        } else if c.is_ascii_digit() {
            while i < b.len() && (is_ident_byte(b[i]) || b[i] == b'.' && next_is_digit(b, i)) {
                i += 1;
            }
            kind = Kind::Literal;
        } else {
            i += src[i..].chars().next().map_or(1, char::len_utf8);
            kind = Kind::Punct(c);
        }
        out.push(Token {
            kind,
            start,
            end: i,
        });
    }
    out
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

fn next_is_digit(b: &[u8], i: usize) -> bool {
    b.get(i + 1).is_some_and(u8::is_ascii_digit)
}

/// The end of a raw string literal (`r"…"`, `r#"…"#`, `br"…"`) starting at `i`, if one does.
fn raw_string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    if b.get(j) == Some(&b'b') {
        j += 1;
    }
    if b.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = b[j..].iter().take_while(|&&c| c == b'#').count();
    j += hashes;
    if b.get(j) != Some(&b'"') {
        return None;
    }
    j += 1;
    while j < b.len() {
        if b[j] == b'"'
            && b[j + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == b'#')
                .count()
                == hashes
        {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(b.len())
}

/// The end of a char literal whose opening quote is at `q`, or `None` for a lifetime.
fn char_literal_end(src: &str, q: usize) -> Option<usize> {
    let rest = src.get(q + 1..)?;
    let mut chars = rest.char_indices();
    let (_, first) = chars.next()?;
    if first == '\\' {
        // An escape: find the closing quote.
        let close = rest.get(2..)?.find('\'')?;
        return Some(q + 1 + 2 + close + 1);
    }
    let (at, second) = chars.next()?;
    (second == '\'').then_some(q + 1 + at + 1)
}

/// The index of the token closing the bracket opened at `open`.
pub(super) fn matching(toks: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (n, t) in toks.iter().enumerate().skip(open) {
        match t.kind {
            Kind::Punct(b'(' | b'[' | b'{') => depth += 1,
            Kind::Punct(b')' | b']' | b'}') => {
                depth -= 1;
                if depth == 0 {
                    return Some(n);
                }
            }
            _ => {}
        }
    }
    None
}
