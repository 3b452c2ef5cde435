//! The progress bar (feature `progress`) as a user sees it: `examples/progress_bar` run in a
//! real terminal (a tmux pane, captured as it draws), and run with stderr a pipe (nothing
//! drawn).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The example's binary, built now (cargo has nothing to do when `cargo test` built it, as it
/// does every example; run alone, this test would otherwise find a stale one).
fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().unwrap().parent().unwrap();
    // The features this test was built with, so that nothing is built anew.
    let features: Vec<&str> = [
        ("progress", cfg!(feature = "progress")),
        ("stream", cfg!(feature = "stream")),
        ("tracing", cfg!(feature = "tracing")),
        ("mpi", cfg!(feature = "mpi")),
        ("fuzzing", cfg!(feature = "fuzzing")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--features",
            &features.join(","),
            "--example",
        ])
        .arg("progress_bar")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success());
    profile.join("examples").join("progress_bar")
}

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux is needed for this test (apt-get install tmux; .ci/run does)");
    assert!(out.status.success(), "tmux {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Kills the tmux session when the test ends, passed or not.
struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

#[test]
fn the_bar_is_drawn_in_a_terminal_and_ends_at_100_percent() {
    let exe = example();
    let session = Session(format!("multiproc-progress-{}", std::process::id()));
    let script = format!("{}; echo EXITED $?; sleep 120", exe.display());
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session.0,
        "-x",
        "150",
        "-y",
        "20",
        &script,
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut part_way = None;
    let screen = loop {
        let screen = tmux(&["capture-pane", "-p", "-t", &session.0]);
        if screen.contains("EXITED") {
            break screen;
        }
        // A bar part way: "map ███░░░ 12/30  40%".
        if let Some(line) = screen
            .lines()
            .find(|l| l.contains("/30") && !l.contains("30/30"))
        {
            part_way.get_or_insert_with(|| line.to_string());
        }
        assert!(
            Instant::now() < deadline,
            "the example did not end:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(screen.contains("EXITED 0"), "{screen}");
    let bar = screen
        .lines()
        .find(|l| l.trim_start().starts_with("map"))
        .unwrap_or_else(|| panic!("no bar drawn:\n{screen}"));
    assert!(bar.contains("30/30") && bar.contains("100%"), "{bar}");
    assert!(bar.contains('█') && !bar.contains('░'), "a full bar: {bar}");
    assert!(screen.contains("30 squares"), "{screen}");
    // The thread pool's bar, below.
    let threads = screen
        .lines()
        .find(|l| l.trim_start().starts_with("imap"))
        .unwrap_or_else(|| panic!("no thread pool bar drawn:\n{screen}"));
    assert!(
        threads.contains("15/15") && threads.contains("100%"),
        "{threads}"
    );
    assert!(screen.contains("15 cubes on threads"), "{screen}");
    let maps: Vec<&str> = screen
        .lines()
        .filter(|l| l.trim_start().starts_with("map"))
        .collect();
    assert_eq!(
        maps.len(),
        2,
        "the process pool's map, then the threads':\n{screen}"
    );
    assert!(
        maps[1].contains("15/15") && maps[1].contains("100%"),
        "{}",
        maps[1]
    );
    let part_way = part_way.expect("the bar was seen only once it was full");
    assert!(part_way.contains('░'), "{part_way}");
    println!("part way: {}\nat the end: {}", part_way.trim(), bar.trim());
}

#[test]
fn nothing_is_drawn_when_stderr_is_a_pipe() {
    let out = Command::new(example()).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("30 squares") && stdout.contains("15 cubes"),
        "{stdout}"
    );
}
