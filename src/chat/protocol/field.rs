//! Naming the field a refusal is about, when serde does not.

use serde::Deserialize;

use super::ClientMsg;

/// serde names a missing or unknown field, but not the field whose value
/// has the wrong type or range (`"minutes":"5"` gives only "invalid type:
/// string \"5\", expected u64"): an internally tagged enum is read from a
/// buffer that forgets the key. So on that error path (only), find the
/// field by taking each one out in turn: the one whose absence changes
/// the error (it goes away, or becomes "missing field", or another bad
/// field's) is the one serde stopped at. serde reads the fields in order
/// and checks for missing ones only at the end, so taking out a good field
/// leaves the error as it was.
pub(super) fn name_the_field(value: &serde_json::Value, error: serde_json::Error) -> String {
    let message = error.to_string();
    let Some(object) = value.as_object() else {
        return message;
    };
    if message.contains("field `") {
        return message;
    }
    for key in object.keys().filter(|k| *k != "type") {
        let mut without = object.clone();
        without.remove(key);
        let changed = match ClientMsg::deserialize(&serde_json::Value::Object(without)) {
            Ok(_) => true,
            Err(e) => e.to_string() != message,
        };
        if changed {
            return format!("field `{key}`: {message}");
        }
    }
    message
}
