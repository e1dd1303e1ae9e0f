//! An idle compute pool gives its cores back: after a job its workers spin for at most a moment, then park. This is
//! what lets a model share a small machine with a robot's control loop (issue 16) — a worker that kept polling would
//! take a core from the loop between two decisions.

use hearth_kernels::ThreadPool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// CPU time (user + system) this process has used so far, from /proc (in clock ticks, usually 10 ms).
#[cfg(target_os = "linux")]
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The command name (field 2) may hold spaces; the fields after its closing ')' start at field 3.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 overall, so 11 and 12 after the name.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn idle_workers_use_no_cpu() {
    let pool = ThreadPool::new(3);
    let sum = AtomicUsize::new(0);
    pool.parallel_for(1000, |i| {
        sum.fetch_add(i, Ordering::Relaxed);
    });
    assert_eq!(sum.load(Ordering::Relaxed), 499_500);
    let before = cpu_ticks();
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks() - before;
    // Two workers spinning through that second would use up to 200 ticks (fewer on a busy machine, where they get a
    // share of a core); parked, they use none. 5 ticks (50 ms) leaves room for the test harness itself.
    assert!(
        used <= 5,
        "the idle pool used {used} clock ticks of CPU in one second"
    );
    // And the parked workers still wake for the next job.
    pool.parallel_for(10, |i| {
        sum.fetch_add(i, Ordering::Relaxed);
    });
    assert_eq!(sum.load(Ordering::Relaxed), 499_545);
}
