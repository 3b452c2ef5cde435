//! Exit like Python: at normal exit — `main` returns, or `std::process::exit` — a program waits
//! for its live non-daemon `Process` children and kills its daemon ones; a `Process` child
//! waits for its own children the same way; a program killed outright takes its children with
//! it.
//!
//! Each case runs this test binary again as a small program (the [`PROGRAM`] environment
//! variable says which), so that it is a real `main` that returns or calls
//! `std::process::exit`. libtest's own `main` would stand in the way: hence `harness = false`
//! (Cargo.toml), and this file's `main` runs the cases one after another.

mod common;
use common::{SECS, eventually, exists, state, within};
use multiproc::Process;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Names the small program this binary runs instead of the tests.
const PROGRAM: &str = "MULTIPROC_EXIT_PROGRAM";
/// The file its children write their line to.
const OUTPUT: &str = "MULTIPROC_EXIT_OUTPUT";

/// How long a child that is waited for sleeps before it writes its line: long enough for
/// `main` to end first, most of the time (if it does not, the test is easier, never wrong).
const NAP: Duration = Duration::from_millis(300);
/// How long a child that must be dead has, once told, to write its line if it is not dead.
const LOOK: Duration = Duration::from_millis(200);

/// When a child writes its line.
#[derive(Clone, Copy)]
enum When {
    /// After [`NAP`]: a child the program waits for.
    AfterNap,
    /// Once the test says so (see [`go_file`]): a child that must be dead by then. No timing
    /// is involved: however slow the machine, it cannot write before the verdict on its death.
    WhenTold,
}

/// The file whose existence tells the children of a run writing to `output` to write.
fn go_file(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".go");
    PathBuf::from(name)
}

/// Appends `line` to the file at `path`.
fn append_line(path: &Path, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    writeln!(file, "{line}").unwrap();
}

/// Sleeps [`NAP`], then appends `line` to the file at `path`.
fn write_line_later((path, line): (PathBuf, String)) {
    std::thread::sleep(NAP);
    append_line(&path, &line);
}

/// Waits (up to a minute) for the test to say so, then appends `line` to the file at `path`.
fn write_line_when_told((path, line): (PathBuf, String)) {
    let go = go_file(&path);
    let end = Instant::now() + SECS(60);
    while !go.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    append_line(&path, &line);
}

/// Starts a non-daemon grandchild that writes its line later, and returns without joining it.
fn start_writer_and_return(args: (PathBuf, String)) -> u32 {
    let mut grandchild = Process::new(write_line_later, args);
    grandchild.start().unwrap();
    grandchild.pid().unwrap()
}

/// Starts a child that writes `line` later; prints its pid on stdout.
fn start_writer(daemon: bool, line: &str, when: When) -> Process<()> {
    let output = PathBuf::from(std::env::var_os(OUTPUT).unwrap());
    let args = (output, line.to_string());
    let p = match when {
        When::AfterNap => Process::new(write_line_later, args),
        When::WhenTold => Process::new(write_line_when_told, args),
    };
    let mut p = p.with_daemon(daemon);
    p.start().unwrap();
    println!("{}", p.pid().unwrap());
    p
}

/// The small programs. Each prints the pids of the children it started, one a line.
fn program(name: &str) {
    match name {
        // `main` returns; the handle is dropped on the way.
        "return" => drop(start_writer(false, "non-daemon", When::AfterNap)),
        // `std::process::exit` with the handle still alive: no destructor runs.
        "exit" => {
            let p = start_writer(false, "non-daemon", When::AfterNap);
            std::process::exit(i32::from(p.pid().is_none()));
        }
        "leak" => std::mem::forget(start_writer(false, "non-daemon", When::AfterNap)),
        "daemon-return" => drop(start_writer(true, "daemon", When::WhenTold)),
        "daemon-exit" => {
            let p = start_writer(true, "daemon", When::WhenTold);
            std::process::exit(i32::from(p.pid().is_none()));
        }
        "daemon-leak" => std::mem::forget(start_writer(true, "daemon", When::WhenTold)),
        // The child returns at once; the grandchild it left running is its own to wait for.
        "nested" => {
            let output = PathBuf::from(std::env::var_os(OUTPUT).unwrap());
            let mut p = Process::new(start_writer_and_return, (output, "grandchild".into()));
            p.start().unwrap();
            let grandchild = p.join().cloned().unwrap();
            println!("{}\n{grandchild}", p.pid().unwrap());
        }
        // Killed from outside while its child sleeps.
        "killed" => {
            let _p = start_writer(false, "non-daemon", When::WhenTold);
            std::io::stdout().flush().unwrap();
            std::thread::sleep(SECS(60));
        }
        other => panic!("no program {other:?}"),
    }
}

/// A run of one of the programs, writing to a file of its own.
struct Run {
    child: Child,
    output: PathBuf,
}

impl Run {
    fn start(name: &str) -> Run {
        let output = std::env::temp_dir().join(format!(
            "multiproc-exit-{name}-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        let _ = std::fs::remove_file(&output);
        let child = Command::new(std::env::current_exe().unwrap())
            .env(PROGRAM, name)
            .env(OUTPUT, &output)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        Run { child, output }
    }

    /// The next pid the program printed.
    fn next_pid(&mut self) -> u32 {
        let mut line = String::new();
        let stdout = self.child.stdout.as_mut().unwrap();
        // One byte at a time: nothing is read ahead and lost to the next call.
        let mut reader = BufReader::with_capacity(1, stdout);
        reader.read_line(&mut line).unwrap();
        line.trim()
            .parse()
            .unwrap_or_else(|_| panic!("not a pid: {line:?}"))
    }

    /// Waits for the program to end; it must succeed.
    fn finish(&mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the program failed: {status}");
    }

    /// The lines the children wrote.
    fn lines(&self) -> Vec<String> {
        read_lines(&self.output)
    }

    /// Tells the children waiting for it ([`When::WhenTold`]) to write their line, and gives
    /// them [`LOOK`] to do it: only a child that is still alive can.
    fn tell_children_and_look(&self) -> Vec<String> {
        std::fs::write(go_file(&self.output), "").unwrap();
        std::thread::sleep(LOOK);
        self.lines()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.output);
        let _ = std::fs::remove_file(go_file(&self.output));
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().map(String::from).collect())
        .unwrap_or_default()
}

/// Whether process `pid` is gone (a zombie of someone else's counts as gone).
fn gone(pid: u32) -> bool {
    eventually(SECS(5), || !exists(pid) || state(pid) == Some('Z'))
}

/// A non-daemon child outlives `main` (however it ends): its line is written before the program
/// ends, and nothing is left running.
fn waits_for_a_non_daemon_child(program: &'static str) {
    within(SECS(30), move || {
        let mut run = Run::start(program);
        let pid = run.next_pid();
        run.finish();
        assert_eq!(
            run.lines(),
            ["non-daemon"],
            "{program}: the child's line is lost"
        );
        assert!(gone(pid), "{program}: child {pid} left: {:?}", state(pid));
    });
}

fn main_returning_waits_for_a_non_daemon_child() {
    waits_for_a_non_daemon_child("return");
}

fn process_exit_waits_for_a_non_daemon_child() {
    waits_for_a_non_daemon_child("exit");
}

fn a_leaked_non_daemon_child_is_waited_for() {
    waits_for_a_non_daemon_child("leak");
}

/// A daemon child is killed when the program ends: its line is never written.
fn a_daemon_child_is_killed_at_exit() {
    within(SECS(30), || {
        for program in ["daemon-return", "daemon-exit", "daemon-leak"] {
            let mut run = Run::start(program);
            let pid = run.next_pid();
            run.finish();
            assert!(gone(pid), "{program}: daemon {pid} left: {:?}", state(pid));
            let lines = run.tell_children_and_look();
            assert!(lines.is_empty(), "{program}: the daemon wrote");
        }
    });
}

/// A `Process` child that leaves a child of its own running waits for it before it exits, so
/// its parent's `join()` returns after the grandchild is done.
fn a_child_waits_for_its_own_children() {
    within(SECS(30), || {
        let mut run = Run::start("nested");
        let child = run.next_pid();
        let grandchild = run.next_pid();
        run.finish();
        assert_eq!(run.lines(), ["grandchild"], "the grandchild's line is lost");
        assert!(gone(child) && gone(grandchild));
    });
}

/// Parent *death* is not a normal exit: a `SIGKILL`ed program takes its children with it.
fn a_killed_program_takes_its_children_along() {
    within(SECS(30), || {
        let mut run = Run::start("killed");
        let pid = run.next_pid();
        run.child.kill().unwrap();
        run.child.wait().unwrap();
        assert!(gone(pid), "child {pid} survived: {:?}", state(pid));
        assert!(
            run.tell_children_and_look().is_empty(),
            "the child wrote after its parent died"
        );
    });
}

fn main() {
    multiproc::init();
    if let Some(name) = std::env::var_os(PROGRAM) {
        return program(&name.to_string_lossy());
    }
    let cases: [(&str, fn()); 6] = [
        (
            "main_returning_waits_for_a_non_daemon_child",
            main_returning_waits_for_a_non_daemon_child,
        ),
        (
            "process_exit_waits_for_a_non_daemon_child",
            process_exit_waits_for_a_non_daemon_child,
        ),
        (
            "a_leaked_non_daemon_child_is_waited_for",
            a_leaked_non_daemon_child_is_waited_for,
        ),
        (
            "a_daemon_child_is_killed_at_exit",
            a_daemon_child_is_killed_at_exit,
        ),
        (
            "a_child_waits_for_its_own_children",
            a_child_waits_for_its_own_children,
        ),
        (
            "a_killed_program_takes_its_children_along",
            a_killed_program_takes_its_children_along,
        ),
    ];
    // `cargo test --test exit -- NAME` runs the cases whose name contains NAME.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut failed = Vec::new();
    let mut passed = 0;
    for (name, case) in cases {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        print!("test {name} ... ");
        std::io::stdout().flush().unwrap();
        match std::panic::catch_unwind(case) {
            Ok(()) => {
                println!("ok");
                passed += 1;
            }
            Err(_) => {
                println!("FAILED");
                failed.push(name);
            }
        }
    }
    let verdict = if failed.is_empty() { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {passed} passed; {} failed\n",
        failed.len()
    );
    if !failed.is_empty() {
        eprintln!("failed: {failed:?}");
        std::process::exit(101);
    }
}
