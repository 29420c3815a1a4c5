//! The server's own session tokens (issue 17).
//!
//! An access token is a JWT (RFC 7519), HS256 (RFC 7518 §3.2), signed with
//! the server's key: 32 random bytes made by the first server to start on
//! a store and kept there ([`Accounts::signing_key`](crate::chat::backend::Accounts::signing_key)),
//! so every server sharing the store accepts the others' tokens. Its
//! claims: `iss` = [`ISSUER`], `sub` = the nick, `sid` = the session id,
//! `iat` and `exp` ([`ACCESS_TTL`] later). `iss` is what tells ours from a
//! token signed with `--jwt-secret` by someone else: a token naming our
//! issuer is checked with our key only, any other with the external
//! secret only.
//!
//! A refresh token is 32 random bytes, hex, opaque: the store keeps only
//! its SHA-256 digest, with its session. It is spent when used, and a
//! new one takes its place; a spent one used again means it was copied,
//! so its session is revoked.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sha2::{Digest, Sha256};

/// The `iss` claim of the server's own tokens.
pub const ISSUER: &str = "rfc6455-chat";
/// How long an access token is good for: an hour (OWASP's JWT cheat
/// sheet: short, with a refresh token to renew it), in seconds.
pub const ACCESS_TTL: u64 = 60 * 60;
/// How long a refresh token is good for: 30 days, in seconds.
pub const REFRESH_TTL: u64 = 30 * 24 * 60 * 60;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    sid: String,
    iat: u64,
    exp: u64,
}

/// Whose token it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The nick.
    pub nick: String,
    /// The session id.
    pub session: String,
}

/// Why a token is refused (the reason of close 4001, or `bad_token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not one of ours: another issuer (maybe an external token).
    NotOurs,
    /// Ours, past its `exp`.
    Expired,
    /// Ours by its issuer, but its signature or claims are wrong.
    Invalid,
}

/// The server's signing key, both ways.
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Keys {
    /// Keys from the stored secret.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// A signed access token for `nick`'s session `session`, issued at
    /// `now` (seconds since the Unix epoch).
    pub fn sign(&self, nick: &str, session: &str, now: u64) -> String {
        let claims = Claims {
            iss: ISSUER.to_owned(),
            sub: nick.to_owned(),
            sid: session.to_owned(),
            iat: now,
            exp: now + ACCESS_TTL,
        };
        // HS256 over claims that always serialise: cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }

    /// Checks one of our tokens (no clock leeway: we issued it).
    pub fn verify(&self, token: &str) -> Result<Verified, Refused> {
        if !is_ours(token) {
            return Err(Refused::NotOurs);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 0;
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation) {
            Ok(data) => Ok(Verified {
                nick: data.claims.sub,
                session: data.claims.sid,
            }),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                Err(Refused::Expired)
            }
            Err(_) => Err(Refused::Invalid),
        }
    }
}

/// Whether `token` names our issuer, read before its signature is
/// checked: only to pick the key it is checked with.
pub fn is_ours(token: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    use base64::Engine;
    let Some(payload) = token.split('.').nth(1) else {
        return false;
    };
    let Ok(json) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload) else {
        return false;
    };
    serde_json::from_slice::<Iss>(&json).is_ok_and(|c| c.iss.as_deref() == Some(ISSUER))
}

/// A new refresh token: 32 random bytes, hex.
pub fn new_refresh() -> String {
    let mut bytes = [0u8; 32];
    random(&mut bytes);
    hex(&bytes)
}

/// Fills `out` from the operating system's generator (through a
/// ChaCha20 stream seeded from it, should it fail once).
fn random(out: &mut [u8]) {
    if getrandom::fill(out).is_err() {
        crate::proto::MaskRng::from_entropy().fill(out);
    }
}

/// A new signing key: 32 random bytes (RFC 7518 §3.2: a key of at least
/// the hash's size, 256 bits for HS256).
pub fn new_key() -> Vec<u8> {
    let mut bytes = vec![0u8; 32];
    random(&mut bytes);
    bytes
}

/// The SHA-256 digest of a refresh token, hex: what the store keeps.
pub fn digest(refresh: &str) -> String {
    hex(&Sha256::digest(refresh.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_token_verifies_with_the_same_key_only() {
        let keys = Keys::new(b"0123456789abcdef0123456789abcdef");
        let now = crate::chat::now_ms() / 1000;
        let token = keys.sign("alice", "s1", now);
        assert!(is_ours(&token));
        assert_eq!(
            keys.verify(&token),
            Ok(Verified {
                nick: "alice".into(),
                session: "s1".into()
            })
        );
        let other = Keys::new(b"another key, another server, 32b");
        assert_eq!(other.verify(&token), Err(Refused::Invalid));
        let old = keys.sign("alice", "s1", now - ACCESS_TTL - 1);
        assert_eq!(keys.verify(&old), Err(Refused::Expired));
    }

    #[test]
    fn an_external_token_is_not_ours() {
        let external = jsonwebtoken::encode(
            &Header::default(),
            &serde_json::json!({"sub": "bob", "exp": 4_000_000_000u64}),
            &EncodingKey::from_secret(b"their secret"),
        )
        .unwrap();
        assert!(!is_ours(&external));
        let keys = Keys::new(b"0123456789abcdef0123456789abcdef");
        assert_eq!(keys.verify(&external), Err(Refused::NotOurs));
        assert!(!is_ours("not a token"));
    }

    #[test]
    fn refresh_tokens_are_random_and_stored_as_digests() {
        let (a, b) = (new_refresh(), new_refresh());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(digest(&a), digest(&a));
        assert_ne!(digest(&a), a);
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
