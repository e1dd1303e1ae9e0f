//! A model's logits do not depend on the ISA: with `HEARTH_ISA` set to each ISA this CPU has (scalar included),
//! SmolLM2 and Gemma3 give the same bits for a prompt and the decode steps after it. The matmuls share one chain
//! per output (the packed kernels), and attention and the gated activations run the AVX2 lane order in portable
//! code. So a greedy answer is the same on a laptop without AVX-512 as on a server with VNNI.
//!
//! The ISA is chosen once per process, so each runs in a child process of this test binary.

use hearth_test_support as support;

use hearth_engine::{Model, Session, ThreadPool};
use hearth_kernels::Isa;
use std::hash::{Hash, Hasher};
use std::process::Command;

/// Set in the children: compute and print the digests instead of spawning.
const CHILD: &str = "HEARTH_TEST_ISA_CHILD";
const TEST: &str = "logits_are_the_same_bits_on_every_isa";

/// The logits' bits of a 20-token prompt's last position and of 3 decode steps, hashed, and the first logit.
fn digest(name: &str) -> (u64, f32) {
    let model = Model::load(support::model_path(name)).unwrap();
    let pool = ThreadPool::new(2);
    let mut session = Session::new(&model, 256);
    let prompt: Vec<u32> = (0..20u32).map(|j| 200 + (j * 7919) % 30_000).collect();
    let mut logits = session.prefill(&model, &pool, &prompt).unwrap();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let first = logits[0];
    for step in 0..4 {
        logits.iter().for_each(|x| x.to_bits().hash(&mut h));
        if step < 3 {
            let next = (0..logits.len())
                .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
                .unwrap() as u32;
            logits = session.feed(&model, &pool, &[next], 0).unwrap();
        }
    }
    (h.finish(), first)
}

#[test]
fn logits_are_the_same_bits_on_every_isa() {
    let models = ["smollm2-135m", "gemma3-270m"];
    if std::env::var_os(CHILD).is_some() {
        for name in models {
            let (d, first) = digest(name);
            println!("DIGEST {name} {d:016x} {first}");
        }
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut runs: Vec<(Isa, Vec<String>)> = Vec::new();
    for isa in Isa::available() {
        let out = Command::new(&exe)
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env("HEARTH_ISA", isa.to_string())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "HEARTH_ISA={isa} child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The harness prints its "test ... " prefix on the first digest's line.
        let lines: Vec<String> = stdout
            .split("DIGEST ")
            .skip(1)
            .map(|s| s.lines().next().unwrap_or("").to_string())
            .collect();
        assert_eq!(lines.len(), models.len(), "HEARTH_ISA={isa}: {stdout}");
        runs.push((isa, lines));
    }
    assert!(
        runs.len() >= 2,
        "only {:?} on this CPU: nothing to compare",
        runs.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    let (first_isa, first) = &runs[0];
    for (isa, lines) in &runs[1..] {
        assert_eq!(lines, first, "{isa} vs {first_isa}");
    }
}
