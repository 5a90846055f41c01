//! The `Status` objects sent on the error channel/stream when a remote command ends.
//!
//! kubectl decides its own exit code from this message: `Success` exits 0; `Failure` with
//! reason `NonZeroExitCode` and a cause `{reason: ExitCode, message: "N"}` exits N; any other
//! failure is printed as an error. The shapes below match what the kubelet sends (plain
//! `metav1.Status` JSON without `kind`/`apiVersion`).

use serde_json::{json, Value};

/// `{"metadata":{},"status":"Success"}`.
pub fn success() -> Value {
    json!({"metadata": {}, "status": "Success"})
}

/// The status for a command that exited with `code` (non-zero; 0 gives [`success`]).
pub fn exit_code(command: &[String], code: i32) -> Value {
    if code == 0 {
        return success();
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// A failure that is not an exit code (the command could not be started, ...).
pub fn failure(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
    })
}

/// Reads the exit code back out of an error-channel status, as kubectl does: `Some(0)` for
/// success, `Some(n)` for `NonZeroExitCode`, `None` for anything else.
pub fn parse_exit_code(status: &[u8]) -> Option<i32> {
    let v: Value = serde_json::from_slice(status).ok()?;
    match v.get("status")?.as_str()? {
        "Success" => Some(0),
        "Failure" if v.get("reason")?.as_str()? == "NonZeroExitCode" => v
            .pointer("/details/causes")?
            .as_array()?
            .iter()
            .find(|c| c.get("reason").and_then(Value::as_str) == Some("ExitCode"))?
            .get("message")?
            .as_str()?
            .parse()
            .ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_round_trip_through_status() {
        let cmd = vec!["sh".to_owned(), "-c".to_owned(), "exit 3".to_owned()];
        for code in [0, 1, 3, 127, 255] {
            let s = serde_json::to_vec(&exit_code(&cmd, code)).unwrap();
            assert_eq!(parse_exit_code(&s), Some(code));
        }
        let s = serde_json::to_vec(&failure("boom")).unwrap();
        assert_eq!(parse_exit_code(&s), None);
    }

    #[test]
    fn non_zero_status_matches_the_kubelet_shape() {
        let v = exit_code(&["false".to_owned()], 1);
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [false], exit code 1","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"1"}]}}"#
        );
    }
}
