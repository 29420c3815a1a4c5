//! Login rate limits (issue 17): per account and per client address,
//! both in bounded memory.
//!
//! - **Per address** (IPv6: per /64, as the front door counts them): a
//!   token bucket of [`LimitConfig::ip_burst`] attempts, refilled at
//!   [`LimitConfig::ip_per_minute`] a minute. Every account request
//!   (register, login, refresh, logout, password) costs one.
//! - **Per account** (by the nick's skeleton, so `Alice` and `alice`
//!   share one): [`LimitConfig::free_failures`] failed logins in a row
//!   are free; each one after locks the account for
//!   [`LimitConfig::lockout`], doubling with every further failure up
//!   to [`LimitConfig::max_lockout`]. A success clears it; so does
//!   [`LimitConfig::forget_after`] with no failure.
//!
//! The lockout is for strangers: an address that logged in to the
//! account (or registered it) within [`KNOWN_FOR`] bypasses it (its own
//! attempts still pay its address's bucket), so nobody can keep a user
//! out of its account by failing on purpose from elsewhere.
//!
//! A login is counted as a failure when it starts ([`Limiter::begin`]),
//! before the password is checked, and a success clears it: requests
//! sent all at once cannot all pass the lock's check before the first
//! failure is recorded.
//!
//! Each map holds at most [`LimitConfig::max_entries`]. A full map first
//! drops the entries that have gone back to nothing (a full bucket, an
//! old failure). If none has, a full address map refuses the new address
//! as if limited; a full account map evicts the account whose last
//! failure is oldest among those not locked (else the one whose lock ends
//! first), so a flood of made-up nicks never switches the lockout off
//! for the next account, and a locked account, the one under attack, is
//! the last to go.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long an address that logged in to an account stays known to it
/// (and past its lockout).
pub const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// The limits. Defaults in each field's doc.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitConfig {
    /// Attempts an address may make at once. Default 10.
    pub ip_burst: f64,
    /// Attempts an address regains a minute. Default 10.
    pub ip_per_minute: f64,
    /// Failed logins in a row before an account locks. Default 5.
    pub free_failures: u32,
    /// The first lockout. Default 30 s.
    pub lockout: Duration,
    /// The longest lockout. Default 15 min.
    pub max_lockout: Duration,
    /// Failures older than this are forgotten. Default 15 min.
    pub forget_after: Duration,
    /// Most addresses, and most accounts, tracked. Default 10,000 each
    /// (under 1 MiB together).
    pub max_entries: usize,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            ip_burst: 10.0,
            ip_per_minute: 10.0,
            free_failures: 5,
            lockout: Duration::from_secs(30),
            max_lockout: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(15 * 60),
            max_entries: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

impl LimitConfig {
    /// Refuses limits the limiter cannot keep: an address must be able
    /// to make an attempt and regain one (a refill of 0 would wait for
    /// ever), and each map must hold at least one entry.
    pub fn check(&self) -> Result<(), String> {
        let finite = |v: f64| v.is_finite() && v > 0.0;
        if !finite(self.ip_burst) || self.ip_burst < 1.0 {
            return Err(format!(
                "login limit ip_burst must be at least 1 (is {})",
                self.ip_burst
            ));
        }
        if !finite(self.ip_per_minute) {
            return Err(format!(
                "login limit ip_per_minute must be above 0 (is {})",
                self.ip_per_minute
            ));
        }
        if self.max_entries == 0 {
            return Err("login limit max_entries must be at least 1".into());
        }
        Ok(())
    }
}

/// The login limiter; the caller locks it (every call is short).
#[derive(Debug)]
pub struct Limiter {
    config: LimitConfig,
    ips: HashMap<IpAddr, Bucket>,
    accounts: HashMap<String, Failures>,
    /// (account's skeleton, address) → its last success.
    known: HashMap<(String, IpAddr), Instant>,
}

impl Limiter {
    /// An empty limiter.
    pub fn new(config: LimitConfig) -> Self {
        Self {
            config,
            ips: HashMap::new(),
            accounts: HashMap::new(),
            known: HashMap::new(),
        }
    }

    /// Takes one attempt from `ip`'s bucket: `Err(wait)` when it is
    /// empty (or the map is full of live buckets).
    pub fn attempt(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let c = self.config;
        let per_sec = c.ip_per_minute / 60.0;
        let refill = |b: &Bucket| {
            (b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec).min(c.ip_burst)
        };
        if !self.ips.contains_key(&ip) && self.ips.len() >= c.max_entries {
            self.ips.retain(|_, b| refill(b) < c.ip_burst);
            if self.ips.len() >= c.max_entries {
                return Err(Duration::from_secs_f64(1.0 / per_sec));
            }
        }
        let bucket = self.ips.entry(ip).or_insert(Bucket {
            tokens: c.ip_burst,
            at: now,
        });
        bucket.tokens = refill(bucket);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_sec))
        }
    }

    /// `Err(wait)` while the account with skeleton `who` is locked out.
    pub fn locked(&self, who: &str, now: Instant) -> Result<(), Duration> {
        match self.accounts.get(who).and_then(|f| f.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// A login for `who` from `ip` starts: `Err(wait)` while it is
    /// locked out, unless `ip` is known to the account (it logged in
    /// lately: [`succeeded`](Self::succeeded)); else it is counted as a
    /// failure at once ([`failed`](Self::failed)), until `succeeded` says
    /// otherwise.
    pub fn begin(&mut self, who: &str, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = (who.to_owned(), ip);
        if self
            .known
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < KNOWN_FOR)
        {
            return Ok(());
        }
        self.locked(who, now)?;
        self.failed(who, now);
        Ok(())
    }

    /// A failed login for `who`: past the free ones, locks it.
    pub fn failed(&mut self, who: &str, now: Instant) {
        let c = self.config;
        let stale = |f: &Failures| now.duration_since(f.last) > c.forget_after;
        if !self.accounts.contains_key(who) && self.accounts.len() >= c.max_entries {
            self.accounts
                .retain(|_, f| !stale(f) || f.locked_until.is_some_and(|u| u > now));
            if self.accounts.len() >= c.max_entries {
                self.evict(now);
            }
        }
        let f = self.accounts.entry(who.to_owned()).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: None,
        });
        if stale(f) {
            f.count = 0;
        }
        f.count += 1;
        f.last = now;
        if f.count > c.free_failures {
            let doublings = (f.count - c.free_failures - 1).min(16);
            let lock = c.lockout.saturating_mul(1 << doublings).min(c.max_lockout);
            f.locked_until = Some(now + lock);
        }
    }

    /// Makes room for one account: the unlocked one whose last failure
    /// is oldest, else the one whose lock ends first.
    fn evict(&mut self, now: Instant) {
        let locked = |f: &Failures| f.locked_until.filter(|u| *u > now);
        let victim = self
            .accounts
            .iter()
            .min_by_key(|(_, f)| (locked(f).is_some(), locked(f).unwrap_or(f.last)))
            .map(|(who, _)| who.clone());
        if let Some(who) = victim {
            self.accounts.remove(&who);
        }
    }

    /// A successful login (or registration) for `who` from `ip`: its
    /// failures are forgotten, and `ip` is known to it from now on. When
    /// the known map is full the oldest is forgotten.
    pub fn succeeded(&mut self, who: &str, ip: IpAddr, now: Instant) {
        self.accounts.remove(who);
        let key = (who.to_owned(), ip);
        if !self.known.contains_key(&key) && self.known.len() >= self.config.max_entries {
            self.known
                .retain(|_, at| now.duration_since(*at) < KNOWN_FOR);
            let oldest = self.known.iter().min_by_key(|(_, at)| **at);
            if let Some(k) = oldest.map(|(k, _)| k.clone()) {
                self.known.remove(&k);
            }
        }
        self.known.insert(key, now);
    }

    /// Addresses and accounts tracked (for tests).
    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        (self.ips.len(), self.accounts.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn an_address_gets_its_burst_then_waits() {
        let mut l = Limiter::new(LimitConfig::default());
        let t = Instant::now();
        for _ in 0..10 {
            assert!(l.attempt(ip(1), t).is_ok());
        }
        let wait = l.attempt(ip(1), t).unwrap_err();
        assert_eq!(wait, Duration::from_secs(6), "10 a minute: one every 6 s");
        assert!(l.attempt(ip(2), t).is_ok(), "another address has its own");
        assert!(l.attempt(ip(1), t + Duration::from_secs(6)).is_ok());
    }

    #[test]
    fn an_account_locks_after_five_failures_and_doubles() {
        let mut l = Limiter::new(LimitConfig::default());
        let t = Instant::now();
        for _ in 0..5 {
            l.failed("allce", t);
            assert!(l.locked("allce", t).is_ok());
        }
        l.failed("allce", t);
        assert_eq!(l.locked("allce", t), Err(Duration::from_secs(30)));
        l.failed("allce", t);
        assert_eq!(l.locked("allce", t), Err(Duration::from_secs(60)));
        for _ in 0..20 {
            l.failed("allce", t);
        }
        assert_eq!(
            l.locked("allce", t),
            Err(Duration::from_secs(900)),
            "capped"
        );
        assert!(l.locked("allce", t + Duration::from_secs(900)).is_ok());
        l.succeeded("allce", ip(1), t);
        l.failed("allce", t);
        assert!(
            l.locked("allce", t).is_ok(),
            "a success starts the count again"
        );
    }

    #[test]
    fn a_flood_of_distinct_addresses_and_nicks_stays_bounded() {
        let config = LimitConfig {
            max_entries: 100,
            ..LimitConfig::default()
        };
        let mut l = Limiter::new(config);
        let t = Instant::now();
        for n in 0..10_000 {
            let _ = l.attempt(ip(n), t);
            l.failed(&format!("nick{n}"), t);
        }
        assert_eq!(l.len(), (100, 100));
        // The account map made room for each: the newest is tracked.
        assert!(l.accounts.contains_key("nick9999"));
        // The tracked ones are not evicted by the flood: still limited.
        for _ in 0..9 {
            assert!(l.attempt(ip(0), t).is_ok());
        }
        assert!(l.attempt(ip(0), t).is_err());
        // A minute later the flood's buckets are full again and make room.
        let later = t + Duration::from_secs(60);
        assert!(l.attempt(ip(20_000), later).is_ok());
        assert!(l.len().0 <= 100);
    }

    #[test]
    fn a_full_account_map_evicts_an_unlocked_account_never_a_locked_one() {
        let config = LimitConfig {
            max_entries: 10,
            ..LimitConfig::default()
        };
        let mut l = Limiter::new(config);
        let t = Instant::now();
        for _ in 0..6 {
            l.failed("allce", t);
        }
        assert!(l.locked("allce", t).is_err());
        for n in 0..100 {
            l.failed(&format!("nick{n}"), t + Duration::from_millis(n));
        }
        assert!(l.locked("allce", t).is_err(), "the locked account stays");
        for _ in 0..6 {
            l.failed("bob", t + Duration::from_secs(1));
        }
        assert!(l.locked("bob", t + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn a_login_counts_as_a_failure_from_its_start() {
        let mut l = Limiter::new(LimitConfig::default());
        let t = Instant::now();
        for _ in 0..6 {
            assert!(l.begin("allce", ip(9), t).is_ok());
        }
        assert!(l.begin("allce", ip(9), t).is_err(), "six in flight lock it");
        l.succeeded("allce", ip(1), t);
        assert!(l.begin("allce", ip(9), t).is_ok());
    }

    #[test]
    fn a_known_address_is_past_the_lockout_and_a_stranger_is_not() {
        let mut l = Limiter::new(LimitConfig::default());
        let t = Instant::now();
        l.succeeded("allce", ip(1), t);
        for _ in 0..10 {
            l.failed("allce", t);
        }
        assert!(l.begin("allce", ip(2), t).is_err(), "a stranger waits");
        assert!(l.begin("allce", ip(1), t).is_ok(), "its user does not");
        let later = t + KNOWN_FOR;
        for _ in 0..10 {
            l.failed("allce", later);
        }
        assert!(
            l.begin("allce", ip(1), later).is_err(),
            "known for a while only"
        );
    }
}
