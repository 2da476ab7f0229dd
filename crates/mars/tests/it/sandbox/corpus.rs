//! The hostile corpus of the sandbox itself: one table, each row its own test. Each row gives
//! a candidate's test source, the limits it runs under and what the run must show.

use mars::eval::sandbox::{Execution, LimitHit, Sandbox, SandboxConfig, Termination};

use super::{
    as_root, assert_normal_candidate_passes, assert_wall_limit, config, run_watched, secs,
};

/// One hostile candidate: its test source, the run's wall limit and other config changes,
/// what its run must show, and whether a normal candidate must pass in the same sandbox after.
struct Hostile {
    source: &'static str,
    run_wall: u64,
    tweak: fn(&mut SandboxConfig),
    check: fn(&Observed),
    good_after: bool,
}

/// A run and what the host saw of it.
struct Observed {
    ran: Execution,
    config: SandboxConfig,
    /// The most processes of the jail's uid seen at once while it ran (sampled).
    peak: usize,
}

const KEEP: fn(&mut SandboxConfig) = |_| {};

async fn hostile(case: Hostile) {
    as_root(async {
        let mut config = config(case.run_wall);
        (case.tweak)(&mut config);
        let sandbox = Sandbox::new(config.clone()).await.unwrap();
        let (ran, peak) = run_watched(&sandbox, case.source).await;
        (case.check)(&Observed { ran, config, peak });
        if case.good_after {
            assert_normal_candidate_passes(&sandbox).await;
        }
    })
    .await;
}

/// One test per case: a table, each row its own test so that each fails on its own.
macro_rules! hostile_tests {
    ($($(#[$attr:meta])* $name:ident: $case:expr;)*) => {$(
        $(#[$attr])*
        #[tokio::test]
        async fn $name() {
            hostile($case).await;
        }
    )*};
}

const SPIN: &str = "#[test] fn spin() { loop { std::hint::black_box(0u8); } }";

/// Spawns children that stay alive (`nap`) until a spawn fails, says how many, then keeps
/// forking.
const SPAWN_BOMB: &str = r#"
#[test] fn nap() {
    if std::env::var_os("MARS_CHILD").is_some() {
        std::thread::sleep(std::time::Duration::from_secs(100));
    }
}
#[test] fn bomb() {
    let mut children = Vec::new();
    loop {
        let spawned = std::process::Command::new("/proc/self/exe")
            .args(["--exact", "nap"])
            .env("MARS_CHILD", "1")
            .spawn();
        match spawned {
            Ok(child) => children.push(child),
            Err(e) => { eprintln!("spawned {} then failed: {e}", children.len()); break; }
        }
    }
    loop { let _ = std::process::Command::new("/proc/self/exe").spawn(); }
}"#;

/// Each process of the bomb says once when fork(2) fails.
#[cfg(target_arch = "x86_64")]
const RAW_FORK_BOMB: &str = r#"#[test] fn bomb() {
    let mut said = false;
    loop {
        let ret: i64;
        unsafe {
            std::arch::asm!("syscall", inlateout("rax") 57i64 => ret,
                lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        if ret < 0 && !said { said = true; eprintln!("fork failed: {ret}"); }
    }
}"#;

fn wall_limit(o: &Observed) {
    assert_wall_limit(&o.ran, o.config.run.wall.as_secs());
}

/// Killed at the wall limit, a spawn failed at the cap, and never more processes than it.
fn capped_bomb(o: &Observed, failure: &str) {
    wall_limit(o);
    let cap = o.config.run.processes as usize;
    let stderr = o.ran.stderr.text();
    assert!(
        stderr.contains(failure),
        "no spawn failed at the cap: {stderr}"
    );
    if let Some(n) = stderr.lines().find_map(|l| {
        l.strip_prefix("spawned ")?
            .split(' ')
            .next()?
            .parse::<usize>()
            .ok()
    }) {
        assert!(n > 0 && n < cap, "{n} children alive at once, cap {cap}");
    }
    assert!(o.peak > 1, "the bomb never spawned (peak {})", o.peak);
    assert!(
        o.peak <= cap,
        "peak of {} processes over the cap {cap}",
        o.peak
    );
}

hostile_tests! {
    infinite_loop_is_killed_at_the_wall_clock_limit: Hostile {
        source: SPIN,
        run_wall: 2,
        tweak: KEEP,
        check: wall_limit,
        good_after: true,
    };
    cpu_time_limit_fires: Hostile {
        source: SPIN,
        run_wall: 60,
        tweak: |c| c.run.cpu = secs(1),
        check: |o| {
            assert_eq!(o.ran.limit, Some(LimitHit::CpuTime), "{:?}", o.ran);
            assert_eq!(o.ran.termination, Termination::Signaled(24));
        },
        good_after: false,
    };
    sleeping_forever_is_killed_at_the_wall_clock_limit: Hostile {
        source: "#[test] fn nap() { std::thread::sleep(std::time::Duration::MAX); }",
        run_wall: 2,
        tweak: KEEP,
        check: wall_limit,
        good_after: true,
    };
    spawn_loop_fork_bomb_is_capped_and_killed: Hostile {
        source: SPAWN_BOMB,
        run_wall: 3,
        tweak: KEEP,
        check: |o| capped_bomb(o, "then failed"),
        good_after: true,
    };
    #[cfg(target_arch = "x86_64")]
    raw_fork_bomb_is_capped_and_killed: Hostile {
        // fork(2) by system call, as a candidate without the libc crate would do it.
        source: RAW_FORK_BOMB,
        run_wall: 3,
        tweak: KEEP,
        check: |o| capped_bomb(o, "fork failed"),
        good_after: true,
    };
    huge_allocation_hits_the_address_space_limit: Hostile {
        source: r#"#[test] fn hog() {
            let v = vec![1u8; 8 << 30];
            println!("allocated {}", std::hint::black_box(&v).len());
        }"#,
        run_wall: 10,
        tweak: KEEP,
        check: |o| {
            assert_eq!(o.ran.limit, Some(LimitHit::AddressSpace), "{:?}", o.ran);
            assert_eq!(o.ran.termination, Termination::Signaled(6));
            assert!(!o.ran.stdout.text().contains("allocated"));
        },
        good_after: true,
    };
    memory_of_the_whole_jail_is_capped: Hostile {
        // Four processes of 150 MiB each: within the per-process limit, over the jail's.
        source: r#"#[test] fn hog() {
            if std::env::var_os("MARS_CHILD").is_some() {
                let mut v = vec![0u8; 150 << 20];
                for i in (0..v.len()).step_by(4096) { v[i] = 1; }
                std::thread::sleep(std::time::Duration::from_secs(2));
                println!("child kept {}", std::hint::black_box(&v).len());
                return;
            }
            let children: Vec<_> = (0..4).map(|_| {
                std::process::Command::new("/proc/self/exe")
                    .args(["--exact", "hog", "--nocapture"])
                    .env("MARS_CHILD", "1")
                    .spawn()
                    .unwrap()
            }).collect();
            for mut child in children { println!("child {}", child.wait().unwrap()); }
        }"#,
        run_wall: 20,
        tweak: |c| c.memory = 256 << 20,
        check: |o| {
            assert!(o.ran.isolation.jail_cgroup, "{:?}", o.ran.isolation);
            assert_eq!(o.ran.limit, Some(LimitHit::Memory), "{:?}", o.ran);
            let out = o.ran.stdout.text();
            assert!(out.contains("signal: 9"), "no child was killed: {out}");
        },
        good_after: true,
    };
    file_size_limit_fires: Hostile {
        source: r#"#[test] fn big() {
            std::fs::write("big", vec![0u8; 4 << 20]).unwrap();
        }"#,
        run_wall: 10,
        tweak: |c| c.run.file_size = 1 << 20,
        check: |o| {
            assert_eq!(o.ran.limit, Some(LimitHit::FileSize), "{:?}", o.ran);
            assert_eq!(o.ran.termination, Termination::Signaled(25));
        },
        good_after: false,
    };
    abort_is_reported_as_a_signal: Hostile {
        source: "#[test] fn quit() { std::process::abort(); }",
        run_wall: 5,
        tweak: KEEP,
        check: |o| {
            assert_eq!(o.ran.termination, Termination::Signaled(6), "{:?}", o.ran);
            assert_eq!(o.ran.limit, None);
        },
        good_after: true,
    };
    gigabyte_of_stdout_is_capped_and_counted: Hostile {
        source: r#"#[test] fn flood() {
            use std::io::Write;
            let chunk = vec![b'x'; 1 << 20];
            let mut out = std::io::stdout().lock();
            for _ in 0..1024 { out.write_all(&chunk).unwrap(); }
        }"#,
        run_wall: 30,
        tweak: KEEP,
        check: |o| {
            let (ran, cap) = (&o.ran, o.config.run.max_output);
            assert_eq!(ran.stdout.bytes.len(), cap);
            assert!(ran.stdout.truncated());
            if ran.limit.is_none() {
                assert!(ran.success(), "{:?}", ran.termination);
                assert!(
                    ran.stdout.discarded >= (1 << 30) - cap as u64,
                    "{}",
                    ran.stdout.discarded
                );
            } else {
                assert_eq!(ran.limit, Some(LimitHit::WallClock));
            }
        },
        good_after: true,
    };
    environment_of_the_parent_is_absent: Hostile {
        source: r#"#[test] fn env() {
            for (k, _) in std::env::vars_os() { eprintln!("ENV {}", k.to_string_lossy()); }
            eprintln!("MANIFEST {:?}", std::env::var_os("CARGO_MANIFEST_DIR"));
        }"#,
        run_wall: 5,
        tweak: KEEP,
        check: |o| {
            assert!(
                std::env::var_os("CARGO_MANIFEST_DIR").is_some(),
                "cargo sets it for tests"
            );
            assert!(o.ran.success(), "{:?}", o.ran);
            let text = o.ran.stderr.text();
            let keys: Vec<_> = text
                .lines()
                .filter_map(|l| l.strip_prefix("ENV "))
                .collect();
            assert_eq!(keys, vec!["PATH"], "{text}");
            assert!(text.contains("MANIFEST None"), "{text}");
        },
        good_after: false,
    };
    host_directories_are_not_in_the_jail: Hostile {
        source: r#"#[test] fn look() {
            for path in ["/work", "/home", "/root", "/var", "/srv", "/opt", "/mnt", "/sys",
                         "/usr/local/bin", "/etc/passwd", "/etc/hostname", "/dev/shm",
                         "/usr/bin/cc", "/tmp/.toolchain/bin/rustc"] {
                println!("SEEN {path}: {}", std::fs::metadata(path).is_ok());
            }
            println!("SEEN /proc/1/environ: {}", std::fs::read("/proc/1/environ").is_ok());
        }"#,
        run_wall: 5,
        tweak: KEEP,
        check: |o| {
            assert!(o.ran.success(), "{:?}", o.ran);
            let out = o.ran.stdout.text();
            let seen: Vec<(&str, bool)> = out
                .lines()
                .filter_map(|l| l.split_once("SEEN ")?.1.split_once(": "))
                .map(|(path, visible)| (path, visible == "true"))
                .collect();
            let visible = ["/usr/bin/cc", "/tmp/.toolchain/bin/rustc"];
            assert_eq!(seen.len(), 15, "{out}");
            for (path, seen) in seen {
                assert_eq!(seen, visible.contains(&path), "{path}: {out}");
            }
        },
        good_after: false,
    };
}
