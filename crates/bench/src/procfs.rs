//! Reading `/proc`: resident memory, CPU time and context switches of a
//! process, the load average and the machine's description. The parsers are
//! pure functions of the file's text so they can be tested.

use std::path::Path;

/// Memory and thread figures from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// `VmRSS`, KiB.
    pub rss_kb: u64,
    /// `VmHWM` (peak resident), KiB.
    pub hwm_kb: u64,
    /// `Threads`.
    pub threads: u64,
}

fn field_kb(line: &str, name: &str) -> Option<u64> {
    let rest = line.strip_prefix(name)?.strip_prefix(':')?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Parses the text of `/proc/PID/status`; `None` without a `VmRSS` line
/// (a kernel thread, or a process that is exiting).
pub fn parse_status(text: &str) -> Option<Status> {
    let mut s = Status::default();
    let mut rss = None;
    for line in text.lines() {
        if let Some(v) = field_kb(line, "VmRSS") {
            rss = Some(v);
        } else if let Some(v) = field_kb(line, "VmHWM") {
            s.hwm_kb = v;
        } else if let Some(v) = field_kb(line, "Threads") {
            s.threads = v;
        }
    }
    s.rss_kb = rss?;
    Some(s)
}

/// Context switches (voluntary + involuntary) from the text of a
/// `/proc/PID/task/TID/status`.
pub fn parse_ctxt_switches(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| {
            field_kb(l, "voluntary_ctxt_switches")
                .or_else(|| field_kb(l, "nonvoluntary_ctxt_switches"))
        })
        .sum()
}

/// `utime + stime` in clock ticks from the text of `/proc/PID/stat`. The
/// command name (field 2) may hold spaces and parentheses, so fields are
/// counted from the last `)`.
pub fn parse_stat_cpu_ticks(text: &str) -> Option<u64> {
    let after = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The three load averages from the text of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<(f64, f64, f64)> {
    let mut it = text.split_whitespace().map(|s| s.parse::<f64>().ok());
    Some((it.next()??, it.next()??, it.next()??))
}

/// Clock ticks per second (`_SC_CLK_TCK`, 100 on Linux).
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Memory of process `pid` now.
pub fn status(pid: u32) -> Option<Status> {
    parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// CPU time (user + system) process `pid` has used, in milliseconds.
pub fn cpu_ms(pid: u32) -> Option<u64> {
    let ticks = parse_stat_cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    Some(ticks * 1000 / clk_tck())
}

/// Context switches of every thread of process `pid` (a proxy for wake-ups).
pub fn ctxt_switches(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .map(|t| parse_ctxt_switches(&t))
        .sum()
}

/// `/proc/loadavg` as "1.23 0.98 0.75" (1, 5, 15 minutes).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| parse_loadavg(&t))
        .map(|(a, b, c)| format!("{a:.2} {b:.2} {c:.2}"))
        .unwrap_or_else(|| "unknown".into())
}

/// CPU model and logical CPU count from the text of `/proc/cpuinfo`.
pub fn parse_cpuinfo(text: &str) -> (String, usize) {
    let mut model = None;
    let mut n = 0;
    for l in text.lines() {
        if l.starts_with("processor") {
            n += 1;
        }
        if model.is_none() && l.starts_with("model name") {
            model = l.split_once(':').map(|(_, v)| v.trim().to_string());
        }
    }
    (model.unwrap_or_else(|| "unknown CPU".into()), n)
}

/// A one-line description of the machine: CPU, memory (as `free` reports
/// it), kernel.
pub fn machine() -> String {
    let (model, n) = parse_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default());
    let mem = std::process::Command::new("free")
        .arg("-m")
        .output()
        .ok()
        .and_then(|o| {
            let t = String::from_utf8_lossy(&o.stdout).to_string();
            t.lines().find(|l| l.starts_with("Mem:")).map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                format!(
                    "{} MiB RAM ({} MiB available)",
                    f.get(1).unwrap_or(&"?"),
                    f.get(6).unwrap_or(&"?")
                )
            })
        })
        .unwrap_or_else(|| "memory unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    format!("{model} × {n} logical CPUs, {mem}, Linux {kernel}")
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process on the
/// machine, so a send time taken here and a receive time taken in the engine
/// process can be subtracted.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Makes a child die when the process that spawned it dies (also when it is
/// killed), so an interrupted benchmark leaves no broker or engine behind.
pub fn die_with_parent(cmd: &mut tokio::process::Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Whether an executable file exists at `p`.
pub fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tgreenlight-benc\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t  812340 kB\nVmHWM:\t   41236 kB\nVmRSS:\t   38112 kB\nRssAnon:\t   30000 kB\nThreads:\t5\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n";

    #[test]
    fn status_fields() {
        let s = parse_status(STATUS).unwrap();
        assert_eq!(
            s,
            Status {
                rss_kb: 38112,
                hwm_kb: 41236,
                threads: 5
            }
        );
        assert_eq!(parse_ctxt_switches(STATUS), 127);
        // A kernel thread has no VmRSS.
        assert!(parse_status("Name:\tkthreadd\nThreads:\t1\n").is_none());
    }

    #[test]
    fn stat_cpu_ticks_with_a_hostile_name() {
        // utime = 250, stime = 31 (fields 14 and 15); the name holds ") (".
        let stat = "4242 (we ird) (name) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 31 0 0 20 0 5 0 123 830000000 9528 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(281));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        assert_eq!(parse_stat_cpu_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn loadavg_and_cpuinfo() {
        assert_eq!(
            parse_loadavg("2.04 2.12 1.84 2/105 12427\n"),
            Some((2.04, 2.12, 1.84))
        );
        assert_eq!(parse_loadavg("x"), None);
        let (m, n) = parse_cpuinfo(
            "processor\t: 0\nmodel name\t: AMD EPYC\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\n",
        );
        assert_eq!((m.as_str(), n), ("AMD EPYC", 2));
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = mono_ns();
        let b = mono_ns();
        assert!(b >= a && a > 0);
    }
}
