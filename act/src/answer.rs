//! The model's answer (DESIGN §5): one JSON object with a fixed schema, parsed strictly.
//! The answer must be a bare JSON object: its first non-whitespace character opens the first
//! complete JSON value, and only whitespace may follow that value. Answers wrapped in code
//! fences, with prose around them, with two JSON blocks, truncated, or with wrong types are
//! rejected with a reason, and the workflow falls back to the statistical explainer, never to
//! an action: an answer that does not follow the output contract may have been steered by the
//! untrusted log text in the prompt, so none of it is trusted.
//!
//! Schema (every field required, no others):
//!
//! ```json
//! {"classification": "FAILURE" | "TAMPERING" | "ANOMALY" | "NORMAL",
//!  "confidence": 0.0..=1.0,
//!  "severity": 1..=10,
//!  "reasoning": "non-empty text",
//!  "recommended_action": "<an allowed action>" | "none" | null,
//!  "predicted_impact": "text"}
//! ```

use crate::text::truncate_utf8;
use aiops_core::Classification;
use serde_json::Value;
use thiserror::Error;

/// Largest answer text examined, bytes; a longer answer is rejected (`max_tokens` bounds a
/// real answer far below this).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How many `{` positions are tried before giving up on finding a JSON object.
pub const MAX_OBJECT_STARTS: usize = 64;
/// Longest `reasoning` / `predicted_impact` kept, bytes (cut on a character boundary).
pub const MAX_PROSE_BYTES: usize = 4096;
/// Longest action name accepted, bytes.
pub const MAX_ACTION_BYTES: usize = 64;

/// The schema's field names, in the order the prompt lists them.
pub const FIELDS: [&str; 6] = [
    "classification",
    "confidence",
    "severity",
    "reasoning",
    "recommended_action",
    "predicted_impact",
];

/// A schema-valid answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelAnswer {
    /// Classification.
    pub classification: Classification,
    /// Confidence in [0, 1].
    pub confidence: f64,
    /// Severity 1..=10.
    pub severity: u8,
    /// Reasoning (at most [`MAX_PROSE_BYTES`]).
    pub reasoning: String,
    /// The recommended action, `None` for `"none"` or `null`. Not yet checked against the
    /// allowlist: the workflow does that, and records a rejection.
    pub action: Option<String>,
    /// Predicted impact (at most [`MAX_PROSE_BYTES`]).
    pub predicted_impact: String,
}

/// Why an answer was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AnswerError {
    /// The model stopped before finishing (`stopReason` `max_tokens`, or a JSON value that
    /// ends early).
    #[error("truncated ({0})")]
    Truncated(String),
    /// No JSON object in the text.
    #[error("no JSON object in the answer")]
    NoJson,
    /// Longer than [`MAX_ANSWER_BYTES`].
    #[error("answer of {0} bytes is longer than {MAX_ANSWER_BYTES}")]
    TooLong(usize),
    /// The first JSON object does not match the schema.
    #[error("schema: {0}")]
    Schema(String),
    /// The model did not answer with text (stop reason given).
    #[error("no usable text (stopReason {0})")]
    NoText(String),
    /// The answer is not a bare JSON object: text (a code fence, prose, a second value)
    /// precedes or follows it.
    #[error("not a bare JSON object: {0}")]
    NotBare(String),
}

/// The first complete JSON object in `text`: the object starting at the first `{` from which
/// a JSON value parses; a `{` that starts prose (a syntax error) is skipped; a value that
/// runs to the end of the text unfinished is [`AnswerError::Truncated`].
///
/// # Errors
/// [`AnswerError::TooLong`], [`AnswerError::NoJson`], [`AnswerError::Truncated`].
pub fn first_json_object(text: &str) -> Result<(Value, usize), AnswerError> {
    if text.len() > MAX_ANSWER_BYTES {
        return Err(AnswerError::TooLong(text.len()));
    }
    for (pos, _) in text.match_indices('{').take(MAX_OBJECT_STARTS) {
        let rest = text.get(pos..).unwrap_or_default();
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        match stream.next() {
            Some(Ok(v)) if v.is_object() => {
                let end = pos + stream.byte_offset();
                return Ok((v, end));
            }
            Some(Err(e)) if e.is_eof() => {
                return Err(AnswerError::Truncated(format!(
                    "the JSON object starting at byte {pos} is unfinished"
                )));
            }
            _ => continue,
        }
    }
    Err(AnswerError::NoJson)
}

/// Parses and validates the model's text. `truncated` is the `stopReason == max_tokens`
/// flag: a truncated answer is rejected even when its object happens to be complete. The text,
/// without leading and trailing whitespace, must be exactly one JSON object (see the module
/// documentation).
///
/// # Errors
/// [`AnswerError`] naming the first problem: [`AnswerError::NotBare`] for fenced or
/// prose-wrapped answers and for a second value after the first.
pub fn parse_answer(text: &str, truncated: bool) -> Result<ModelAnswer, AnswerError> {
    if truncated {
        return Err(AnswerError::Truncated("stopReason max_tokens".into()));
    }
    if text.len() > MAX_ANSWER_BYTES {
        return Err(AnswerError::TooLong(text.len()));
    }
    let body = text.trim();
    if !body.starts_with('{') {
        // Say why: a fence or prose before an object, or no object at all.
        return match first_json_object(body) {
            Ok((_, _)) | Err(AnswerError::Truncated(_)) => Err(AnswerError::NotBare(
                "text before the JSON object (code fence or prose)".into(),
            )),
            Err(e) => Err(e),
        };
    }
    let (value, end) = first_json_object(body)?;
    if end != 0 && !body.get(end..).unwrap_or_default().trim().is_empty() {
        return Err(AnswerError::NotBare(
            "text after the JSON object (code fence, prose or a second value)".into(),
        ));
    }
    validate(&value)
}

/// Checks one JSON value against the schema.
///
/// # Errors
/// [`AnswerError::Schema`] naming the first field that is missing, unknown, of the wrong type
/// or out of range.
pub fn validate(value: &Value) -> Result<ModelAnswer, AnswerError> {
    let bad = |m: String| Err(AnswerError::Schema(m));
    let Some(obj) = value.as_object() else {
        return bad("not an object".into());
    };
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return bad(format!(
            "unknown field {:?}",
            truncate_utf8(k, MAX_ACTION_BYTES)
        ));
    }
    if let Some(f) = FIELDS.iter().find(|f| !obj.contains_key(**f)) {
        return bad(format!("missing field {f:?}"));
    }
    let classification = match obj.get("classification").and_then(Value::as_str) {
        Some("FAILURE") => Classification::Failure,
        Some("TAMPERING") => Classification::Tampering,
        Some("ANOMALY") => Classification::Anomaly,
        Some("NORMAL") => Classification::Normal,
        Some(other) => {
            return bad(format!(
                "classification {:?} is not FAILURE, TAMPERING, ANOMALY or NORMAL",
                truncate_utf8(other, MAX_ACTION_BYTES)
            ));
        }
        None => return bad("classification is not a string".into()),
    };
    let confidence = match obj.get("confidence") {
        Some(Value::Number(n)) => match n.as_f64() {
            Some(c) if c.is_finite() && (0.0..=1.0).contains(&c) => c,
            _ => return bad(format!("confidence {n} is outside 0..=1")),
        },
        _ => return bad("confidence is not a number".into()),
    };
    let severity = match obj.get("severity") {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(s @ 1..=10) => s as u8,
            _ => return bad(format!("severity {n} is not an integer in 1..=10")),
        },
        _ => return bad("severity is not a number".into()),
    };
    let reasoning = match obj.get("reasoning").and_then(Value::as_str) {
        Some(r) if !r.trim().is_empty() => truncate_utf8(r.trim(), MAX_PROSE_BYTES),
        Some(_) => return bad("reasoning is empty".into()),
        None => return bad("reasoning is not a string".into()),
    };
    let action = match obj.get("recommended_action") {
        Some(Value::Null) => None,
        Some(Value::String(a)) if a.eq_ignore_ascii_case("none") => None,
        Some(Value::String(a)) => {
            let valid = !a.is_empty()
                && a.len() <= MAX_ACTION_BYTES
                && a.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            if !valid {
                return bad(format!(
                    "recommended_action {:?} is not an action name ([a-z_]{{1,64}})",
                    truncate_utf8(a, MAX_ACTION_BYTES)
                ));
            }
            Some(a.clone())
        }
        _ => return bad("recommended_action is not a string or null".into()),
    };
    let predicted_impact = match obj.get("predicted_impact").and_then(Value::as_str) {
        Some(p) => truncate_utf8(p.trim(), MAX_PROSE_BYTES),
        None => return bad("predicted_impact is not a string".into()),
    };
    Ok(ModelAnswer {
        classification,
        confidence,
        severity,
        reasoning,
        action,
        predicted_impact,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"classification":"FAILURE","confidence":0.93,"severity":8,"reasoning":"Parameter deleted by a human.","recommended_action":"restore","predicted_impact":"App cannot read its DB password."}"#;

    fn good() -> ModelAnswer {
        ModelAnswer {
            classification: Classification::Failure,
            confidence: 0.93,
            severity: 8,
            reasoning: "Parameter deleted by a human.".into(),
            action: Some("restore".into()),
            predicted_impact: "App cannot read its DB password.".into(),
        }
    }

    #[test]
    fn only_bare_answers_parse() {
        assert_eq!(parse_answer(GOOD, false).unwrap(), good());
        assert_eq!(
            parse_answer(&format!("\n  {GOOD}\n"), false).unwrap(),
            good()
        );
        let fenced = format!("```json\n{GOOD}\n```");
        assert_eq!(
            parse_answer(&fenced, false).unwrap_err().to_string(),
            "not a bare JSON object: text before the JSON object (code fence or prose)"
        );
        let prose = format!("Sure! Here is my analysis:\n\n{GOOD}");
        assert_eq!(
            parse_answer(&prose, false).unwrap_err().to_string(),
            "not a bare JSON object: text before the JSON object (code fence or prose)"
        );
        let trailing = format!("{GOOD}\nLet me know if {{anything}} else.");
        assert_eq!(
            parse_answer(&trailing, false).unwrap_err().to_string(),
            "not a bare JSON object: text after the JSON object (code fence, prose or a second value)"
        );
    }

    #[test]
    fn a_second_block_rejects_the_answer() {
        let second = GOOD.replace("restore", "recreate").replace("0.93", "0.99");
        let text = format!("{GOOD}\n```json\n{second}\n```");
        assert_eq!(
            parse_answer(&text, false).unwrap_err(),
            AnswerError::NotBare(
                "text after the JSON object (code fence, prose or a second value)".into()
            )
        );
        assert!(parse_answer(&format!("{GOOD} {GOOD}"), false).is_err());
    }

    #[test]
    fn truncated_answers_are_rejected() {
        let cut = &GOOD[..GOOD.len() - 20];
        assert_eq!(
            parse_answer(cut, false).unwrap_err(),
            AnswerError::Truncated("the JSON object starting at byte 0 is unfinished".into())
        );
        assert_eq!(
            parse_answer(GOOD, true).unwrap_err(),
            AnswerError::Truncated("stopReason max_tokens".into())
        );
    }

    #[test]
    fn wrong_types_and_ranges_are_rejected() {
        let cases = [
            (
                GOOD.replace("0.93", "\"0.93\""),
                "schema: confidence is not a number",
            ),
            (
                GOOD.replace("0.93", "1.5"),
                "schema: confidence 1.5 is outside 0..=1",
            ),
            (
                GOOD.replace("\"severity\":8", "\"severity\":8.5"),
                "schema: severity 8.5 is not an integer in 1..=10",
            ),
            (
                GOOD.replace("\"severity\":8", "\"severity\":0"),
                "schema: severity 0 is not an integer in 1..=10",
            ),
            (
                GOOD.replace("FAILURE", "failure"),
                "schema: classification \"failure\" is not FAILURE, TAMPERING, ANOMALY or NORMAL",
            ),
            (
                GOOD.replace("\"restore\"", "[\"restore\"]"),
                "schema: recommended_action is not a string or null",
            ),
            (
                GOOD.replace("\"restore\"", "\"rm -rf /\""),
                "schema: recommended_action \"rm -rf /\" is not an action name ([a-z_]{1,64})",
            ),
            (
                GOOD.replace("\"predicted_impact\"", "\"impact\""),
                "schema: unknown field \"impact\"",
            ),
            (
                GOOD.replace(",\"severity\":8", ""),
                "schema: missing field \"severity\"",
            ),
            (
                GOOD.replace("Parameter deleted by a human.", "  "),
                "schema: reasoning is empty",
            ),
            ("[1, 2, 3]".to_string(), "no JSON object in the answer"),
            (
                "I cannot help with that.".to_string(),
                "no JSON object in the answer",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                parse_answer(&text, false).unwrap_err().to_string(),
                expected,
                "{text}"
            );
        }
    }

    #[test]
    fn none_and_null_mean_no_action() {
        let a = parse_answer(&GOOD.replace("\"restore\"", "\"none\""), false).unwrap();
        assert_eq!(a.action, None);
        let a = parse_answer(&GOOD.replace("\"restore\"", "null"), false).unwrap();
        assert_eq!(a.action, None);
    }

    #[test]
    fn oversized_answers_are_rejected() {
        let big = "x".repeat(MAX_ANSWER_BYTES + 1);
        assert_eq!(
            parse_answer(&big, false).unwrap_err(),
            AnswerError::TooLong(MAX_ANSWER_BYTES + 1)
        );
    }
}
