//! Loopback traffic never goes through a proxy set in the environment: the HTTP tests pass with
//! `HTTP_PROXY` (and its friends) pointing at a dead address.

use std::process::Command;

/// Tests that talk to the loopback server through each HTTP client.
const LOOPBACK_TESTS: [&str; 4] = [
    "ollama::byte_at_a_time",
    "ollama::retries_before_first_byte",
    "openai::byte_at_a_time",
    "openai::retries_before_first_byte",
];

#[test]
fn loopback_tests_ignore_a_proxy_in_the_environment() {
    // Port 9 (discard) on loopback: nothing listens, so a proxied request fails.
    let dead = "http://127.0.0.1:9";
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(LOOPBACK_TESTS)
        .args(["--exact", "--test-threads=1"]);
    for name in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        command.env(name, dead);
    }
    for name in ["NO_PROXY", "no_proxy"] {
        command.env_remove(name);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("test result: ok. {} passed", LOOPBACK_TESTS.len())),
        "every named test ran: {stdout}"
    );
}
