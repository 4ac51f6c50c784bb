//! The shipped deployment files are valid as their tools read them: the systemd unit passes
//! `systemd-analyze verify` with no complaint, and the flags its `ExecStart` gives exist.
//!
//! Needs `systemd-analyze` (Debian's `systemd`, which `.ci/run` installs); elsewhere it skips with
//! a notice.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sse-apps");

fn unit() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/systemd/sse-apps.service"
    ))
    .unwrap()
}

/// `systemd-analyze verify` of `text` as a unit file; what it said (it exits 0 on unknown keys,
/// so silence is the test).
fn verify(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sse-apps.service");
    // The unit names the installed binary; here it is the one just built.
    std::fs::write(&path, text.replace("/usr/local/bin/sse-apps", BIN)).unwrap();
    let output = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_systemd_unit_verifies_cleanly_and_its_flags_exist() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have systemd-analyze (.ci/run installs systemd)"
        );
        eprintln!("NOTICE: skipping: systemd-analyze is not installed (apt-get install systemd)");
        return;
    }
    let unit = unit();
    assert_eq!(verify(&unit), "", "systemd-analyze complained");
    // The check itself is real: a key systemd does not know is reported.
    let broken = unit.replace("[Install]", "Bogus=1\n[Install]");
    assert!(verify(&broken).contains("Unknown key 'Bogus'"));

    // Every flag and environment variable the unit gives is one the binary knows.
    let exec_start = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
    let args: Vec<&str> = exec_start.split_whitespace().skip(1).collect();
    let help = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        assert!(help.contains(flag), "{flag} is not a flag of sse-apps");
    }
    for variable in unit.lines().filter_map(|l| l.strip_prefix("Environment=")) {
        let name = variable.split('=').next().unwrap();
        assert!(help.contains(name), "{name} is not read by sse-apps");
    }
}
