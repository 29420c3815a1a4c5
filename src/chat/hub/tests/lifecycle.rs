//! Edits, deletes, reactions and replies through the hub, on the memory
//! backend (which checks them as the stores do).

use serde_json::{Value, json};

use super::{frames, hub, in_general, rt};

/// Edits, reactions and deletes are events of their own: they reach the
/// room in id order like messages, acked to their writer; a refused one
/// reaches only its writer, naming its `client_id`, and takes no id.
#[test]
fn lifecycle_events_fan_out_in_id_order_and_refusals_reach_only_their_writer() {
    let (hub, memory) = hub();
    let [alice, bob] = in_general(&hub, ["alice", "bob"]);
    hub.post(&alice, "general", "hello", "m1").unwrap();
    memory.commit();
    frames(&alice);
    frames(&bob);
    let room = Some("general");
    hub.edit(&alice, room, None, 1, "hello!", Some("e1"))
        .unwrap();
    hub.react(&bob, room, None, 1, "👍", Some("r1")).unwrap();
    hub.edit(&bob, room, None, 1, "mine", Some("e2")).unwrap();
    hub.delete(&alice, room, None, 7, None).unwrap();
    hub.delete(&alice, room, None, 1, None).unwrap();
    hub.react(&alice, None, Some("bob"), 1, "👍", Some("r2"))
        .unwrap();
    memory.commit();
    let seen = frames(&bob);
    let shape: Vec<(String, u64)> = seen
        .iter()
        .map(|f| {
            let id = f.get("event_id").unwrap_or(&f["id"]);
            (
                f["type"].as_str().unwrap().to_owned(),
                id.as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("edited".into(), 2),
            ("reaction".into(), 3),
            ("ack".into(), 3),
            ("error".into(), 0),
            ("deleted".into(), 4),
        ]
    );
    assert_eq!(seen[1]["users"], json!(["bob"]));
    assert_eq!(
        (seen[3]["code"].as_str(), seen[3]["client_id"].as_str()),
        (Some("not_author"), Some("e2"))
    );
    let errors: Vec<_> = frames(&alice)
        .into_iter()
        .filter(|f| f["type"] == "error")
        .map(|f| (f["code"].clone(), f["client_id"].clone()))
        .collect();
    assert_eq!(
        errors,
        [
            (json!("no_such_message"), Value::Null),
            (json!("no_such_message"), json!("r2")),
        ],
        "the delete of 7, and a reaction in a DM that has no message 1"
    );
    let (page, _) = rt().block_on(hub.history("general", u64::MAX, 10)).unwrap();
    assert_eq!(page.len(), 1);
    assert!(page[0].deleted && page[0].text.is_empty());
}
