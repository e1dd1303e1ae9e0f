//! `hearth dora-node` replaces itself with the `hearth-dora-node` binary (built apart: dora-node-api is heavy), passing
//! every argument through unchanged — `--help` included — and its exit code back; without the binary it says how to
//! build it.

use std::process::Command;

#[cfg(unix)]
#[test]
fn dora_node_runs_the_node_binary_with_the_arguments_unchanged() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("hearth-dora-node");
    std::fs::write(&fake, "#!/bin/sh\necho \"args:$*\"\nexit 7\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["dora-node", "smollm2-135m", "--actions", "a.json", "--help"])
        .env("HEARTH_DORA_NODE", &fake)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "args:smollm2-135m --actions a.json --help\n"
    );
}

#[test]
fn dora_node_without_the_node_binary_says_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["dora-node", "m"])
        .env_remove("HEARTH_DORA_NODE")
        .env("PATH", dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if std::path::Path::new(env!("CARGO_BIN_EXE_hearth"))
        .with_file_name("hearth-dora-node")
        .exists()
    {
        // Built beside hearth (scripts/build-dora-node.sh into this target folder): then it is found, not missing.
        assert!(!err.contains("scripts/build-dora-node.sh"), "{err}");
        return;
    }
    assert!(!out.status.success());
    assert!(err.contains("scripts/build-dora-node.sh"), "{err}");
}
