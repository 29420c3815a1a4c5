//! What a typed line means in `rfc6455 client`'s text mode: a message to
//! send, or one of the commands `/ping [PAYLOAD]`, `/close [CODE
//! [REASON]]` and `/help`. A line starting with `//` is sent as a message
//! without its first `/`, so any text can still be sent.
//!
//! Everything a command would put on the wire is checked here, before it
//! is sent: a Ping's payload fits a control frame (RFC 6455 §5.5), a close
//! code is one an endpoint may send (§7.4.1, §7.4.2) and its reason fits
//! beside it (§5.5.1). A refusal is a message for the user; nothing goes
//! out and the connection stays as it was.

use bytes::Bytes;
use rfc6455::proto::{CloseCode, CloseFrame, MAX_CONTROL_PAYLOAD, MAX_REASON_LEN};
use rfc6455::transport::trace::close_code_meaning;

/// What `/help` prints.
pub const HELP: &str = "\
commands (text mode):
  /ping [PAYLOAD]         send a Ping; the Pong's round trip is printed
  /close [CODE [REASON]]  start the closing handshake (default 1000)
  //TEXT                  send the message /TEXT (a leading / doubled)
  /help                   this list
end of input (Ctrl-D) closes with 1000";

/// One typed line, understood.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// Send this text message.
    Send(String),
    /// Send a Ping with this payload.
    Ping(Bytes),
    /// Start the closing handshake with this Close.
    Close(CloseFrame),
    /// Print the commands.
    Help,
    /// Refused, and why: nothing is sent.
    Refused(String),
}

/// Reads one line (without its newline).
pub fn parse(line: &str) -> Line {
    if let Some(escaped) = line.strip_prefix("//") {
        return Line::Send(format!("/{escaped}"));
    }
    let Some(command) = line.strip_prefix('/') else {
        return Line::Send(line.to_owned());
    };
    let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
    match name {
        "ping" => ping(rest),
        "close" => close(rest),
        "help" => Line::Help,
        _ => Line::Refused(format!(
            "unknown command /{name} (/help lists them); to send a line starting with /, double it: //{command}"
        )),
    }
}

/// `/ping [PAYLOAD]`: the payload as typed, at most 125 bytes.
fn ping(payload: &str) -> Line {
    if payload.len() > MAX_CONTROL_PAYLOAD {
        return Line::Refused(format!(
            "a Ping carries at most {MAX_CONTROL_PAYLOAD} bytes (RFC 6455 §5.5); this one has {}",
            payload.len()
        ));
    }
    Line::Ping(Bytes::copy_from_slice(payload.as_bytes()))
}

/// `/close [CODE [REASON]]`: 1000 without a code.
fn close(args: &str) -> Line {
    let args = args.trim_start();
    if args.is_empty() {
        return Line::Close(CloseFrame::new(CloseCode::NORMAL, ""));
    }
    let (code, reason) = args.split_once(' ').unwrap_or((args, ""));
    let Ok(number) = code.parse::<u16>() else {
        return Line::Refused(format!(
            "/close takes a status code (a number, e.g. 1000), not {code:?}"
        ));
    };
    let code = match CloseCode::try_from(number) {
        Ok(code) => code,
        Err(_) => {
            return Line::Refused(format!(
                "close code {number} may not be sent (RFC 6455 §7.4): {}; \
                 send 1000-1003, 1007-1014, or 3000-4999",
                close_code_meaning(number)
            ));
        }
    };
    // §5.5.1 and §5.5: the code's two bytes and the reason fit in 125.
    if reason.len() > MAX_REASON_LEN {
        return Line::Refused(format!(
            "a close reason is at most {MAX_REASON_LEN} bytes (RFC 6455 §5.5, §5.5.1); this one has {}",
            reason.len()
        ));
    }
    Line::Close(CloseFrame::new(code, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(line: &str) -> String {
        match parse(line) {
            Line::Refused(why) => why,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    #[test]
    fn plain_lines_and_doubled_slashes_are_sent_as_typed() {
        assert_eq!(parse("hello"), Line::Send("hello".into()));
        assert_eq!(parse(""), Line::Send(String::new()));
        assert_eq!(parse("//ping"), Line::Send("/ping".into()));
        assert_eq!(parse("///"), Line::Send("//".into()));
        assert_eq!(parse(" /close"), Line::Send(" /close".into()));
    }

    #[test]
    fn ping_takes_an_optional_payload_of_at_most_125_bytes() {
        assert_eq!(parse("/ping"), Line::Ping(Bytes::new()));
        assert_eq!(
            parse("/ping are you there"),
            Line::Ping("are you there".into())
        );
        assert_eq!(
            parse(&format!("/ping {}", "x".repeat(125))),
            Line::Ping("x".repeat(125).into())
        );
        assert!(refused(&format!("/ping {}", "x".repeat(126))).contains("§5.5"));
    }

    #[test]
    fn close_defaults_to_1000_and_takes_a_code_and_a_reason() {
        assert_eq!(
            parse("/close"),
            Line::Close(CloseFrame::new(CloseCode::NORMAL, ""))
        );
        let Line::Close(frame) = parse("/close 4000 done for today") else {
            panic!()
        };
        assert_eq!(frame.code.as_u16(), 4000);
        assert_eq!(frame.reason.as_str(), "done for today");
        let Line::Close(frame) = parse("/close 1001") else {
            panic!()
        };
        assert_eq!((frame.code.as_u16(), frame.reason.as_str()), (1001, ""));
    }

    #[test]
    fn close_codes_an_endpoint_may_not_send_are_refused_locally() {
        // §7.4.1: 1005, 1006 and 1015 are reported, never sent; §7.4.2:
        // 0-999 unused, 1016-2999 reserved, 5000 and up undefined.
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            let why = refused(&format!("/close {code}"));
            assert!(
                why.contains(&format!("close code {code} may not be sent")),
                "{why}"
            );
        }
        assert!(refused("/close 1005").contains("reserved, never sent"));
        assert!(refused("/close abc").contains("not \"abc\""));
        assert!(refused("/close 70000").contains("a number"));
        assert!(refused(&format!("/close 1000 {}", "r".repeat(124))).contains("at most 123 bytes"));
        assert!(matches!(
            parse(&format!("/close 1000 {}", "r".repeat(123))),
            Line::Close(_)
        ));
    }

    #[test]
    fn unknown_commands_are_refused_with_the_escape_named() {
        let why = refused("/quit now");
        assert!(why.contains("unknown command /quit"), "{why}");
        assert!(why.contains("//quit now"), "{why}");
        assert_eq!(parse("/help"), Line::Help);
    }
}
