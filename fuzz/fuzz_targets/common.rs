//! Shared by the `connection_*` targets: feed arbitrary bytes to one role's
//! state machine in arbitrary chunks and check what it may never do.

use rfc6455::proto::{Config, Connection, MAX_HEADER_LEN, Role};

/// Small limits, so that fuzzing reaches them.
pub fn config() -> Config {
    Config {
        max_frame_size: 4096,
        max_message_size: 8192,
        max_fragments: 64,
        ..Config::default()
    }
}

/// The first byte picks the chunk sizes; the rest is the stream.
pub fn run(role: Role, data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let config = config();
    let mut conn = Connection::new(role, config.clone())
        .with_rng(rfc6455::proto::MaskRng::from_seed([seed; 32]));
    let peer_role = match role {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    // Whatever we send must be a valid frame stream for the peer.
    let mut peer = Connection::new(peer_role, Config::default());
    let chunk = usize::from(seed % 17) + 1;
    for piece in stream.chunks(chunk) {
        conn.receive(piece);
        loop {
            match conn.poll_message() {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        // Bounded: a frame being read, plus the message being gathered.
        let bound = config.max_message_size + config.max_frame_size + MAX_HEADER_LEN + chunk;
        assert!(
            conn.buffered_len() <= bound,
            "buffered {} > {bound}",
            conn.buffered_len()
        );
        // At most a Close and one pending Pong, plus Pongs for this chunk's pings.
        while let Some(out) = conn.poll_transmit() {
            peer.receive(&out);
        }
        loop {
            match peer.poll_message() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => panic!("we sent an invalid frame stream: {e}"),
            }
        }
    }
}
