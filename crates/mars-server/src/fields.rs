//! Reading request bodies field by field, so that every rejection names its field: typed
//! getters over a JSON object, shared by both front ends.

use mars::{ChatRequest, Message, Role, SamplingOptions};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// A request body: a JSON object, kept whole so that a relay can forward it unchanged.
pub type Body = Map<String, Value>;

/// Parses `bytes` as a JSON object; malformed JSON or another type is a 400.
pub fn parse_body(bytes: &[u8]) -> Result<Body, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request(
            "the request body must be a JSON object",
        )),
        Err(err) => Err(ApiError::bad_request(format!(
            "the request body is not valid JSON: {err}"
        ))),
    }
}

/// The core request from a wire's messages in order, shared by both front ends: a system
/// message first becomes the request's system prompt (a later one stays a turn), and at least
/// one user message is required.
pub fn chat_request(
    mut turns: Vec<Message>,
    options: SamplingOptions,
) -> Result<ChatRequest, ApiError> {
    let system = match turns.first() {
        Some(first) if first.role == Role::System => Some(turns.remove(0).content),
        _ => None,
    };
    if !turns.iter().any(|m| m.role == Role::User) {
        return Err(ApiError::bad_field(
            "messages",
            "`messages` has no user message",
        ));
    }
    Ok(ChatRequest {
        system,
        messages: turns,
        options,
    })
}

fn wrong(field: &str, want: &str, got: &Value) -> ApiError {
    let kind = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    ApiError::bad_field(field, format!("`{field}` must be {want}, not {kind}"))
}

/// A present, non-null field.
pub fn present<'a>(body: &'a Body, field: &str) -> Option<&'a Value> {
    body.get(field).filter(|v| !v.is_null())
}

/// A required string.
pub fn string(body: &Body, field: &str) -> Result<String, ApiError> {
    match present(body, field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None => {
            Err(ApiError::bad_field(field, format!("`{field}` is required")))
        }
        Some(other) => Err(wrong(field, "a string", other)),
    }
}

/// An optional string.
pub fn opt_string(body: &Body, field: &str) -> Result<Option<String>, ApiError> {
    match present(body, field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong(field, "a string", other)),
    }
}

/// An optional boolean.
pub fn opt_bool(body: &Body, field: &str) -> Result<Option<bool>, ApiError> {
    match present(body, field) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong(field, "a boolean", other)),
    }
}

/// An optional finite number as `f32`.
pub fn opt_f32(body: &Body, field: &str) -> Result<Option<f32>, ApiError> {
    match present(body, field) {
        None => Ok(None),
        Some(v @ Value::Number(n)) => n
            .as_f64()
            .filter(|x| x.is_finite())
            .map(|x| Some(x as f32))
            .ok_or_else(|| wrong(field, "a finite number", v)),
        Some(other) => Err(wrong(field, "a number", other)),
    }
}

/// An optional non-negative integer.
pub fn opt_u64(body: &Body, field: &str) -> Result<Option<u64>, ApiError> {
    match present(body, field) {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_i64()) {
            (Some(x), _) => Ok(Some(x)),
            (None, Some(_)) => Err(ApiError::bad_field(
                field,
                format!("`{field}` must not be negative"),
            )),
            _ => Err(ApiError::bad_field(
                field,
                format!("`{field}` must be a whole number"),
            )),
        },
        Some(other) => Err(wrong(field, "a non-negative integer", other)),
    }
}

/// An optional integer that fits `u32`.
pub fn opt_u32(body: &Body, field: &str) -> Result<Option<u32>, ApiError> {
    opt_u64(body, field)?
        .map(|x| {
            u32::try_from(x)
                .map_err(|_| ApiError::bad_field(field, format!("`{field}` is too large")))
        })
        .transpose()
}

/// A seed: any integer (a negative one is taken modulo 2^64, as llama.cpp's `-1` means random
/// there and here is simply another seed).
pub fn opt_seed(body: &Body, field: &str) -> Result<Option<u64>, ApiError> {
    match present(body, field) {
        None => Ok(None),
        Some(v @ Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_i64().map(|x| x as u64))
            .map(Some)
            .ok_or_else(|| wrong(field, "an integer", v)),
        Some(other) => Err(wrong(field, "an integer", other)),
    }
}

/// `stop`: a string or an array of strings.
pub fn stop(body: &Body, field: &str) -> Result<Vec<String>, ApiError> {
    match present(body, field) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(wrong(field, "a string or an array of strings", other)),
            })
            .collect(),
        Some(other) => Err(wrong(field, "a string or an array of strings", other)),
    }
}

/// An optional object.
pub fn opt_object<'a>(body: &'a Body, field: &str) -> Result<Option<&'a Body>, ApiError> {
    match present(body, field) {
        None => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(other) => Err(wrong(field, "an object", other)),
    }
}

/// Whether any message (or `prompt`, `system`) carries an `<optillm_approach>` tag, which
/// asks for a strategy even when the model names none.
pub fn has_tag(body: &Body) -> bool {
    const TAG: &str = "<optillm_approach>";
    let in_messages = body
        .get("messages")
        .and_then(Value::as_array)
        .is_some_and(|messages| {
            messages.iter().any(|m| {
                m.get("content")
                    .is_some_and(|c| c.to_string().contains(TAG))
            })
        });
    in_messages
        || ["prompt", "system"].iter().any(|field| {
            body.get(*field)
                .and_then(Value::as_str)
                .is_some_and(|t| t.contains(TAG))
        })
}

/// The first of `fields` that is present with a value a strategy cannot honour: 400 naming it.
pub fn refuse_unmodelled(body: &Body, fields: &[&str], why: &str) -> Result<(), ApiError> {
    for field in fields {
        let set = match present(body, field) {
            None | Some(Value::Bool(false)) => false,
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(o)) => {
                // `response_format: {"type": "text"}` asks for nothing special.
                !(o.is_empty() || o.get("type").and_then(Value::as_str) == Some("text"))
            }
            Some(Value::String(s)) => !(s.is_empty() || s == "none" || s == "auto"),
            Some(Value::Number(n)) => n.as_f64() != Some(0.0),
            Some(Value::Bool(true)) => true,
            Some(Value::Null) => false,
        };
        if set {
            return Err(ApiError::bad_field(
                *field,
                format!("`{field}` cannot be honoured {why}; send it without a strategy"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Body {
        match v {
            Value::Object(m) => m,
            _ => Body::new(),
        }
    }

    #[test]
    fn rejections_name_the_field() {
        let b = body(json!({"max_tokens": -1, "n": "2", "temperature": true, "stop": [1]}));
        assert!(
            opt_u32(&b, "max_tokens")
                .unwrap_err()
                .message
                .contains("negative")
        );
        assert_eq!(opt_u32(&b, "n").unwrap_err().param.as_deref(), Some("n"));
        assert_eq!(
            opt_f32(&b, "temperature").unwrap_err().param.as_deref(),
            Some("temperature")
        );
        assert_eq!(stop(&b, "stop").unwrap_err().param.as_deref(), Some("stop"));
        assert_eq!(
            string(&b, "model").unwrap_err().param.as_deref(),
            Some("model")
        );
    }

    #[test]
    fn values_are_read() {
        let b = body(json!({"max_tokens": 5, "seed": -1, "stop": "x", "temperature": 0.5}));
        assert_eq!(opt_u32(&b, "max_tokens").unwrap(), Some(5));
        assert_eq!(opt_seed(&b, "seed").unwrap(), Some(u64::MAX));
        assert_eq!(stop(&b, "stop").unwrap(), vec!["x".to_owned()]);
        assert_eq!(opt_f32(&b, "temperature").unwrap(), Some(0.5));
        assert!(parse_body(b"[1]").is_err());
        assert!(
            parse_body(b"{")
                .unwrap_err()
                .message
                .contains("not valid JSON")
        );
    }

    #[test]
    fn unmodelled_fields_are_refused_only_when_set() {
        let set =
            body(json!({"tools": [{"type": "function"}], "response_format": {"type": "text"}}));
        let err =
            refuse_unmodelled(&set, &["response_format", "tools"], "by a strategy").unwrap_err();
        assert_eq!(err.param.as_deref(), Some("tools"));
        let unset =
            body(json!({"tools": [], "response_format": {"type": "text"}, "logprobs": false}));
        refuse_unmodelled(&unset, &["tools", "response_format", "logprobs"], "x").unwrap();
    }
}
