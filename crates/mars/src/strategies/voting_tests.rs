use super::*;

#[test]
fn text_normalisation() {
    let cases: &[(&str, &str)] = &[
        ("The answer is 4.", "the answer is 4"),
        ("  the   ANSWER\nis 4 !", "the answer is 4"),
        ("Paris", "paris"),
        ("...", ""),
        ("", ""),
    ];
    for &(text, expected) in cases {
        assert_eq!(normalise_text(text), expected, "{text:?}");
    }
}

#[test]
fn auto_key_uses_code_when_there_is_a_block() {
    let a = "Sure!\n```rust\nfn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n```";
    let b = "Here you go:\n```\n// add\nfn add(a: i32, b: i32) -> i32 { \n a + b\n}\n```\nDone.";
    assert_eq!(AnswerKey::Auto.key(a), AnswerKey::Auto.key(b));
    assert_ne!(AnswerKey::Text.key(a), AnswerKey::Text.key(b));
    assert_eq!(AnswerKey::Auto.key("Four."), "four");
    assert_eq!(AnswerKey::Code.key("x  =  1"), "x = 1");
    let custom = AnswerKey::Custom(Arc::new(|s: &str| s.len().to_string()));
    assert_eq!(custom.key("abc"), "3");
}

#[test]
fn final_answer_prefers_boxed_then_code_then_marker_then_last_line() {
    let cases: &[(&str, &str)] = &[
        // A boxed value wins wherever it is, the last one first; nested braces are kept.
        ("So 2 + 2 = 4, and \\boxed{4}.", "4"),
        (
            "\\boxed{3} is wrong; \\boxed{ 4 } is right. The answer is 5.",
            "4",
        ),
        ("$\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}"),
        // An unclosed or empty box is passed over.
        ("\\boxed{7} then \\boxed{8", "7"),
        ("\\boxed{} The answer is 6.", "6"),
        // A box wins over a code block, before or after it.
        ("Check:\n```python\nprint(2 + 2)\n```\nSo \\boxed{4}.", "4"),
        ("\\boxed{4}\n```\nx = 4\n```", "4"),
        // Without a box, the first code block, verbatim, wins over a marker.
        ("```python\nx = 1\n```\nThe answer is 1.", "x = 1\n"),
        ("```a\n```\n```b\nsecond\n```", ""),
        // Answer markers, any case, to the end of their line.
        ("Adding them.\nThe answer is 4.\nHope that helps!", "4"),
        ("**Final Answer:** Paris", "Paris"),
        ("answer: 12\nANSWER: 13", "13"),
        ("Answer:4", "4"),
        ("The final answer is: $x = 3$.", "x = 3"),
        ("The answer is:\n\n  42\n", "42"),
        // Not a marker: part of a longer word.
        ("The answer isn't obvious.\nIt is 9", "It is 9"),
        // Otherwise the last non-empty line.
        ("Let me think.\n5\n\n", "5"),
        ("**5**", "5"),
        // Empty: blank text, or only marks that are trimmed.
        ("", ""),
        ("  \n \n", ""),
        ("...", ""),
        ("**\n!\n", ""),
        // A marker with nothing after it falls through to the last line.
        ("The answer is ...", "The answer is"),
        // Multibyte text.
        ("答案: answer is 四", "四"),
        ("答案：四", "答案：四"),
        ("Ответ: \\boxed{π}", "π"),
        ("The answer is: ñandú!", "ñandú"),
        ("é\n**ü**\n", "ü"),
        ("```\nprint('日本')\n```", "print('日本')\n"),
    ];
    for &(text, expected) in cases {
        assert_eq!(final_answer(text), expected, "{text:?}");
    }
}

#[test]
fn final_answer_key_agrees_across_wordings_and_keeps_code_keys() {
    let key = |text: &str| AnswerKey::FinalAnswer.key(text);
    assert_eq!(key("The answer is 4."), "4");
    assert_eq!(key("Working...\n\\boxed{4}"), "4");
    assert_eq!(key("so:\nFOUR"), "four");
    let a = "The answer is below.\n```rust\nfn f() -> u8 {\n    4\n}\n```";
    let b = "```\n// f\nfn f() -> u8 { 4 }\n```";
    assert_eq!(key(a), key(b));
    assert_eq!(key(a), AnswerKey::Auto.key(a));
    // A maths reply that shows its working as code still votes on its boxed answer.
    let worked = "Check:\n```python\nprint(2 + 2)\n```\nSo \\boxed{4}.";
    assert_eq!(key(worked), "4");
    assert_eq!(key(worked), key("The answer is 4."));
    assert_ne!(key(worked), AnswerKey::Auto.key(worked));
    // Junk gives an empty key, which loses every vote against a real answer.
    assert_eq!(key("..."), "");
    assert_eq!(key(" \n"), "");
    assert_eq!(key("```\n// nothing yet\n```"), "");
    assert_eq!(key("答案: answer is 四。"), "四。");
    assert_eq!(key("ANSWER: Ñandú"), "ñandú");
}

#[test]
fn majority_picks_the_most_common_key_with_deterministic_ties() {
    type Case<'a> = (&'a [Option<&'a str>], Option<(usize, &'a [usize])>);
    let cases: &[Case] = &[
        (&[], None),
        (&[None, None], None),
        (&[Some("a")], Some((0, &[1]))),
        (&[Some("a"), Some("b"), Some("b")], Some((1, &[1, 2, 2]))),
        // A tie goes to the key seen first, represented by its first occurrence.
        (
            &[Some("b"), Some("a"), Some("a"), Some("b")],
            Some((0, &[2, 2, 2, 2])),
        ),
        (&[Some("a"), Some("b"), Some("c")], Some((0, &[1, 1, 1]))),
        // Dropped answers do not vote.
        (
            &[None, Some("x"), None, Some("y"), Some("y")],
            Some((3, &[0, 1, 0, 2, 2])),
        ),
        // Empty answers lose to any real answer, even outnumbering it.
        (&[Some(""), Some(""), Some("z")], Some((2, &[2, 2, 1]))),
        (&[Some(""), Some("")], Some((0, &[2, 2]))),
    ];
    for &(keys, expected) in cases {
        let got = majority(keys).map(|t| (t.winner, t.votes));
        let expected = expected.map(|(w, v)| (w, v.to_vec()));
        assert_eq!(got, expected, "{keys:?}");
    }
}
