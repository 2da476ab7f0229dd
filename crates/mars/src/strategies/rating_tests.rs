use super::*;
use crate::client::Role;

#[test]
fn ratings_are_read_from_replies() {
    let cases: &[(&str, Option<f64>)] = &[
        ("7", Some(7.0)),
        (" 8.5 \n", Some(8.5)),
        ("10", Some(10.0)),
        ("0", Some(0.0)),
        ("Rating: 9/10", Some(9.0)),
        ("**6**", Some(6.0)),
        ("I would rate this response 7 out of 10.", Some(7.0)),
        ("On a scale from 0 to 10, this gets a 4.", Some(4.0)),
        ("On a scale of 1-10: 3", Some(3.0)),
        ("Score: 5 (it has 2 bugs)", Some(5.0)),
        ("The code has 12 lines and 3 bugs. Rating: 4", Some(4.0)),
        ("It handles 2 cases. 6/10", Some(6.0)),
        (
            "8\n\nThe answer is good but misses 2 edge cases.",
            Some(8.0),
        ),
        ("10/10!", Some(10.0)),
        ("7.5/10", Some(7.5)),
        ("11/10 would buy again, 9", Some(9.0)),
        ("I'd give it 8 out of 10", Some(8.0)),
        // `rate` inside `accurate` is not the keyword.
        ("7. It is accurate in 2 places", Some(7.0)),
        ("Mostly accurate; rating 7 (2 small issues)", Some(7.0)),
    ];
    for &(reply, expected) in cases {
        assert_eq!(parse_rating(reply), expected, "{reply:?}");
    }
}

#[test]
fn junk_gives_no_rating() {
    for reply in [
        "",
        "   ",
        "eight",
        "I cannot rate this.",
        "15",
        "-3",
        "NaN",
        "100/100",
        "on a scale from 0 to 10",
        "```rust\nfn f() -> u64 { 42 }\n```",
    ] {
        assert_eq!(parse_rating(reply), None, "{reply:?}");
    }
}

#[test]
fn judge_request_appends_candidate_and_instruction() {
    let request = ChatRequest::new("Write add").with_system("You write Rust.");
    let options = SamplingOptions {
        temperature: Some(0.0),
        ..SamplingOptions::default()
    };
    let judge = judge_request(&request, "fn add() {}", "Rate it.", options.clone());
    assert_eq!(judge.system.as_deref(), Some("You write Rust."));
    let roles: Vec<Role> = judge.messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::User, Role::Assistant, Role::User]);
    assert_eq!(judge.messages[1].content, "fn add() {}");
    assert_eq!(judge.last_user_message(), Some("Rate it."));
    assert_eq!(judge.options, options);
}
