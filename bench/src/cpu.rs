//! Who used the machine's CPU during a measurement: the benchmark's own client, the servers
//! it started (`clinic serve`, `clinic work`: its child processes), PostgreSQL (every process
//! named `postgres`), and the rest; read from `/proc` before and after, and given per accepted
//! request. It says what a figure is bounded by on a machine whose cores the client, the
//! server and PostgreSQL share.

use serde::Serialize;

/// CPU time, in clock ticks, by who used it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    client: u64,
    server: u64,
    postgres: u64,
    busy: u64,
    all: u64,
}

/// CPU milliseconds per accepted request, by who used them, and how idle the machine was.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PerRequest {
    pub client_ms: f64,
    pub server_ms: f64,
    pub postgres_ms: f64,
    /// Busy time of everything else (kernel threads, other processes).
    pub other_ms: f64,
    /// The share of the machine's CPU time that was idle, in percent.
    pub idle_percent: f64,
}

impl PerRequest {
    /// All the CPU time one request took.
    pub fn total_ms(&self) -> f64 {
        self.client_ms + self.server_ms + self.postgres_ms + self.other_ms
    }
}

/// What a `/proc/<pid>/stat` line says of a process.
#[derive(Debug, PartialEq)]
struct ProcStat<'a> {
    comm: &'a str,
    ppid: u32,
    /// `utime + stime` (fields 14 and 15): the process's own CPU time.
    own: u64,
    /// `cutime + cstime` (16 and 17): that of its children that have ended and been reaped
    /// (for the postmaster, the backends that have exited).
    reaped_children: u64,
}

/// Parses a `/proc/<pid>/stat` line. `comm` is in parentheses and may hold spaces, so the
/// fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<ProcStat<'_>> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = &stat[open + 1..close];
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // fields[0] is the state, field 3.
    let ppid = fields.get(1)?.parse().ok()?;
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some(ProcStat {
        comm,
        ppid,
        own: field(14)? + field(15)?,
        reaped_children: field(16)? + field(17)?,
    })
}

/// Busy and total ticks of the whole machine, from the `cpu` line of `/proc/stat`.
fn machine() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let all: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((all - idle, all))
}

impl Sample {
    /// The CPU time used so far; zeros where `/proc` cannot be read (not Linux).
    pub fn now() -> Sample {
        let me = std::process::id();
        let mut sample = Sample::default();
        if let Some((busy, all)) = machine() {
            sample.busy = busy;
            sample.all = all;
        }
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return sample;
        };
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let Some(p) = parse_stat(&stat) else {
                continue;
            };
            if pid == me {
                sample.client += p.own;
            } else if p.ppid == me {
                sample.server += p.own;
            } else if p.comm == "postgres" {
                sample.postgres += p.own + p.reaped_children;
            }
        }
        sample
    }

    /// What was used from this sample until now, per one of `requests`.
    pub fn per_request_until_now(&self, requests: u64) -> PerRequest {
        let now = Sample::now();
        let tick_ms = 1000.0 / clock_ticks_per_second();
        let per = |before: u64, after: u64| {
            after.saturating_sub(before) as f64 * tick_ms / requests.max(1) as f64
        };
        let client_ms = per(self.client, now.client);
        let server_ms = per(self.server, now.server);
        let postgres_ms = per(self.postgres, now.postgres);
        let busy_ms = per(self.busy, now.busy);
        let all = now.all.saturating_sub(self.all);
        let idle = all.saturating_sub(now.busy.saturating_sub(self.busy));
        PerRequest {
            client_ms,
            server_ms,
            postgres_ms,
            other_ms: (busy_ms - client_ms - server_ms - postgres_ms).max(0.0),
            idle_percent: if all > 0 {
                100.0 * idle as f64 / all as f64
            } else {
                0.0
            },
        }
    }
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf(3) reads a configuration value; it has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_its_command_parent_and_cpu_ticks_even_with_spaces_in_the_command() {
        let line = "4242 (tokio (rt) 1) S 17 4242 17 0 -1 4194560 100 0 0 0 \
                    250 50 7 3 20 0 9 0 12345 1000000 500";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                comm: "tokio (rt) 1",
                ppid: 17,
                own: 300,
                reaped_children: 10,
            })
        );
    }

    #[test]
    fn a_truncated_stat_line_gives_nothing() {
        assert_eq!(parse_stat("4242 (postgres) S 17 4242"), None);
    }

    #[test]
    fn this_process_counts_as_the_client_and_its_work_shows() {
        let before = Sample::now();
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(200) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let used = before.per_request_until_now(1);
        assert!(
            used.client_ms >= 100.0,
            "200 ms of spinning counted {} ms",
            used.client_ms
        );
        assert!(used.idle_percent >= 0.0 && used.idle_percent <= 100.0);
    }
}
