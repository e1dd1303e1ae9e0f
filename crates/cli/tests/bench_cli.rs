//! `hearth bench --parallel`: N streams through the batch engine, one table row per N, each stream checked to have
//! generated exactly `-n` tokens. Needs SmolLM2. (Speeds are not asserted: benchmarks are not tests.)

use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["bench", "smollm2-135m", "-t", "1", "-r", "1"])
        .args(args)
        .output()
        .expect("hearth bench")
}

#[test]
fn parallel_streams_give_one_row_per_count() {
    let out = bench(&["--parallel", "1,3", "-p", "8", "-n", "6"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("| smollm2-135m"))
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    for (row, n) in rows.iter().zip(["1", "3"]) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[3], n, "{row}");
        assert_eq!(cells[4], "pp8+tg6", "{row}");
        // pp, tg and total are positive rates.
        for c in [cells[5], cells[7]] {
            assert!(c.parse::<f64>().is_ok_and(|r| r > 0.0), "{row}");
        }
        assert!(cells[8].ends_with('x'), "{row}");
    }
    assert!(rows[0].contains("| 1.00x |"), "{stdout}");
}

#[test]
fn parallel_refuses_what_it_cannot_measure() {
    for (args, says) in [
        (&["--parallel", "0", "-n", "8"][..], "at least 1"),
        (
            &["--parallel", "2", "-n", "1"][..],
            "at least 2 generated tokens",
        ),
    ] {
        let out = bench(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
