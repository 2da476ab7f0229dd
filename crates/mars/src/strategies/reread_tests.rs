use super::*;
use crate::Error;
use crate::client::Message;

#[test]
fn prompt_states_the_question_twice() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "What is 2 + 2?",
            "Read the question again:",
            "What is 2 + 2?\nRead the question again: What is 2 + 2?",
        ),
        ("Q", "Again:", "Q\nAgain: Q"),
        ("two\nlines", "R:", "two\nlines\nR: two\nlines"),
    ];
    for &(question, instruction, expected) in cases {
        assert_eq!(reread_prompt(question, instruction), expected);
    }
}

#[test]
fn only_the_last_user_message_is_rewritten() {
    let request = ChatRequest {
        system: Some("sys".into()),
        messages: vec![
            Message::user("first"),
            Message::assistant("reply"),
            Message::user("second"),
        ],
        ..ChatRequest::default()
    };
    let rewritten = reread_request(request.clone(), "Again:").unwrap();
    assert_eq!(rewritten.system, request.system);
    assert_eq!(rewritten.messages[..2], request.messages[..2]);
    assert_eq!(rewritten.messages[2].content, "second\nAgain: second");
}

#[test]
fn a_request_without_user_message_is_refused() {
    let request = ChatRequest {
        messages: vec![Message::assistant("hi")],
        ..ChatRequest::default()
    };
    let err = reread_request(request, "Again:").unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
}

#[test]
fn blank_instruction_is_rejected() {
    let config = ReReadConfig {
        instruction: "  ".into(),
    };
    let err = ReRead::new(crate::ScriptedClient::new([]), config).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "instruction",
                ..
            }
        ),
        "{err:?}"
    );
}
