//! Accounts in the chat itself (issue 17), end to end over loopback:
//! the HTTP endpoints, the server's own tokens at `hello`, refresh and
//! revocation, the password policy, the login limits, reserved and
//! confusable nicks, `--accounts required` and `off`, and the guest
//! markers.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::chat::{Client, token};
use common::server::{Answer, ChatServer, http_get, http_post, http_post_from, http_raw};

use rfc6455::chat::{AccountsMode, ChatConfig, HashConfig};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);
const PASSWORD: &str = "correct horse battery";

fn config(name: &str) -> ChatConfig {
    let mut c = ChatConfig::new(common::temp_dir("accounts", name).join("chat.db"));
    c.presence_interval = Duration::from_millis(20);
    c.close_timeout = Duration::from_millis(300);
    // Argon2's cheapest setting: these tests hash often. The real
    // parameters are tested once, in `accounts/password.rs`.
    c.accounts.hash = HashConfig::cheap();
    c
}

fn creds(nick: &str, password: &str) -> Value {
    json!({"nick": nick, "password": password})
}

async fn register(addr: SocketAddr, nick: &str) -> Value {
    let a = http_post(addr, "/api/register", Some(&creds(nick, PASSWORD)), None).await;
    assert_eq!(a.status, 201, "{a:?}");
    a.json
}

/// [`register`] from an address of its own: the tests' own address is
/// then a stranger to the account, as an attacker is (finding 4).
async fn register_from_elsewhere(addr: SocketAddr, nick: &str) {
    let home = IpAddr::V4(Ipv4Addr::new(127, 0, 9, 9));
    let body = creds(nick, PASSWORD);
    let a = http_post_from(home, addr, "/api/register", Some(&body), None).await;
    assert_eq!(a.status, 201, "{a:?}");
}

async fn login(addr: SocketAddr, nick: &str, password: &str) -> Answer {
    http_post(addr, "/api/login", Some(&creds(nick, password)), None).await
}

/// Who a `welcome` says the user is: the nick, and whether a guest.
fn who(welcome: &Value) -> (&str, Option<bool>) {
    (
        welcome["user"].as_str().unwrap_or(""),
        welcome["guest"].as_bool(),
    )
}

/// What the page at `/` says of signing in (`<meta name="chat-auth">`).
async fn page_mode(addr: SocketAddr) -> String {
    let page = http_get(addr, "/").await;
    let (_, rest) = page
        .split_once(r#"<meta name="chat-auth" content=""#)
        .unwrap();
    rest.split('"').next().unwrap().to_owned()
}

fn with_token(token: &Value) -> Value {
    json!({"type": "hello", "token": token})
}

#[tokio::test]
async fn register_then_login_then_hello_with_the_token() {
    let server = ChatServer::start(config("register")).await;
    let issued = register(server.addr, "alice").await;
    assert_eq!(issued["nick"], "alice");
    assert_eq!(issued["expires_in"], 3600);
    assert_eq!(issued["refresh"].as_str().unwrap().len(), 64);
    let (_, welcome) = server.client(with_token(&issued["token"])).await;
    assert_eq!(welcome["user"], "alice");
    assert_eq!(welcome["guest"], false);

    let logged = login(server.addr, "alice", PASSWORD).await;
    assert_eq!(logged.status, 200, "{logged:?}");
    assert_ne!(
        logged.json["token"], issued["token"],
        "a session of its own"
    );
    // The token in the query, as the page's login URL carries it.
    let path = format!("/ws?token={}", logged.json["token"].as_str().unwrap());
    let (_, welcome) = Client::connect(server.addr, &path, json!({"type": "hello"})).await;
    assert_eq!(who(&welcome), ("alice", Some(false)));
    // Login ignores case (and look-alikes): the account's own nick comes back.
    let logged = login(server.addr, "ALICE", PASSWORD).await;
    assert_eq!(
        (logged.status, logged.json["nick"].clone()),
        (200, json!("alice"))
    );
    server.stop().await;
}

/// The signing key and the sessions are in the database: a token issued
/// before a restart still works after it, and a revoked one stays so.
#[tokio::test]
async fn tokens_outlive_a_restart() {
    let c = config("restart");
    let server = ChatServer::start(c.clone()).await;
    let kept = register(server.addr, "alice").await;
    let revoked = login(server.addr, "alice", PASSWORD).await.json;
    let out = http_post(server.addr, "/api/logout", None, revoked["token"].as_str()).await;
    assert_eq!(out.status, 204);
    server.stop().await;
    let server = ChatServer::start(c).await;
    let (_, welcome) = server.client(with_token(&kept["token"])).await;
    assert_eq!(who(&welcome), ("alice", Some(false)));
    let mut again = Client::greet(server.addr, with_token(&revoked["token"])).await;
    assert_eq!(again.close_code(WAIT).await, Some(4001));
    server.stop().await;
}

#[tokio::test]
async fn a_refresh_rotates_and_a_replayed_one_revokes_the_session() {
    let server = ChatServer::start(config("refresh")).await;
    let first = register(server.addr, "alice").await;
    let (mut live, _) = server.client(with_token(&first["token"])).await;
    let body = json!({"refresh": first["refresh"]});
    let second = http_post(server.addr, "/api/refresh", Some(&body), None).await;
    assert_eq!(second.status, 200, "{second:?}");
    assert_ne!(second.json["refresh"], first["refresh"]);
    let (_, welcome) = server.client(with_token(&second.json["token"])).await;
    assert_eq!(welcome["user"], "alice", "the new token works");

    // The spent token again: someone copied it. The session is revoked:
    // its connections close (4005), its tokens and the new refresh
    // token no longer work.
    let replay = http_post(server.addr, "/api/refresh", Some(&body), None).await;
    assert_eq!(
        (replay.status, replay.error()),
        (401, "bad_token"),
        "{replay:?}"
    );
    assert_eq!(live.close_code(WAIT).await, Some(4005));
    let next = json!({"refresh": second.json["refresh"]});
    let after = http_post(server.addr, "/api/refresh", Some(&next), None).await;
    assert_eq!((after.status, after.error()), (401, "bad_token"));
    let mut again = Client::greet(server.addr, with_token(&second.json["token"])).await;
    assert_eq!(again.close_code(WAIT).await, Some(4001));
    let unknown = json!({"refresh": "00".repeat(32)});
    let a = http_post(server.addr, "/api/refresh", Some(&unknown), None).await;
    assert_eq!((a.status, a.error()), (401, "bad_token"));
    server.stop().await;
}

#[tokio::test]
async fn logout_revokes_the_session_everywhere_it_is_used() {
    let server = ChatServer::start(config("logout")).await;
    let session = register(server.addr, "alice").await;
    let other = login(server.addr, "alice", PASSWORD).await.json;
    let token = session["token"].as_str().unwrap();
    let (mut tab1, _) = server.client(with_token(&session["token"])).await;
    let (mut tab2, _) = server.client(with_token(&session["token"])).await;
    let (mut elsewhere, _) = server.client(with_token(&other["token"])).await;

    let out = http_post(server.addr, "/api/logout", None, Some(token)).await;
    assert_eq!(out.status, 204, "{out:?}");
    assert_eq!(tab1.close_code(WAIT).await, Some(4005));
    assert_eq!(tab2.close_code(WAIT).await, Some(4005));
    // Replayed after logout: refused at hello, and by the API.
    let mut replayed = Client::greet(server.addr, with_token(&session["token"])).await;
    assert_eq!(replayed.close_code(WAIT).await, Some(4001));
    let again = http_post(server.addr, "/api/logout", None, Some(token)).await;
    assert_eq!((again.status, again.error()), (401, "bad_token"));
    let refresh = json!({"refresh": session["refresh"]});
    let r = http_post(server.addr, "/api/refresh", Some(&refresh), None).await;
    assert_eq!(r.status, 401);
    // The user's other session is untouched.
    let room = elsewhere
        .answer(common::chat::msg("general", "still here", "m1"))
        .await;
    assert_eq!(room["type"], "ack", "{room}");
    let none = http_post(server.addr, "/api/logout", None, None).await;
    assert_eq!((none.status, none.error()), (401, "bad_token"));
    server.stop().await;
}

/// The chat's own `logout` request, from an account's user: every
/// session of the account is revoked (its tokens no longer connect).
#[tokio::test]
async fn a_logout_request_revokes_every_session_of_the_account() {
    let server = ChatServer::start(config("ws-logout")).await;
    let one = register(server.addr, "alice").await;
    let two = login(server.addr, "alice", PASSWORD).await.json;
    let (mut c, _) = server.client(with_token(&one["token"])).await;
    let (mut other, _) = server.client(with_token(&two["token"])).await;
    c.send(json!({"type": "logout"})).await;
    // Revoked, as the docs say (review finding 10).
    assert_eq!(c.close_code(WAIT).await, Some(4005));
    assert_eq!(other.close_code(WAIT).await, Some(4005));
    for token in [&one["token"], &two["token"]] {
        let mut again = Client::greet(server.addr, with_token(token)).await;
        assert_eq!(again.close_code(WAIT).await, Some(4001));
    }
    server.stop().await;
}

/// An external token's user of an account's nick has none of the
/// account's sessions: its `logout` revokes none (review finding 10).
#[tokio::test]
async fn an_external_users_logout_leaves_the_accounts_sessions_be() {
    let mut c = config("ext-logout");
    c.jwt_secret = Some("their secret".into());
    let server = ChatServer::start(c).await;
    let issued = register(server.addr, "alice").await;
    let external = json!({"type": "hello", "token": token("their secret", "alice", 600)});
    let (mut theirs, _) = server.client(external).await;
    theirs.send(json!({"type": "logout"})).await;
    assert_eq!(theirs.close_code(WAIT).await, Some(1000));
    // The account's session was not revoked: its token still connects.
    let (_, welcome) = server.client(with_token(&issued["token"])).await;
    assert_eq!(who(&welcome), ("alice", Some(false)));
    server.stop().await;
}

#[tokio::test]
async fn a_password_change_checks_both_and_revokes_the_other_sessions() {
    let server = ChatServer::start(config("password")).await;
    let mine = register(server.addr, "alice").await;
    let theirs = login(server.addr, "alice", PASSWORD).await.json;
    let (mut other_tab, _) = server.client(with_token(&theirs["token"])).await;
    let (mut my_tab, _) = server.client(with_token(&mine["token"])).await;
    let addr = server.addr;
    let token = mine["token"].as_str().unwrap().to_owned();
    let change = |old: &str, new: &str| {
        let (body, token) = (json!({"old": old, "new": new}), token.clone());
        async move { http_post(addr, "/api/password", Some(&body), Some(&token)).await }
    };

    let wrong = change("not my password", "a new long password").await;
    assert_eq!((wrong.status, wrong.error()), (401, "bad_credentials"));
    let weak = change(PASSWORD, "short").await;
    assert_eq!((weak.status, weak.error()), (400, "weak_password"));
    let done = change(PASSWORD, "a new long password").await;
    assert_eq!(done.status, 204, "{done:?}");

    assert_eq!(other_tab.close_code(WAIT).await, Some(4005));
    let ack = my_tab
        .answer(common::chat::msg("general", "mine stays", "m1"))
        .await;
    assert_eq!(ack["type"], "ack", "the changing session stays: {ack}");
    assert_eq!(login(server.addr, "alice", PASSWORD).await.status, 401);
    assert_eq!(
        login(server.addr, "alice", "a new long password")
            .await
            .status,
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn weak_passwords_and_bad_requests_get_their_codes() {
    let server = ChatServer::start(config("weak")).await;
    let register = |nick: &str, password: &str| {
        let body = creds(nick, password);
        async move { http_post(server.addr, "/api/register", Some(&body), None).await }
    };
    for (nick, password, why) in [
        ("alice", "short", "under 10 characters"),
        ("alice", "qwertyuiop", "among the 1,000 most common"),
        ("alice", "Password123", "common, whatever its case"),
        ("alicealice", "AliceAlice", "the nick itself"),
        ("alice", &"x".repeat(257), "over 256 bytes"),
    ] {
        let a = register(nick, password).await;
        assert_eq!(
            (a.status, a.error()),
            (400, "weak_password"),
            "{why}: {a:?}"
        );
    }
    let a = register("not a nick!", PASSWORD).await;
    assert_eq!((a.status, a.error()), (400, "invalid_field"));
    let a = http_post(
        server.addr,
        "/api/register",
        Some(&json!({"nick": "alice"})),
        None,
    )
    .await;
    assert_eq!(
        (a.status, a.error()),
        (400, "invalid_field"),
        "a field missing"
    );
    let raw = |body: &str, content_type: &str| {
        format!(
            "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let a = http_raw(server.addr, raw("{not json", "application/json").as_bytes()).await;
    assert_eq!((a.status, a.error()), (400, "bad_json"));
    let a = http_raw(server.addr, raw("{}", "text/plain").as_bytes()).await;
    assert_eq!(a.status, 415);
    // Over 4 KiB: refused on its declared length, before it is read.
    let big = "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n";
    let a = http_raw(server.addr, big.as_bytes()).await;
    assert_eq!((a.status, a.error()), (413, "bad_json"));
    // Nothing was registered by any of it.
    assert_eq!(login(server.addr, "alice", PASSWORD).await.status, 401);
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_nick_and_a_wrong_password_are_answered_alike() {
    let server = ChatServer::start(config("alike")).await;
    register(server.addr, "alice").await;
    let wrong = login(server.addr, "alice", "wrong password here").await;
    let nobody = login(server.addr, "nobody", "wrong password here").await;
    assert_eq!((wrong.status, wrong.error()), (401, "bad_credentials"));
    assert_eq!(wrong.status, nobody.status);
    assert_eq!(wrong.json, nobody.json, "the same body, word for word");
    server.stop().await;
}

/// 10,000 login attempts from one address as fast as it can send them:
/// the first few are checked, the rest get 429 with `Retry-After` (no
/// hash is run for them), and a normal login from another address right
/// after is answered at once.
#[tokio::test]
async fn a_flood_of_logins_is_limited_and_the_server_still_answers() {
    let server = ChatServer::start(config("flood")).await;
    register(server.addr, "alice").await;
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..8 {
        let addr = server.addr;
        workers.push(tokio::spawn(async move {
            let (mut limited, mut checked, mut retry_after) = (0, 0, true);
            for i in 0..1250 {
                let body = creds(&format!("mallory{w}x{i}"), "guessing password");
                let a = http_post(addr, "/api/login", Some(&body), None).await;
                match a.status {
                    429 => {
                        limited += 1;
                        retry_after &= a.head.contains("Retry-After: ");
                        assert_eq!(a.error(), "rate_limited");
                    }
                    401 => checked += 1,
                    other => panic!("unexpected {other}: {a:?}"),
                }
            }
            (limited, checked, retry_after)
        }));
    }
    let (mut limited, mut checked) = (0, 0);
    for w in workers {
        let (l, c, retry_after) = w.await.unwrap();
        assert!(retry_after, "every 429 says when to try again");
        limited += l;
        checked += c;
    }
    eprintln!(
        "10,000 attempts in {:?}: {checked} checked, {limited} limited",
        started.elapsed()
    );
    assert_eq!(limited + checked, 10_000);
    assert!(
        checked <= 12,
        "only the address's burst (10, and what refills) is checked: {checked}"
    );
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let a = http_post_from(
        other,
        server.addr,
        "/api/login",
        Some(&creds("alice", PASSWORD)),
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    server.stop().await;
}

/// Review finding 5(a): wrong passwords sent all at once are each
/// counted before they are checked, so no more than the free ones and
/// the one that locks are checked.
#[tokio::test]
async fn parallel_wrong_passwords_cannot_outrun_the_lockout() {
    let mut c = config("lockout-race");
    c.accounts.limits.ip_burst = 100.0;
    let server = ChatServer::start(c).await;
    register_from_elsewhere(server.addr, "alice").await;
    let mut tries = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let addr = server.addr;
        tries.spawn(async move { login(addr, "alice", "not the password").await.status });
    }
    let mut checked = 0;
    while let Some(status) = tries.join_next().await {
        match status.unwrap() {
            401 => checked += 1,
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(checked <= 6, "{checked} wrong passwords were checked");
    server.stop().await;
}

/// Review finding 5(b): a flood of failed logins for made-up nicks (and
/// nicks no account could have) does not switch the account lockout
/// off: a full map makes room instead of ignoring the next account.
#[tokio::test]
async fn a_flood_of_junk_nicks_does_not_switch_the_lockout_off() {
    let mut c = config("lockout-flood");
    c.accounts.limits.ip_burst = 1000.0;
    c.accounts.limits.max_entries = 20;
    let server = ChatServer::start(c).await;
    register_from_elsewhere(server.addr, "alice").await;
    for i in 0..40 {
        let a = login(server.addr, &format!("junk{i}"), "not the password").await;
        assert_eq!((a.status, a.error()), (401, "bad_credentials"));
    }
    let long = login(server.addr, &"x".repeat(4000), "not the password").await;
    assert_eq!((long.status, long.error()), (401, "bad_credentials"));
    for i in 0..6 {
        let a = login(server.addr, "alice", "not the password").await;
        assert_eq!(a.status, 401, "attempt {i}: {a:?}");
    }
    let locked = login(server.addr, "alice", PASSWORD).await;
    assert_eq!((locked.status, locked.error()), (429, "rate_limited"));
    server.stop().await;
}

/// A login from loopback with the given `X-Forwarded-For` lines (each
/// for a nick of its own: the address's limit, not an account's).
async fn login_forwarded(addr: SocketAddr, forwarded: &[&str]) -> u16 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let body = creds(&format!("nobody{n}"), "not the password").to_string();
    let lines: String = forwarded
        .iter()
        .map(|v| format!("X-Forwarded-For: {v}\r\n"))
        .collect();
    let request = format!(
        "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{lines}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    http_raw(addr, request.as_bytes()).await.status
}

/// Review finding 6: without `--trust-proxy`, `X-Forwarded-For` is
/// ignored: a client writing a new address each time still spends its
/// own address's attempts.
#[tokio::test]
async fn forwarded_addresses_are_ignored_unless_the_proxy_is_trusted() {
    let server = ChatServer::start(config("xff-off")).await;
    for i in 0..10 {
        let status = login_forwarded(server.addr, &[&format!("203.0.113.{i}")]).await;
        assert_eq!(status, 401, "attempt {i}");
    }
    assert_eq!(login_forwarded(server.addr, &["203.0.113.99"]).await, 429);
    server.stop().await;
}

/// Review finding 6: with `--trust-proxy`, the address counted is the
/// last one of every `X-Forwarded-For` line joined (a proxy that adds its
/// own line), written `ip`, `ip:port` or `[v6]:port`.
#[tokio::test]
async fn a_trusted_proxy_is_counted_by_its_last_forwarded_address() {
    let mut c = config("xff-on");
    c.accounts.trust_proxy = true;
    let server = ChatServer::start(c).await;
    for i in 0..10 {
        let first = format!("10.0.0.{i}");
        let status = login_forwarded(server.addr, &[&first, "198.51.100.4:5555"]).await;
        assert_eq!(status, 401, "attempt {i}");
    }
    assert_eq!(login_forwarded(server.addr, &["198.51.100.4"]).await, 429);
    assert_eq!(
        login_forwarded(server.addr, &["198.51.100.4, [2001:db8::1]:443"]).await,
        401,
        "another client, its own limit"
    );
    server.stop().await;
}

/// Review finding 12: login limits that make no sense (no refill, no
/// burst, no room) are refused when the server starts, naming the
/// setting, instead of panicking at the first limited request.
#[tokio::test]
async fn nonsense_login_limits_are_refused_at_start() {
    let broken: [fn(&mut ChatConfig); 3] = [
        |c| c.accounts.limits.ip_per_minute = 0.0,
        |c| c.accounts.limits.ip_burst = f64::NAN,
        |c| c.accounts.limits.max_entries = 0,
    ];
    for (i, breaks) in broken.iter().enumerate() {
        let mut c = config(&format!("bad-limits-{i}"));
        breaks(&mut c);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let served = rfc6455::chat::serve(listener, c, std::future::pending::<()>());
        let ended = tokio::time::timeout(WAIT, served).await;
        let err = ended.expect("refused at once").expect_err("refused");
        assert!(err.to_string().contains("limit"), "{i}: {err}");
    }
}

/// Review finding 13: `POST /api/logout` costs an attempt of the
/// address's, like every other account request.
#[tokio::test]
async fn logout_requests_are_limited_per_address() {
    let server = ChatServer::start(config("logout-limit")).await;
    for i in 0..10 {
        let a = http_post(server.addr, "/api/logout", None, Some("not a token")).await;
        assert_eq!((a.status, a.error()), (401, "bad_token"), "attempt {i}");
    }
    let a = http_post(server.addr, "/api/logout", None, Some("not a token")).await;
    assert_eq!((a.status, a.error()), (429, "rate_limited"));
    assert!(a.head.contains("Retry-After: "), "{a:?}");
    server.stop().await;
}

#[tokio::test]
async fn an_account_locks_after_five_wrong_passwords() {
    let server = ChatServer::start(config("lockout")).await;
    register(server.addr, "alice").await;
    for i in 0..6 {
        // Each from its own address: the account's limit, not the address's.
        let from = IpAddr::V4(Ipv4Addr::new(127, 0, 1, i + 1));
        let body = creds("alice", "not the password");
        let a = http_post_from(from, server.addr, "/api/login", Some(&body), None).await;
        assert_eq!(a.status, 401, "attempt {i}: {a:?}");
    }
    let from = IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1));
    let body = creds("alice", PASSWORD);
    let a = http_post_from(from, server.addr, "/api/login", Some(&body), None).await;
    assert_eq!(
        (a.status, a.error()),
        (429, "rate_limited"),
        "locked, even with the password"
    );
    assert!(a.head.contains("Retry-After: 30"), "{}", a.head);
    server.stop().await;
}

/// Review finding 4: a stranger's wrong passwords lock the account for
/// strangers only: the address its user last logged in from (here, or
/// registered from) still logs in with the right password.
#[tokio::test]
async fn a_lockout_does_not_keep_the_user_out_from_a_known_address() {
    let server = ChatServer::start(config("lockout-known")).await;
    let home = IpAddr::V4(Ipv4Addr::new(127, 0, 3, 1));
    let body = creds("alice", PASSWORD);
    let made = http_post_from(home, server.addr, "/api/register", Some(&body), None).await;
    assert_eq!(made.status, 201, "{made:?}");
    for i in 0..7 {
        let from = IpAddr::V4(Ipv4Addr::new(127, 0, 4, i + 1));
        let wrong = creds("alice", "not the password");
        let a = http_post_from(from, server.addr, "/api/login", Some(&wrong), None).await;
        assert!(a.status == 401 || a.status == 429, "attempt {i}: {a:?}");
    }
    let stranger = IpAddr::V4(Ipv4Addr::new(127, 0, 5, 1));
    let a = http_post_from(stranger, server.addr, "/api/login", Some(&body), None).await;
    assert_eq!(a.status, 429, "locked for strangers: {a:?}");
    let a = http_post_from(home, server.addr, "/api/login", Some(&body), None).await;
    assert_eq!(a.status, 200, "not for its user at home: {a:?}");
    server.stop().await;
}

/// Passwords travel only over TLS or from a loopback peer. Reached at a
/// non-loopback address of this host, the server refuses with 403
/// `insecure` (skipped if the host has none; `accounts/api.rs` tests the
/// check itself).
#[tokio::test]
async fn a_password_from_a_non_loopback_peer_is_refused() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("no non-loopback address on this host: skipped");
        return;
    };
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let server = ChatServer::start_on(listener, config("insecure")).await;
    let a = http_post(
        server.addr,
        "/api/register",
        Some(&creds("alice", PASSWORD)),
        None,
    )
    .await;
    assert_eq!((a.status, a.error()), (403, "insecure"), "{a:?}");
    server.stop().await;
}

/// An address of this host's that is not loopback: the source a UDP
/// socket would use towards a documentation address (nothing is sent).
fn non_loopback_ip() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn a_registered_nick_is_reserved_and_look_alikes_are_refused() {
    let server = ChatServer::start(config("reserved")).await;
    register(server.addr, "alice").await;
    // A guest asking for it is told so; the connection stays open, and a
    // second hello is answered.
    let mut guest = Client::greet(server.addr, json!({"type": "hello", "nick": "alice"})).await;
    let e = guest.next_of("error").await;
    assert_eq!(e["code"], "nick_reserved", "{e}");
    for lookalike in ["Alice", "aIice", "a1ice", "alice."] {
        guest
            .send(json!({"type": "hello", "nick": lookalike}))
            .await;
        let e = guest.next_of("error").await;
        assert_eq!(e["code"], "nick_confusable", "{lookalike}: {e}");
    }
    guest.send(json!({"type": "hello", "nick": "bob"})).await;
    let welcome = guest.next_of("welcome").await;
    assert_eq!(who(&welcome), ("bob", Some(true)));

    // Registration is unique on the skeleton.
    let a = http_post(
        server.addr,
        "/api/register",
        Some(&creds("alice", PASSWORD)),
        None,
    )
    .await;
    assert_eq!((a.status, a.error()), (409, "nick_taken"));
    let a = http_post(
        server.addr,
        "/api/register",
        Some(&creds("AIice", PASSWORD)),
        None,
    )
    .await;
    assert_eq!((a.status, a.error()), (409, "nick_confusable"));

    // A look-alike of a guest online is refused too; so is a rename to
    // a registered nick.
    let mut second = Client::greet(server.addr, json!({"type": "hello", "nick": "B0b"})).await;
    let e = second.next_of("error").await;
    assert_eq!(e["code"], "nick_confusable", "{e}");
    guest
        .send(json!({"type": "nick", "nick": "alice", "client_id": "r1"}))
        .await;
    let e = guest.next_of("error").await;
    assert_eq!(e["code"], "nick_reserved", "{e}");
    server.stop().await;
}

/// Once a nick is registered only the account's connections hold it:
/// the guests holding it (every connection, whatever the count) or a
/// look-alike are closed with 4006 and must come back under another
/// nick; the account's user then connects (review finding 2).
#[tokio::test]
async fn registering_a_nick_closes_the_guests_holding_it_or_a_look_alike() {
    let server = ChatServer::start(config("guest-online")).await;
    let (first, welcome) = server
        .client(json!({"type": "hello", "nick": "carol"}))
        .await;
    assert_eq!(welcome["guest"], true);
    let secret = welcome["session"].clone();
    let mut guests = vec![first];
    for _ in 1..10 {
        let hello = json!({"type": "hello", "nick": "carol", "session": secret});
        let (c, w) = server.client(hello).await;
        assert_eq!(w["user"], "carol", "{w}");
        guests.push(c);
    }
    let (mut alike, _) = server
        .client(json!({"type": "hello", "nick": "dave."}))
        .await;
    let issued = register(server.addr, "carol").await;
    for guest in &mut guests {
        assert_eq!(guest.close_code(WAIT).await, Some(4006));
    }
    register(server.addr, "dave").await;
    assert_eq!(alike.close_code(WAIT).await, Some(4006));
    let (mut account, welcome) = server.client(with_token(&issued["token"])).await;
    assert_eq!(who(&welcome), ("carol", Some(false)));
    // The guest's secret no longer gets the nick back.
    let mut back = Client::greet(
        server.addr,
        json!({"type": "hello", "nick": "carol", "session": secret}),
    )
    .await;
    assert_eq!(back.next_of("error").await["code"], "nick_reserved");
    let ack = account
        .answer(common::chat::msg("general", "mine now", "a1"))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    server.stop().await;
}

/// A guest's `-N` suffix or `guestN` never names a registered nick
/// (review finding 1): the next free one is given instead.
#[tokio::test]
async fn a_guest_never_gets_a_registered_nick_by_suffix_or_number() {
    let server = ChatServer::start(config("suffix")).await;
    register(server.addr, "guest1").await;
    register(server.addr, "bob-2").await;
    let (_numbered, welcome) = server.client(json!({"type": "hello"})).await;
    let (nick, guest) = who(&welcome);
    assert!(nick.starts_with("guest") && nick != "guest1", "{nick}");
    assert_eq!(guest, Some(true));
    let (_a, welcome) = server.client(json!({"type": "hello", "nick": "bob"})).await;
    assert_eq!(who(&welcome), ("bob", Some(true)));
    let (_b, welcome) = server.client(json!({"type": "hello", "nick": "bob"})).await;
    assert_eq!(who(&welcome), ("bob-3", Some(true)));
    server.stop().await;
}

#[tokio::test]
async fn with_accounts_required_a_guest_is_refused() {
    let mut c = config("required");
    c.accounts.mode = AccountsMode::Required;
    let server = ChatServer::start(c).await;
    assert_eq!(page_mode(server.addr).await, "required");
    let mut guest = Client::greet(server.addr, json!({"type": "hello", "nick": "bob"})).await;
    let e = guest.next_of("error").await;
    assert_eq!(e["code"], "account_required");
    assert_eq!(guest.close_code(WAIT).await, Some(4001));
    let issued = register(server.addr, "alice").await;
    let (_, welcome) = server.client(with_token(&issued["token"])).await;
    assert_eq!(who(&welcome), ("alice", Some(false)));
    server.stop().await;
}

#[tokio::test]
async fn with_accounts_off_the_chat_is_anonymous_as_before() {
    let mut c = config("off");
    c.accounts.mode = AccountsMode::Off;
    let server = ChatServer::start(c).await;
    assert_eq!(page_mode(server.addr).await, "nick");
    let a = http_post(
        server.addr,
        "/api/register",
        Some(&creds("alice", PASSWORD)),
        None,
    )
    .await;
    assert_eq!(a.status, 404);
    let (mut alice, welcome) = server
        .client(json!({"type": "hello", "nick": "alice"}))
        .await;
    assert!(welcome.get("guest").is_none(), "{welcome}");
    let (_, welcome) = server
        .client(json!({"type": "hello", "nick": "Alice"}))
        .await;
    assert_eq!(welcome["user"], "Alice", "no confusables without accounts");
    alice.send_msg("general", "hi", "m1").await;
    let m = alice.next_of("msg").await;
    assert!(m.get("guest").is_none(), "{m}");
    server.stop().await;
}

#[tokio::test]
async fn guests_are_marked_in_messages_history_presence_and_members() {
    let server = ChatServer::start(config("markers")).await;
    assert_eq!(page_mode(server.addr).await, "open");
    let issued = register(server.addr, "alice").await;
    let (mut alice, _) = server.client(with_token(&issued["token"])).await;
    let (mut bob, _) = server.client(json!({"type": "hello", "nick": "bob"})).await;
    let p = bob
        .next(|e| {
            e["type"] == "presence"
                && e["next"].is_null()
                && e["joined"].as_array().is_some_and(|j| j.len() == 2)
        })
        .await;
    assert_eq!(p["guests"], json!(["bob"]), "{p}");
    let delta = alice
        .next(|e| {
            e["type"] == "presence"
                && e["next"].is_null()
                && e["joined"]
                    .as_array()
                    .is_some_and(|j| j.contains(&json!("bob")))
        })
        .await;
    assert_eq!(delta["guests"], json!(["bob"]), "{delta}");

    bob.send_msg("general", "from a guest", "b1").await;
    let m = alice
        .next(|e| e["type"] == "msg" && e["from"] == "bob")
        .await;
    assert_eq!(m["guest"], true, "{m}");
    alice.send_msg("general", "from an account", "a1").await;
    let m = bob
        .next(|e| e["type"] == "msg" && e["from"] == "alice")
        .await;
    assert!(m.get("guest").is_none(), "false is omitted: {m}");

    bob.send(json!({"type": "dm", "to": "alice", "text": "psst", "client_id": "d1"}))
        .await;
    let dm = alice.next_of("dm").await;
    assert_eq!(dm["guest"], true, "{dm}");

    bob.send(json!({"type": "members", "room": "general"}))
        .await;
    let members = bob.next_of("members").await;
    assert_eq!(members["guests"], json!(["bob"]), "{members}");

    // History keeps the flag (stored with the message).
    let (_, _) = (alice, bob);
    let (mut carol, _) = server
        .client(json!({"type": "hello", "nick": "carol"}))
        .await;
    let history = carol.next_of("history").await;
    let flags: Vec<(String, Value)> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["from"].as_str().unwrap().to_owned(),
                m.get("guest").cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    assert_eq!(
        flags,
        vec![("bob".into(), json!(true)), ("alice".into(), Value::Null)]
    );
    server.stop().await;
}

/// `--jwt-secret` beside accounts: an external token is accepted as
/// before, an account's token too (told apart by its issuer), a guest
/// is not.
#[tokio::test]
async fn external_tokens_keep_working_beside_accounts() {
    let mut c = config("external");
    c.jwt_secret = Some("their secret".into());
    let server = ChatServer::start(c).await;
    let (_, welcome) = server
        .client(json!({"type": "hello", "token": token("their secret", "dana", 600)}))
        .await;
    assert_eq!(who(&welcome), ("dana", Some(false)));
    let issued = register(server.addr, "alice").await;
    let (_, welcome) = server.client(with_token(&issued["token"])).await;
    assert_eq!(welcome["user"], "alice");
    let mut guest = Client::greet(server.addr, json!({"type": "hello", "nick": "bob"})).await;
    assert_eq!(guest.close_code(WAIT).await, Some(4001));
    // A token signed with another secret that claims our issuer is ours
    // to check, and fails.
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"iss": "rfc6455-chat", "sub": "alice", "sid": "x", "exp": 4_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_secret(b"their secret"),
    )
    .unwrap();
    let mut forger = Client::greet(server.addr, json!({"type": "hello", "token": forged})).await;
    assert_eq!(forger.close_code(WAIT).await, Some(4001));
    server.stop().await;
}

/// `rfc6455 chat --accounts MODE` picks the mode (the binary, as an
/// operator runs it).
#[tokio::test]
async fn the_accounts_flag_picks_the_mode() {
    for (mode, marker, register_status) in [
        ("open", "open", 201),
        ("required", "required", 201),
        ("off", "nick", 404),
    ] {
        let addr = common::process::free_addr();
        let db = common::temp_dir("accounts", &format!("flag-{mode}")).join("chat.db");
        let mut command = common::process::rfc6455("warn");
        command
            .args(["chat", "--listen", &addr.to_string(), "--accounts", mode])
            .arg("--db")
            .arg(&db);
        let _server = common::process::Spawned::listening(&mut command, addr, "rfc6455 chat").await;
        assert_eq!(page_mode(addr).await, marker, "--accounts {mode}");
        let a = http_post(addr, "/api/register", Some(&creds("alice", PASSWORD)), None).await;
        assert_eq!(a.status, register_status, "--accounts {mode}: {a:?}");
    }
}
