//! Measures what the sandbox costs a well-behaved candidate: the same test crate compiled and
//! run directly, then through `mars::eval::sandbox`, phase by phase (medians of N rounds).
//!
//! ```text
//! cargo run --release -p mars --example sandbox_overhead -- [ROUNDS] [--no-namespaces] [--sysroot DIR]
//! ```
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::time::{Duration, Instant};

use mars::eval::sandbox::{Sandbox, SandboxConfig};

const CANDIDATE: &str = r#"
pub fn add(a: i64, b: i64) -> i64 { a + b }
#[test] fn adds() { assert_eq!(add(2, 2), 4); }
#[test] fn adds_negatives() { assert_eq!(add(-2, -3), -5); }
"#;

type BoxError = Box<dyn std::error::Error>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(10)
        .max(1);
    let sysroot = match args.iter().position(|a| a == "--sysroot") {
        Some(i) => args
            .get(i + 1)
            .cloned()
            .ok_or("--sysroot needs a directory")?,
        None => rustc_sysroot()?,
    };
    let config = SandboxConfig {
        namespaces: !args.iter().any(|a| a == "--no-namespaces"),
        sysroot: Some(sysroot.clone().into()),
        ..SandboxConfig::default()
    };

    let started = Instant::now();
    let sandbox = Sandbox::new(config).await?;
    println!(
        "Sandbox::new (tool lookup, sysroot, trial jail): {:?}",
        started.elapsed()
    );
    println!("isolation: {:?}", sandbox.isolation());

    let rustc = Path::new(&sysroot).join("bin/rustc");
    let dir = std::env::temp_dir().join(format!("mars-overhead-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("candidate.rs"), CANDIDATE)?;
    let test_args = ["--test-threads=1".to_owned()];

    let mut direct = Phases::default();
    let mut boxed = Phases::default();
    for _ in 0..rounds {
        let t = Instant::now();
        let status = tokio::process::Command::new(&rustc)
            .args(["--test", "--edition", "2021", "-o"])
            .arg(dir.join("candidate"))
            .arg(dir.join("candidate.rs"))
            .status()
            .await?;
        direct.compile.push(t.elapsed());
        if !status.success() {
            return Err("direct compile failed".into());
        }
        let t = Instant::now();
        let output = tokio::process::Command::new(dir.join("candidate"))
            .args(&test_args)
            .output()
            .await?;
        direct.run.push(t.elapsed());
        if !output.status.success() {
            return Err("direct run failed".into());
        }

        let t = Instant::now();
        let mut jail = sandbox.jail().await?;
        boxed.setup.push(t.elapsed());
        let t = Instant::now();
        let compiled = jail.compile_test(CANDIDATE).await?;
        boxed.compile.push(t.elapsed());
        if !compiled.success() {
            return Err(format!("sandboxed compile failed: {}", compiled.stderr.text()).into());
        }
        let t = Instant::now();
        let ran = jail.run_test(&test_args).await?;
        boxed.run.push(t.elapsed());
        if !ran.success() {
            return Err(format!("sandboxed run failed: {ran:?}").into());
        }
        let t = Instant::now();
        jail.close().await?;
        boxed.teardown.push(t.elapsed());
    }
    std::fs::remove_dir_all(&dir)?;

    println!("medians of {rounds} rounds (ms):");
    println!("phase      direct   sandboxed");
    println!(
        "setup      {:>6}   {:>9.1}",
        "-",
        ms(median(&mut boxed.setup))
    );
    let (dc, bc) = (median(&mut direct.compile), median(&mut boxed.compile));
    println!("compile    {:>6.1}   {:>9.1}", ms(dc), ms(bc));
    let (dr, br) = (median(&mut direct.run), median(&mut boxed.run));
    println!("run        {:>6.1}   {:>9.1}", ms(dr), ms(br));
    println!(
        "teardown   {:>6}   {:>9.1}",
        "-",
        ms(median(&mut boxed.teardown))
    );
    let direct_total = dc + dr;
    let boxed_total = median(&mut boxed.setup) + bc + br + median(&mut boxed.teardown);
    println!(
        "total      {:>6.1}   {:>9.1}   overhead {:.1} ms per candidate",
        ms(direct_total),
        ms(boxed_total),
        ms(boxed_total) - ms(direct_total)
    );
    Ok(())
}

#[derive(Default)]
struct Phases {
    setup: Vec<Duration>,
    compile: Vec<Duration>,
    run: Vec<Duration>,
    teardown: Vec<Duration>,
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rustc_sysroot() -> Result<String, BoxError> {
    let output = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()?;
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}
