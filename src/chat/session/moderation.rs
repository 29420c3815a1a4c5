//! A session's moderation requests (issue 17): handed to the hub
//! (`hub/moderation.rs`), which checks the role and stores the event;
//! the session sends the reply, if the request has one, or the refusal.

use tokio::io::{AsyncRead, AsyncWrite};

use super::super::protocol::ClientMsg;
use super::Session;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// `kick`, `ban`, `unban`, `mute`, `unmute`, `slow`, `topic`, `role`,
    /// `block`, `unblock`, `blocks`, `audit`.
    pub(super) async fn handle_moderation(&mut self, msg: ClientMsg) {
        let client = self.client.clone();
        match self.hub.moderate(&client, msg).await {
            Ok(Some(json)) => self.reply_json(json),
            Ok(None) => {}
            Err(refusal) => self.refuse(&refusal, None),
        }
    }
}
