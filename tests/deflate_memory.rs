//! What permessage-deflate (RFC 7692) costs a server connection between
//! messages, in each mode: the figures of the README's memory table.
//!
//! Heap is counted by dhat's allocator (live bytes), in a test binary of
//! its own. Each server `Connection` receives one compressed message and
//! sends one compressed reply, then sits idle with its buffers released;
//! what it still holds is what an idle connection of that mode costs.

use rfc6455::proto::deflate::DeflateParams;
use rfc6455::proto::{
    ClientHandshake, Config, Connection, DeflateConfig, Message, Role, ServerHandshake, WsUrl,
};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Connections per mode: enough to average out allocator noise.
const N: usize = 40;

/// A chat-like message, long enough to be compressed (over the default
/// threshold) and repetitive enough to shrink.
const TEXT: &str =
    "{\"type\":\"msg\",\"room\":\"general\",\"text\":\"hello hello hello hello hello hello\"}";

/// Negotiates `config` in both roles, through the real handshake code.
fn agree(config: &DeflateConfig) -> (DeflateParams, DeflateParams) {
    let proto = Config {
        deflate: Some(config.clone()),
        ..Config::default()
    };
    let url = WsUrl::parse("ws://localhost/").unwrap();
    let (mut client, request) = ClientHandshake::with_key(&url, &[], &[], &proto, [7; 16]).unwrap();
    let (req, _) = ServerHandshake::new(&proto)
        .receive(&request)
        .unwrap()
        .unwrap();
    let upgrade = req.upgrade().unwrap();
    let server_params = upgrade.negotiate_deflate(config).expect("accepted");
    let response = upgrade.accept_with(None, Some(&server_params)).unwrap();
    let (resp, _) = client.receive(&response).unwrap().unwrap();
    (resp.deflate.expect("client agrees"), server_params)
}

/// Heap held per server connection after one message each way.
fn held_per_connection(config: Option<&DeflateConfig>) -> usize {
    let proto = Config {
        deflate: config.cloned(),
        ..Config::default()
    };
    // The client's frame, made once: with a fresh context it is the same
    // for every server.
    let (frame, server_params) = {
        let mut client = Connection::new(Role::Client, proto.clone());
        let mut params = None;
        if let Some(c) = config {
            let (client_params, server_params) = agree(c);
            client = client.with_deflate(client_params);
            params = Some(server_params);
        }
        client.send_text(TEXT).unwrap();
        let mut bytes = Vec::new();
        while let Some(chunk) = client.poll_transmit() {
            bytes.extend_from_slice(&chunk);
        }
        (bytes, params)
    };
    if config.is_some() {
        assert_eq!(frame[0], 0x81 | 0x40, "the client's frame is compressed");
    }
    let before = dhat::HeapStats::get().curr_bytes;
    let mut servers = Vec::with_capacity(N);
    for _ in 0..N {
        let mut server = Connection::new(Role::Server, proto.clone());
        if let Some(p) = server_params {
            server = server.with_deflate(p);
        }
        server.receive(&frame);
        assert_eq!(server.poll_message().unwrap(), Some(Message::text(TEXT)));
        server.send_text(TEXT).unwrap();
        while let Some(chunk) = server.poll_transmit() {
            drop(chunk);
        }
        server.shrink_buffers();
        servers.push(server);
    }
    let after = dhat::HeapStats::get().curr_bytes;
    let per = after.saturating_sub(before) / N;
    // The Vec of connections is counted too; take its share off.
    per.saturating_sub(std::mem::size_of::<Connection>())
}

#[test]
fn deflate_memory_per_connection_in_each_mode() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let off = held_per_connection(None);
    let takeover = held_per_connection(Some(&DeflateConfig::default()));
    let reset = held_per_connection(Some(&DeflateConfig::no_context_takeover()));
    eprintln!(
        "heap held per server connection between messages: \
         no deflate {off} B, deflate with context takeover {takeover} B, \
         deflate without context takeover {reset} B"
    );
    // With context takeover both windows outlive the message: a compressor
    // (hundreds of KiB in zlib-rs) and a decompressor (tens of KiB).
    dhat::assert!(takeover > off + 200 * 1024, "takeover holds {takeover} B");
    // Without it, nothing but the codec's few bytes of settings remain.
    dhat::assert!(
        reset < off + 512,
        "no-context-takeover holds {reset} B vs {off} B"
    );
}
