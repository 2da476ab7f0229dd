use super::*;

#[test]
fn cache_root_follows_xdg_then_home() {
    let os = |s: &'static str| Some(OsStr::new(s));
    let cases = [
        (os("/xdg"), os("/home/u"), Some("/xdg/mars")),
        (os("relative"), os("/home/u"), Some("/home/u/.cache/mars")),
        (os(""), os("/home/u"), Some("/home/u/.cache/mars")),
        (None, os("/home/u"), Some("/home/u/.cache/mars")),
        (None, os(""), None),
        (None, None, None),
    ];
    for (xdg, home, want) in cases {
        assert_eq!(
            cache_root(xdg, home),
            want.map(PathBuf::from),
            "{xdg:?} {home:?}"
        );
    }
}

#[test]
fn sha256_of_a_known_file() {
    let dir = std::env::temp_dir().join(format!("mars-sha-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("abc");
    fs::write(&path, b"abc").unwrap();
    assert_eq!(
        sha256_file(&path).unwrap(),
        (
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_owned(),
            3
        )
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tails_keep_the_end_on_a_char_boundary() {
    let long = "é".repeat(1500);
    let t = tail(long.as_bytes());
    assert!(t.len() <= 2000 && t.chars().all(|c| c == 'é'));
    assert_eq!(tail(b"  short \n"), "short");
}
