//! `hearth run` on awkward input (issue 12): a line of invalid UTF-8 in interactive chat is reported and skipped,
//! `-n 0` prints no made-up rate, and an empty prompt says so. Needs SmolLM2 and Gemma3.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// `hearth run` with `args` and `stdin` piped in.
fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("run")
        .args(args)
        .args(["-t", "1", "-c", "256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hearth run");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("hearth run ends")
}

#[test]
fn interactive_chat_reports_a_line_of_invalid_utf8_and_goes_on() {
    let out = run(
        &["smollm2-135m", "--temp", "0", "-n", "4"],
        b"caf\xe9 au lait\nHi!\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("not valid UTF-8"), "{stderr}");
    // The next line was answered: one turn's text and its timing line.
    assert!(!out.stdout.is_empty(), "{stderr}");
    assert_eq!(stderr.matches(" prompt tokens").count(), 1, "{stderr}");
}

#[test]
fn zero_max_tokens_prints_nothing_and_no_rate() {
    let out = run(&["smollm2-135m", "--raw", "-n", "0", "Hello"], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(stderr.contains("no tokens generated"), "{stderr}");
    assert!(!stderr.contains("t/s"), "{stderr}");
}

#[test]
fn an_empty_prompt_is_a_clear_error() {
    // SmolLM2 adds no BOS, so an empty raw prompt has no tokens at all.
    let out = run(&["smollm2-135m", "--raw", ""], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("the prompt is empty"), "{stderr}");
    assert!(!stderr.contains("hyperparameters"), "{stderr}");
}
