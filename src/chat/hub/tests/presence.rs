//! Presence that scales with the room: a page and the count, not the
//! roster; deltas bounded per tick; large rooms told only their count.

use std::sync::Arc;

use serde_json::{Value, json};

use super::super::{self as hub, Client};
use super::*;

/// `n` connections `u000`, `u001`, … joined to `general`.
fn crowd(hub: &Hub, n: usize) -> Vec<Arc<Client>> {
    (0..n)
        .map(|i| {
            let client = hub.register(Some(&format!("u{i:03}")), None, false);
            joined(hub, &client, "general");
            client
        })
        .collect()
}

/// Every member of `general` as `client` pages through them `limit` at a
/// time, calling `between` after each page; the pages must not repeat.
fn page_through(
    hub: &Hub,
    client: &Client,
    prefix: &str,
    limit: usize,
    mut between: impl FnMut(usize),
) -> Vec<String> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    for page_no in 0.. {
        let page = hub
            .members(client, "general", after.as_deref(), prefix, limit)
            .unwrap();
        assert!(page.members.len() <= limit);
        all.extend(page.members);
        between(page_no);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    all
}

#[test]
fn a_newcomer_to_a_big_room_gets_one_page_of_members_and_the_count() {
    let (hub, _memory) = hub();
    let crowd = crowd(&hub, 250);
    let late = hub.register(Some("zz-late"), None, false);
    let (page, _) = rt().block_on(hub.join(&late, "general")).unwrap();
    assert_eq!(page.count, 251);
    assert_eq!(page.members.len(), hub::MAX_PAGE);
    let expected: Vec<String> = (0..hub::MAX_PAGE).map(|i| format!("u{i:03}")).collect();
    assert_eq!(page.members, expected, "the first members, in order");
    assert_eq!(page.next.as_deref(), Some("u099"));
    // The rest, page by page: everyone once, in order.
    let all = page_through(&hub, &late, "", hub::MAX_PAGE, |_| {});
    assert_eq!(all.len(), 251);
    assert!(
        all.windows(2)
            .all(|w| w[0].to_lowercase() < w[1].to_lowercase())
    );
    assert_eq!(all.last().map(String::as_str), Some("zz-late"));
    drop(crowd);
}

#[test]
fn paging_while_others_come_and_go_repeats_no_one_and_misses_no_one_who_stayed() {
    let (hub, _memory) = hub();
    let crowd = crowd(&hub, 60);
    let reader = &crowd[0];
    let mut newcomers = Vec::new();
    let all = page_through(&hub, reader, "", 7, |page_no| {
        // Between pages: someone early and someone late leave, and one
        // joins on either side of the cursor.
        hub.leave(&crowd[page_no + 1], "general");
        hub.leave(&crowd[59 - page_no], "general");
        for nick in [format!("a{page_no:02}"), format!("v{page_no:02}")] {
            let c = hub.register(Some(&nick), None, false);
            joined(&hub, &c, "general");
            newcomers.push(c);
        }
    });
    let mut seen = all.clone();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), all.len(), "a member came twice: {all:?}");
    // Everyone present from the first page to the last was in a page.
    let pages = all.len().div_ceil(7);
    for c in &crowd[pages + 1..60 - pages] {
        assert!(all.contains(&c.nick), "{} stayed but was missed", c.nick);
    }
    // Those who joined after the cursor had passed their place come too.
    assert!(all.iter().any(|n| n.starts_with('v')));
}

#[test]
fn members_can_be_searched_by_prefix_ignoring_case() {
    let (hub, _memory) = hub();
    let [alice, _alex, _al, _bob] = in_general(&hub, ["alice", "Alex", "AL", "bob"]);
    let page = hub.members(&alice, "general", None, "al", 2).unwrap();
    assert_eq!(page.members, ["AL", "Alex"]);
    assert_eq!(page.count, 4, "the count is the room's, not the search's");
    let rest = hub
        .members(&alice, "general", page.next.as_deref(), "al", 2)
        .unwrap();
    assert_eq!(rest.members, ["alice"]);
    assert_eq!(rest.next, None);
    assert_eq!(page_through(&hub, &alice, "b", 1, |_| {}), ["bob"]);
    let stranger = hub.register(Some("zed"), None, false);
    assert_eq!(
        hub.members(&stranger, "general", None, "", 10)
            .unwrap_err()
            .code,
        ErrorCode::NotInRoom
    );
}

#[test]
fn a_storm_of_joins_within_one_tick_becomes_a_delta_of_only_the_count() {
    let (hub, _memory) = hub();
    let [bob] = in_general(&hub, ["bob"]);
    hub.flush_presence();
    drain(&bob);
    // Within one tick: a delta's worth of joins and a leave still name
    // nicks ...
    let few = crowd(&hub, hub::MAX_DELTA - 1);
    hub.unregister(&few[0]);
    hub.flush_presence();
    let got = frames(&bob);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0]["joined"].as_array().unwrap().len(),
        hub::MAX_DELTA - 2
    );
    // As before, one who came and went within the tick is told as gone.
    assert_eq!(got[0]["left"], json!(["u000"]));
    assert_eq!(got[0]["count"], hub::MAX_DELTA - 1);
    assert!(got[0].get("truncated").is_none());
    // ... one change more than a delta names carries only the count.
    let more: Vec<Arc<Client>> = (0..=hub::MAX_DELTA)
        .map(|i| {
            let c = hub.register(Some(&format!("w{i:03}")), None, false);
            joined(&hub, &c, "general");
            c
        })
        .collect();
    hub.flush_presence();
    assert_eq!(
        frames(&bob),
        [json!({
            "type": "presence", "room": "general", "joined": [], "left": [],
            "count": 2 * hub::MAX_DELTA, "truncated": true
        })]
    );
    // The next tick names nicks again.
    hub.unregister(&more[0]);
    hub.flush_presence();
    let got = frames(&bob);
    assert_eq!(got[0]["left"], json!(["w000"]));
    assert_eq!(got[0]["count"], 2 * hub::MAX_DELTA - 1);
}

#[test]
fn a_large_room_tells_only_its_count_at_most_once_a_second_and_names_again_once_small() {
    use std::time::{Duration, Instant};
    let (hub, _memory) = hub();
    let mut crowd = crowd(&hub, hub::LARGE_ROOM + 1);
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    hub.flush_presence_at(at(0));
    let watcher = crowd[0].clone();
    let count_only = |count: usize| {
        json!({
            "type": "presence", "room": "general", "joined": [], "left": [],
            "count": count, "count_only": true
        })
    };
    assert_eq!(frames(&watcher), [count_only(hub::LARGE_ROOM + 1)]);
    // A join within the second is not told yet; after it, as the count.
    let late = hub.register(Some("late"), None, false);
    joined(&hub, &late, "general");
    hub.flush_presence_at(at(500));
    assert_eq!(frames(&watcher), Vec::<Value>::new());
    hub.flush_presence_at(at(1_100));
    assert_eq!(frames(&watcher), [count_only(hub::LARGE_ROOM + 2)]);
    // A join and a leave within the next second: the count did not
    // change, so nothing is sent.
    let other = hub.register(Some("other"), None, false);
    joined(&hub, &other, "general");
    hub.unregister(&late);
    hub.flush_presence_at(at(2_200));
    assert_eq!(frames(&watcher), Vec::<Value>::new());
    // Shrinking, but not below LARGE_ROOM_UNTIL: still only the count.
    let gone = crowd.len() - hub::LARGE_ROOM_UNTIL;
    for c in crowd.drain(1..gone) {
        hub.unregister(&c);
    }
    hub.flush_presence_at(at(3_300));
    let now = hub::LARGE_ROOM_UNTIL + 2;
    assert_eq!(frames(&watcher), [count_only(now)]);
    // Below it: one `truncated` (the lists clients hold were not kept up
    // to date), then named deltas again.
    for c in crowd.drain(1..4) {
        hub.unregister(&c);
    }
    hub.flush_presence_at(at(4_400));
    assert_eq!(
        frames(&watcher),
        [json!({
            "type": "presence", "room": "general", "joined": [], "left": [],
            "count": now - 3, "truncated": true
        })]
    );
    hub.unregister(&other);
    hub.flush_presence_at(at(4_500));
    let got = frames(&watcher);
    assert_eq!(got[0]["left"], json!(["other"]));
    assert!(got[0].get("count_only").is_none());
}

#[test]
fn the_count_and_the_pages_include_other_servers_members() {
    let memory = Memory::shared();
    memory.others.lock().unwrap().insert(
        Scope::Room("general".into()),
        vec![
            ("peer".into(), vec!["bea".into(), "cy".into()]),
            ("peer2".into(), vec!["cy".into(), "dan".into()]),
        ],
    );
    let (hub, _memory) = hub_on(memory, config());
    let [ann] = in_general(&hub, ["ann"]);
    let members = |after: Option<&str>| hub.members(&ann, "general", after, "", 2).unwrap();
    let first = members(None);
    assert_eq!(
        (first.members.clone(), first.count),
        (vec!["ann".into(), "bea".into()], 4)
    );
    assert_eq!(members(first.next.as_deref()).members, ["cy", "dan"]);
    hub.flush_presence();
    drain(&ann);
    // cy leaves one server but is still on the other: still present.
    hub.presence(
        "peer",
        &Scope::Room("general".into()),
        PresenceChange::All(vec!["bea".to_owned()]),
    );
    hub.flush_presence();
    assert!(frames(&ann).is_empty(), "no one came or went");
    assert_eq!(members(None).count, 4);
    hub.peer_gone("peer2");
    hub.flush_presence();
    assert_eq!(
        frames(&ann),
        [json!({"type":"presence","room":"general","joined":[],"left":["cy","dan"],"count":2})]
    );
    assert_eq!(page_through(&hub, &ann, "", 1, |_| {}), ["ann", "bea"]);
}
