//! Parsing of model replies shared by the strategies: lists (numbered or bulleted) and the
//! numbered lists written back into prompts.

/// The items of a numbered (`1.`, `1)`, `1:`) or bulleted (`-`, `*`, `•`) list in a model's
/// reply, in order, without their markers.
///
/// Text before the first item is ignored (a preamble). A line that is not an item continues the
/// current item (joined with a space) when it follows it directly or is indented deeper than the
/// list; after a blank line, an unindented line ends the list item, and the text up to the next
/// item is ignored (a conclusion). Markers indented deeper than the first item are nested lists
/// and continue the current item. `**1.**`-style bold numbers are read as numbers. Items with no
/// letter or digit are dropped. Empty when the reply has no list.
pub fn parse_list(text: &str) -> Vec<String> {
    let mut items: Vec<String> = Vec::new();
    let mut list_indent: Option<usize> = None;
    let mut open = false;
    let mut after_blank = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            after_blank = true;
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let nested = list_indent.is_some_and(|top| indent > top);
        match list_item(trimmed) {
            Some(item) if !nested => {
                list_indent.get_or_insert(indent);
                items.push(item.to_owned());
                open = true;
            }
            _ => {
                let continues = open && (!after_blank || nested);
                match items.last_mut() {
                    Some(last) if continues => {
                        if !last.is_empty() {
                            last.push(' ');
                        }
                        last.push_str(trimmed);
                    }
                    _ => open = false,
                }
            }
        }
        after_blank = false;
    }
    items.retain(|item| item.chars().any(char::is_alphanumeric));
    items
}

/// The text of a list item after its marker, or `None` when `line` (trimmed) is not an item.
fn list_item(line: &str) -> Option<&str> {
    for bullet in ['-', '*', '•', '+'] {
        if let Some(rest) = line.strip_prefix(bullet)
            && (rest.is_empty() || rest.starts_with(char::is_whitespace))
        {
            return Some(rest.trim());
        }
    }
    let unbolded = line.strip_prefix("**").unwrap_or(line);
    let digits = unbolded.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 3 {
        return None;
    }
    let rest = unbolded[digits..].strip_prefix(['.', ')', ':'])?;
    let rest = rest.strip_prefix("**").unwrap_or(rest);
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then(|| rest.trim())
}

/// `items` as a numbered list, one per line.
pub(crate) fn numbered<S: AsRef<str>>(items: &[S]) -> String {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| format!("{}. {}", i + 1, item.as_ref().trim()))
        .collect::<Vec<_>>()
        .join("\n")
}
