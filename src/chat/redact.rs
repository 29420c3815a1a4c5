//! Secrets kept out of logs: a URL shown with its password masked.
//!
//! The Redis URL is the one setting that carries a credential inside a
//! value that is otherwise worth logging (`redis://:password@host:port`,
//! or for a Unix socket `redis+unix:///run/redis.sock?pass=password`).
//! Every place that prints it prints [`RedactedUrl`] instead, so the
//! server says where it is connected without telling the log's readers
//! how to connect there too.

use std::fmt;

/// Displays a URL with its password replaced by `***`: the password in
/// the user information (`user:password@`; a user information without a
/// colon is masked whole, since some tools put a bare password there),
/// and the value of a `pass` or `password` query parameter. Everything
/// else is shown as it is.
///
/// ```
/// use rfc6455::chat::RedactedUrl;
/// let url = "redis://:s3cret@127.0.0.1:6379";
/// assert_eq!(RedactedUrl(url).to_string(), "redis://:***@127.0.0.1:6379");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RedactedUrl<'a>(pub &'a str);

impl fmt::Display for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0;
        let Some((scheme, rest)) = url.split_once("://") else {
            // Not a URL we can take apart: show none of it, since we cannot
            // tell where a password would be.
            return f.write_str("***");
        };
        write!(f, "{scheme}://")?;
        // The user information ends at the last `@`. Taking the last one
        // (not the first, and not only within the authority) errs towards
        // masking too much: a password holding an unescaped `@`, `/` or
        // `?` is still masked whole.
        let rest = match rest.rfind('@') {
            Some(at) => {
                let (userinfo, after) = (&rest[..at], &rest[at + 1..]);
                match userinfo.split_once(':') {
                    Some((user, _password)) => write!(f, "{user}:***@")?,
                    None => f.write_str("***@")?,
                }
                after
            }
            None => rest,
        };
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        f.write_str(before_query)?;
        if let Some(query) = query {
            f.write_str("?")?;
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    f.write_str("&")?;
                }
                match pair.split_once('=') {
                    Some((key, _))
                        if key.eq_ignore_ascii_case("pass")
                            || key.eq_ignore_ascii_case("password") =>
                    {
                        write!(f, "{key}=***")?
                    }
                    _ => f.write_str(pair)?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::RedactedUrl;

    fn shown(url: &str) -> String {
        RedactedUrl(url).to_string()
    }

    #[test]
    fn a_password_is_masked_and_the_rest_shown() {
        assert_eq!(
            shown("redis://:s3cret@127.0.0.1:6379"),
            "redis://:***@127.0.0.1:6379"
        );
        assert_eq!(
            shown("rediss://alice:s3cret@redis.example:6380/2"),
            "rediss://alice:***@redis.example:6380/2"
        );
        assert_eq!(
            shown("redis+unix:///run/redis.sock?db=1&pass=s3cret"),
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );
        assert_eq!(
            shown("redis://h:1/0?PASSWORD=s3cret&user=u"),
            "redis://h:1/0?PASSWORD=***&user=u"
        );
    }

    #[test]
    fn a_url_without_a_password_is_unchanged() {
        for url in [
            "redis://127.0.0.1:6379",
            "redis://h:1/3?db=3",
            "redis://[::1]:6379",
        ] {
            assert_eq!(shown(url), url);
        }
    }

    #[test]
    fn awkward_passwords_are_masked_whole() {
        for url in [
            "redis://:p@ss@h:1",
            "redis://:pa/ss@h:1",
            "redis://:pa?ss@h:1",
            "redis://:pa:ss@h:1",
        ] {
            assert_eq!(shown(url), "redis://:***@h:1", "{url}");
        }
        // A bare user information may be a password: masked.
        assert_eq!(shown("redis://s3cret@h:1"), "redis://***@h:1");
        // Not a URL at all: nothing of it is shown.
        assert_eq!(shown(":s3cret@h:1"), "***");
    }
}
