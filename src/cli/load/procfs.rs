//! What the load tool reads from `/proc`: CPU time of a process (itself,
//! bookingd, a PostgreSQL cluster), resident memory, and which process
//! listens on a local port. Linux only, like the benchmark it serves.

use std::{fs, path::Path, time::Duration};

/// CPU time (user + system) of one process.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = Stat::read(pid)?;
    Some(ticks(stat.utime + stat.stime))
}

/// CPU time this process has used so far.
pub fn own_cpu() -> Option<Duration> {
    process_cpu(std::process::id())
}

/// CPU time of a PostgreSQL cluster: the postmaster, its live children
/// (backends, walwriter, checkpointer...) and the children it has already
/// reaped (`cutime`/`cstime`: a pgbench run's backends exit before the
/// second sample; their time moves there rather than vanishing).
pub fn cluster_cpu(postmaster: u32) -> Option<Duration> {
    let root = Stat::read(postmaster)?;
    let mut total = root.utime + root.stime + root.cutime + root.cstime;
    for pid in pids() {
        if pid == postmaster {
            continue;
        }
        if let Some(stat) = Stat::read(pid).filter(|s| s.ppid == postmaster) {
            total += stat.utime + stat.stime;
        }
    }
    Some(ticks(total))
}

/// A child of `parent` running `command` (e.g. the embedded PostgreSQL's
/// postmaster under bookingd).
pub fn child_named(parent: u32, command: &str) -> Option<u32> {
    pids().into_iter().find(|pid| {
        Stat::read(*pid).is_some_and(|s| s.ppid == parent)
            && fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == command)
    })
}

/// Resident set size in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The process listening on this local TCP port (IPv4 or IPv6), found by
/// the socket's inode: `/proc/net/tcp*` names it, `/proc/<pid>/fd` holds it.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(table).ok())
        .flat_map(|text| listening_inodes(&text, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|inode| format!("socket:[{inode}]")).collect();
    pids().into_iter().find(|pid| {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
        fds.flatten().any(|fd| {
            fs::read_link(fd.path()).is_ok_and(|target| wanted.iter().any(|w| Path::new(w) == target.as_path()))
        })
    })
}

/// Inodes of sockets in LISTEN state (0A) on `port` in one `/proc/net/tcp*` table.
fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    let port_hex = format!("{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let state = fields.get(3)?;
            let inode = fields.get(9)?;
            (local.rsplit(':').next() == Some(port_hex.as_str()) && *state == "0A").then(|| inode.to_string())
        })
        .collect()
}

fn pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
}

/// `/proc` reports CPU time in USER_HZ ticks, which Linux fixes at 100 per
/// second for user space whatever the kernel's own HZ.
const TICKS_PER_SECOND: u64 = 100;

fn ticks(count: u64) -> Duration {
    Duration::from_millis(count.saturating_mul(1000 / TICKS_PER_SECOND))
}

/// The fields of `/proc/<pid>/stat` the tool uses, in clock ticks.
struct Stat {
    ppid: u32,
    utime: u64,
    stime: u64,
    cutime: u64,
    cstime: u64,
}

impl Stat {
    fn read(pid: u32) -> Option<Stat> {
        Stat::parse(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// The command name (field 2) may contain spaces and parentheses: split
    /// after its last `)`. Field 3 (state) is then index 0.
    fn parse(text: &str) -> Option<Stat> {
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let number = |field: usize| fields.get(field - 3)?.parse::<i64>().ok();
        Some(Stat {
            ppid: u32::try_from(number(4)?).ok()?,
            utime: number(14)?.max(0) as u64,
            stime: number(15)?.max(0) as u64,
            cutime: number(16)?.max(0) as u64,
            cstime: number(17)?.max(0) as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_a_command_name_with_spaces_and_parentheses() {
        let line = "4242 (postgres: bench (x)) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 75 9 3 20 0 1 0 \
                    12345 1000 100 18446744073709551615";
        let stat = Stat::parse(line).expect("parses");
        assert_eq!((stat.ppid, stat.utime, stat.stime, stat.cutime, stat.cstime), (17, 250, 75, 9, 3));
    }

    #[test]
    fn only_listening_sockets_on_the_port_are_picked() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:C383 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1
   1: 0100007F:C383 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 222 1
   2: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1";
        assert_eq!(listening_inodes(table, 50051), vec!["111".to_owned()]);
    }

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(0u64);
        }
        assert!(own_cpu().expect("own stat") > Duration::ZERO);
        assert!(rss_bytes(std::process::id()).expect("own status") > 0);
    }
}
