//! What /proc says about a process: CPU time and resident memory.

use std::fs;

/// Clock ticks per second in /proc/PID/stat. The kernel reports these in
/// USER_HZ, which is 100 on every Linux ABI we run on (x86-64, arm64).
const USER_HZ: f64 = 100.0;

/// User plus system CPU seconds used so far by `pid` (`self` for us), all
/// threads included (fields 14 and 15 of /proc/PID/stat).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // count fields from the last ')'.
    let after = &stat[stat.rfind(')')? + 2..];
    let mut fields = after.split(' ');
    // `after` starts at field 3 (state); utime is field 14, stime 15.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// The resident set of `pid` in bytes (VmRSS of /proc/PID/status).
pub fn rss_bytes(pid: &str) -> Option<u64> {
    status_kib(pid, "VmRSS:").map(|k| k * 1024)
}

fn status_kib(pid: &str, key: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// CPU seconds and RSS of the server (if a PID was given) and of this
/// generator, read together.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub server_cpu: Option<f64>,
    pub server_rss: Option<u64>,
    pub own_cpu: f64,
}

pub fn sample(server_pid: Option<u32>) -> Sample {
    let pid = server_pid.map(|p| p.to_string());
    Sample {
        server_cpu: pid.as_deref().and_then(cpu_seconds),
        server_rss: pid.as_deref().and_then(rss_bytes),
        own_cpu: cpu_seconds("self").unwrap_or(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_process() {
        assert!(cpu_seconds("self").is_some());
        assert!(rss_bytes("self").unwrap() > 0);
    }
}
