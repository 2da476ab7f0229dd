//! Candidates checked per second through the sandbox at several concurrencies, in one run: the
//! measurement behind `mars serve --max-sandbox-runs`'s default. Each candidate is a distinct
//! small program (compiled and its two tests run in a fresh jail), so nothing is cached.
//!
//! ```text
//! cargo run --release -p mars --example sandbox_throughput -- [CANDIDATES] [--concurrency 1,2,3,4]
//! ```
#![allow(clippy::print_stdout)]

use std::time::Instant;

use futures::StreamExt;
use mars::eval::sandbox::{Sandbox, SandboxConfig};

type BoxError = Box<dyn std::error::Error>;

fn candidate(i: usize) -> String {
    format!(
        "pub fn add(a: i64, b: i64) -> i64 {{ a + b + {i} - {i} }}\n\
         #[test] fn adds() {{ assert_eq!(add(2, 2), 4); }}\n\
         #[test] fn adds_negatives() {{ assert_eq!(add(-2, -3), -5); }}\n"
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count: usize = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(12)
        .max(1);
    let levels: Vec<usize> = match args.iter().position(|a| a == "--concurrency") {
        Some(i) => args
            .get(i + 1)
            .ok_or("--concurrency needs a list, e.g. 1,2,4")?
            .split(',')
            .map(|n| n.trim().parse::<usize>().map(|n| n.max(1)))
            .collect::<Result<_, _>>()?,
        None => vec![1, 2, 3, 4],
    };
    let sandbox = Sandbox::new(SandboxConfig::default()).await?;
    println!("isolation: {}", sandbox.isolation());
    println!(
        "{count} distinct candidates per level; cores: {:?}",
        std::thread::available_parallelism()
    );
    println!("| concurrency | wall s | candidates/s | vs 1 |");
    println!("|---|---|---|---|");
    let mut first = None;
    for (round, &level) in levels.iter().enumerate() {
        let started = Instant::now();
        let offset = round * count;
        let outcomes: Vec<_> = futures::stream::iter(0..count)
            .map(|i| {
                let sandbox = sandbox.clone();
                async move {
                    sandbox
                        .compile_and_test(&candidate(offset + i), &["--test-threads=1".to_owned()])
                        .await
                }
            })
            .buffer_unordered(level)
            .collect()
            .await;
        let wall = started.elapsed().as_secs_f64();
        let passed = outcomes
            .iter()
            .filter(|o| o.as_ref().is_ok_and(|o| o.passed()))
            .count();
        if passed != count {
            return Err(
                format!("{passed} of {count} candidates passed at concurrency {level}").into(),
            );
        }
        let rate = count as f64 / wall;
        let base = *first.get_or_insert(rate);
        println!("| {level} | {wall:.2} | {rate:.2} | {:.2}x |", rate / base);
    }
    Ok(())
}
