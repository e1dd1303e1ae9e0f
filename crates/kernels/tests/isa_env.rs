//! `HEARTH_ISA` end to end: the override is read once per process, so each case runs this test binary again as a
//! child process with the variable set.

use hearth_kernels::{matmul, quantize_row, selected_isa, DType, Isa, ThreadPool, WeightMatrix};
use std::process::Command;

/// In the child: report what matmul does under the inherited HEARTH_ISA.
#[test]
fn child_reports_selected_isa() {
    let Ok(expect) = std::env::var("HEARTH_ISA_EXPECT") else {
        return;
    };
    let mut data = vec![0u8; 34];
    quantize_row(DType::Q8_0, &[0.5; 32], &mut data).unwrap();
    let w = WeightMatrix {
        dtype: DType::Q8_0,
        data: &data,
        rows: 1,
        cols: 32,
    };
    let mut y = [0f32];
    let r = matmul(&ThreadPool::new(1), &w, &[1.0; 32], 1, &mut y);
    match expect.as_str() {
        "error" => {
            let e = r.unwrap_err().to_string();
            assert!(e.contains("HEARTH_ISA"), "{e}");
        }
        isa => {
            r.unwrap();
            assert_eq!(selected_isa().unwrap().name(), isa);
            assert!((y[0] - 16.0).abs() < 0.1, "{}", y[0]);
        }
    }
}

fn run_child(value: &str, expect: &str) {
    let exe = std::env::current_exe().unwrap();
    // Under an emulator (scripts/test-aarch64.sh runs the tests in qemu-user) the child must go through it too.
    let mut cmd = match std::env::var("HEARTH_TEST_RUNNER") {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut words = runner.split_whitespace();
            let mut c = Command::new(words.next().unwrap_or_default());
            c.args(words).arg(&exe);
            c
        }
        _ => Command::new(&exe),
    };
    let out = cmd
        .args(["--exact", "child_reports_selected_isa", "--nocapture"])
        .env("HEARTH_ISA", value)
        .env("HEARTH_ISA_EXPECT", expect)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "HEARTH_ISA={value}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn override_forces_each_available_isa_and_refuses_others() {
    if std::env::var("HEARTH_ISA_EXPECT").is_ok() {
        return;
    }
    for isa in Isa::ALL {
        if isa.is_available() {
            run_child(isa.name(), isa.name());
        } else {
            run_child(isa.name(), "error");
        }
    }
    run_child("sse9", "error");
}
