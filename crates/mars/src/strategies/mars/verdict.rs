//! What MARS reads from replies: a verifier's verdict and confidence, a solution's estimated
//! confidence, and an extracted strategy. Pure functions.

use serde::{Deserialize, Serialize};

/// A verifier's overall assessment of a solution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Assessment {
    /// The solution is right.
    Correct,
    /// The solution is wrong.
    Incorrect,
    /// The solution is unfinished, or the reply gave no assessment.
    Incomplete,
}

impl Assessment {
    /// `CORRECT`, `INCORRECT` or `INCOMPLETE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Assessment::Correct => "CORRECT",
            Assessment::Incorrect => "INCORRECT",
            Assessment::Incomplete => "INCOMPLETE",
        }
    }
}

/// A verifier's reply, read.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The assessment; [`Assessment::Incomplete`] when the reply states none.
    pub assessment: Assessment,
    /// The confidence the reply states, 1 to 10; `None` when it states none in range.
    pub confidence: Option<u8>,
    /// Whether the reply stated an assessment.
    pub parsed: bool,
}

/// The verdict of a verifier's reply.
///
/// The assessment is the first of the words CORRECT, INCORRECT and INCOMPLETE (any case, whole
/// words) on the first line that names an "assessment" or a "verdict" and gives exactly one of
/// them, so the echoed form `(CORRECT/INCORRECT/INCOMPLETE)` counts for none. Failing that, the
/// last of them written in capitals on a line that gives only one. Otherwise the reply states no
/// assessment: [`Assessment::Incomplete`], not parsed. (optillm reads "correct" anywhere unless
/// "incorrect" occurs anywhere, so an echoed template or "not incorrect" decides its verdict.)
///
/// The confidence is the first whole number from 1 to 10 after the word "confidence" on its
/// line, skipping a stated range such as `(1-10)`: "Confidence: 8/10", "confidence level
/// (1-10): 7" and "Confidence: 9 out of 10" give 8, 7 and 9.
///
/// ```
/// use mars::strategies::mars::{parse_verdict, Assessment};
///
/// let reply = "The code handles every case.\n\
///              - Overall assessment (CORRECT/INCORRECT/INCOMPLETE): CORRECT\n\
///              - Confidence level (1-10): 8/10";
/// let verdict = parse_verdict(reply);
/// assert_eq!((verdict.assessment, verdict.confidence, verdict.parsed), (Assessment::Correct, Some(8), true));
/// assert_eq!(parse_verdict("Overall assessment: INCORRECT, the loop is off by one.").assessment, Assessment::Incorrect);
/// assert!(!parse_verdict("It looks fine to me.").parsed);
/// ```
pub fn parse_verdict(reply: &str) -> Verdict {
    let labelled = reply.lines().find_map(|line| {
        let lower = line.to_lowercase();
        if !(lower.contains("assessment") || lower.contains("verdict")) {
            return None;
        }
        single(&words(line, false))
    });
    let capitals = || {
        reply
            .lines()
            .rev()
            .find_map(|line| single(&words(line, true)))
    };
    let assessment = labelled.or_else(capitals);
    Verdict {
        assessment: assessment.unwrap_or(Assessment::Incomplete),
        confidence: reply.lines().find_map(confidence_on),
        parsed: assessment.is_some(),
    }
}

/// The assessment words of `line`, in order: whole words, any case (or capitals only).
fn words(line: &str, capitals_only: bool) -> Vec<Assessment> {
    line.split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter_map(|word| {
            if capitals_only && word.chars().any(char::is_lowercase) {
                return None;
            }
            match word.to_uppercase().as_str() {
                "CORRECT" => Some(Assessment::Correct),
                "INCORRECT" => Some(Assessment::Incorrect),
                "INCOMPLETE" => Some(Assessment::Incomplete),
                _ => None,
            }
        })
        .collect()
}

/// The assessment of a line that gives exactly one distinct assessment after dropping an echoed
/// `CORRECT/INCORRECT/INCOMPLETE` list.
fn single(found: &[Assessment]) -> Option<Assessment> {
    let distinct: Vec<Assessment> = found.iter().fold(Vec::new(), |mut seen, a| {
        if !seen.contains(a) {
            seen.push(*a);
        }
        seen
    });
    match distinct.as_slice() {
        [one] => Some(*one),
        // The template echoed, then the answer: `(CORRECT/INCORRECT/INCOMPLETE): CORRECT`.
        [_, _, _] if found.len() == 4 => found.last().copied(),
        _ => None,
    }
}

/// The confidence a line states after the word "confidence", 1 to 10.
fn confidence_on(line: &str) -> Option<u8> {
    let lower = line.to_lowercase();
    let at = lower.find("confidence")? + "confidence".len();
    let rest = &lower[at..];
    let mut numbers = Vec::new();
    let mut current = String::new();
    let mut spans = Vec::new();
    for (i, c) in rest.char_indices() {
        if c.is_ascii_digit() {
            current.push(c);
        } else if !current.is_empty() {
            spans.push((i - current.len(), i));
            numbers.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        spans.push((rest.len() - current.len(), rest.len()));
        numbers.push(current);
    }
    for (k, (number, (start, end))) in numbers.iter().zip(&spans).enumerate() {
        // A range `1-10` or `1 to 10` states the scale, not the confidence.
        let after = rest[*end..].trim_start();
        let before = rest[..*start].trim_end();
        let opens_range = (after.starts_with('-') || after.starts_with("to "))
            && numbers.get(k + 1).is_some_and(|n| n == "10");
        let closes_range = (before.ends_with('-') || before.ends_with(" to"))
            && number == "10"
            && k > 0
            && numbers[k - 1] == "1";
        // The scale of a stated value: `8/10`, `9 out of 10`.
        let is_scale = number == "10" && (before.ends_with('/') || before.ends_with("out of"));
        if opens_range || closes_range || is_scale {
            continue;
        }
        return number.parse::<u8>().ok().filter(|n| (1..=10).contains(n));
    }
    None
}

/// optillm's heuristic confidence of a solution text, 0.1 to 1: 0.5, plus 0.2 for a
/// `\boxed{`, 0.1 each for "therefore" or "thus", for "proof", for more than 200 words and for
/// "let" with "assume"; minus 0.1 for "might" or "possibly" and 0.2 for "unsure" or "not sure".
/// It orders solutions where no verification says more (the population's trimming, the best of
/// several verified ones).
///
/// ```
/// use mars::strategies::mars::estimate_confidence;
///
/// assert_eq!(estimate_confidence("fn f() {}"), 0.5);
/// assert!((estimate_confidence("Therefore the answer is \\boxed{4}.") - 0.8).abs() < 1e-9);
/// ```
pub fn estimate_confidence(text: &str) -> f64 {
    let lower = text.to_lowercase();
    let has = |word: &str| lower.contains(word);
    let mut confidence: f64 = 0.5;
    if text.contains("\\boxed{") {
        confidence += 0.2;
    }
    if has("therefore") || has("thus") {
        confidence += 0.1;
    }
    if has("proof") {
        confidence += 0.1;
    }
    if text.split_whitespace().count() > 200 {
        confidence += 0.1;
    }
    if has("let") && has("assume") {
        confidence += 0.1;
    }
    if has("might") || has("possibly") {
        confidence -= 0.1;
    }
    if has("unsure") || has("not sure") {
        confidence -= 0.2;
    }
    (confidence * 1e9).round() / 1e9
}

/// A solution's strategy, as the extraction call states it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractedStrategy {
    /// `APPROACH:`, the kind of approach.
    pub approach: String,
    /// `KEY_INSIGHTS:`, comma separated.
    pub insights: Vec<String>,
    /// `TECHNIQUES:`, comma separated.
    pub techniques: Vec<String>,
    /// `PATTERN:`, the solution's pattern in a sentence.
    pub pattern: String,
}

impl ExtractedStrategy {
    /// The strategy an extraction reply states, from its `KEY: value` lines (keys in any case,
    /// `**` and list marks ignored); `None` when it states none of the four.
    ///
    /// ```
    /// use mars::strategies::mars::ExtractedStrategy;
    ///
    /// let reply = "APPROACH: two pointers\nKEY_INSIGHTS: sorted input, early exit\nPATTERN: scan once";
    /// let strategy = ExtractedStrategy::parse(reply).unwrap();
    /// assert_eq!(strategy.insights, ["sorted input", "early exit"]);
    /// assert!(ExtractedStrategy::parse("no idea").is_none());
    /// ```
    pub fn parse(reply: &str) -> Option<Self> {
        let mut strategy = ExtractedStrategy::default();
        let list = |value: &str| -> Vec<String> {
            value
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        for line in reply.lines() {
            let line = line.trim().trim_start_matches(['-', '*', ' ']);
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let key = key.trim().trim_matches('*').trim().to_lowercase();
            let value = value.trim().trim_matches('*').trim();
            if value.is_empty() {
                continue;
            }
            if key.contains("approach") {
                strategy.approach = value.to_owned();
            } else if key.contains("insight") {
                strategy.insights = list(value);
            } else if key.contains("technique") {
                strategy.techniques = list(value);
            } else if key.contains("pattern") {
                strategy.pattern = value.to_owned();
            }
        }
        (strategy != ExtractedStrategy::default()).then_some(strategy)
    }
}
