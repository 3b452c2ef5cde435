//! Start-up: `init()`, telling a child from a parent, spawning children, and the handshake.
//!
//! A child is this same program, re-executed from `/proc/self/exe` with the environment
//! variable [`ENV`] naming two inherited descriptors (its socket to the parent and the shared
//! progress page) and the parent's pid. On Linux a start-up hook in `.init_array` notices the
//! variable before `main` runs — which is what makes pools work inside `#[test]` functions,
//! whose `main` belongs to libtest — and [`init`] does the same for platforms without one.
//! The variable is removed as soon as it is read, so that tasks and the programs they start
//! never see it. A value that does not name this process's parent and descriptors of the kinds
//! a parent hands over (a stray variable from a shell, say) is reported in one line and
//! ignored: the program runs its `main` as usual, never as a child. Unless the process was
//! started as a child — its first argument is [`CHILD_ARG`], which only the spawner gives —
//! and the marker is then surely ours: a check failing there is unexpected (an unusual `/proc`
//! naming of descriptors, say), and running `main` would repeat the parent's work, so the
//! child says why and exits with status 70 (`EXIT_PROTOCOL`).
//!
//! Children are forked by one long-lived "spawner" thread: `PR_SET_PDEATHSIG` fires when the
//! *thread* that forked a child exits, so forking from short-lived user threads would kill
//! children early. The signal is armed before `exec`, and the child checks that its parent is
//! still the one that started it, closing the race where the parent dies first.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::child::protocol::FAULT_SLOT;
use crate::error::{Death, Error, Result};
use crate::sys;
use crate::sys::page::SharedPage;
use crate::wire::message::{Hello, Ready, Refuse, Role, kind};
use crate::wire::{Channel, codec};

/// The environment variable that marks a child: `"<socket fd>,<page fd>,<parent pid>"`.
pub(crate) const ENV: &str = "MULTIPROC_WORKER";
/// The first argument of every child the spawner starts; nothing else passes it.
const CHILD_ARG: &str = "__multiproc_child__";
/// Exit status of a child that refused the handshake (different executable).
const EXIT_REFUSED: i32 = 71;
/// How long a child waits for the parent's greeting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(60);

/// Makes this program usable with `multiproc`. Call it first in `main`.
///
/// In the parent it returns at once. In a child started by this crate it serves its parent and
/// exits: it never returns there. On Linux a start-up hook has usually done this already, before
/// `main` ran, so the call costs one environment look-up.
///
/// Call it before starting any thread: the marker is removed from the environment, which is
/// only sound while the process is single-threaded. A program that finds a `MULTIPROC_WORKER`
/// marker not meant for it in its environment (not one its parent set for it) prints one line
/// on stderr naming the variable and its value, removes it, and goes on as a normal program.
/// A child that `multiproc` started and whose marker fails its checks prints the reason and
/// exits with status 70 instead: it never runs `main`.
///
/// # Examples
/// ```
/// // The first line of `main`:
/// multiproc::init();
/// // ... then use Process and Pool.
/// ```
pub fn init() {
    if let Some(marker) = take_marker() {
        run_child(&marker);
    }
}

/// What a parent's spawner puts in [`ENV`] for its child.
struct Marker {
    /// The child's end of its socket to the parent.
    sock: RawFd,
    /// The shared progress page.
    page: RawFd,
    parent: u32,
}

/// Takes [`ENV`] out of the environment and returns the marker if it is meant for this
/// process; reports and drops any other value, or, in a process started as a child, reports
/// it and exits (see the module docs).
fn take_marker() -> Option<Marker> {
    let value = std::env::var_os(ENV)?;
    // SAFETY: called before `main` (from the start-up hook) or as the first line of `main`, as
    // `init` documents: no other thread is reading the environment. The marker must not leak to
    // programs this process starts, whatever its value.
    unsafe { std::env::remove_var(ENV) };
    match Marker::check(&value) {
        Ok(marker) => Some(marker),
        Err(why) if started_as_child() => {
            eprintln!("multiproc: child process could not start: {ENV}={value:?}: {why}");
            std::process::exit(crate::child::protocol::EXIT_PROTOCOL)
        }
        Err(why) => {
            eprintln!("multiproc: ignoring {ENV}={value:?}: {why}; running as a normal program");
            None
        }
    }
}

/// Whether a spawner started this process: its first argument is [`CHILD_ARG`].
fn started_as_child() -> bool {
    std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == CHILD_ARG)
}

impl Marker {
    /// Parses `"<socket fd>,<page fd>,<parent pid>"` and checks it is this process's: the pid
    /// is its parent's, and the descriptors are open on a socket and a shared page.
    fn check(value: &std::ffi::OsStr) -> std::result::Result<Marker, String> {
        let malformed = || "not of the form \"<socket fd>,<page fd>,<parent pid>\"".to_string();
        let fields: Vec<&str> = value.to_str().ok_or_else(malformed)?.split(',').collect();
        let [sock, page, parent] = fields[..] else {
            return Err(malformed());
        };
        let fd = |f: &str| f.parse::<RawFd>().ok().filter(|fd| *fd >= 0);
        let (Some(sock), Some(page), Ok(parent)) = (fd(sock), fd(page), parent.parse::<u32>())
        else {
            return Err(malformed());
        };
        if sys::proc::getppid() != Some(parent) {
            return Err(format!("pid {parent} is not this process's parent"));
        }
        if !sys::fd::is_socket(sock) {
            return Err(format!("descriptor {sock} is not a socket"));
        }
        if !sys::page::is_page(page) {
            return Err(format!("descriptor {page} is not a multiproc shared page"));
        }
        Ok(Marker { sock, page, parent })
    }
}

/// The start-up hook: runs before `main` in every program that links this crate.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static CHILD_HOOK: extern "C" fn() = child_hook;

#[cfg(target_os = "linux")]
extern "C" fn child_hook() {
    init();
}

fn run_child(marker: &Marker) -> ! {
    let code = match child_main(marker) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("multiproc: child process could not start: {e}");
            crate::child::protocol::EXIT_PROTOCOL
        }
    };
    std::process::exit(code)
}

fn child_main(marker: &Marker) -> Result<i32> {
    sys::proc::die_with_parent(marker.parent)?;
    // SAFETY: the marker was checked: these are a socket and a shared page that the parent's
    // spawner kept open across `exec` for us; nothing else in this fresh process owns them.
    let (sock, page) = unsafe { (sys::fd::adopt(marker.sock), sys::fd::adopt(marker.page)) };
    // Programs this child runs must not inherit them.
    sys::fd::set_cloexec(sock.as_fd(), true)?;
    sys::fd::set_cloexec(page.as_fd(), true)?;
    // Kept for the life of the process: the fault handler may write to it at any moment.
    let page: &'static SharedPage = Box::leak(Box::new(SharedPage::map(page)?));
    // Before any task runs, on the thread that runs them all. Best effort: without it a stack
    // overflow reads as a plain SIGSEGV, and the child works as well.
    let _ = sys::signal::catch_stack_overflow(page.slot(FAULT_SLOT));
    let mut ch = Channel::new(sock, false)?;

    let hello = ch.recv(Some(Instant::now() + HELLO_TIMEOUT))?;
    if hello.kind != kind::HELLO {
        return Err(Error::Protocol(format!(
            "expected a greeting, got kind {}",
            hello.kind
        )));
    }
    let hello: Hello = codec::decode(hello.payload())?;
    if hello.identity != identity()? {
        let reason = "the child is not the same executable as the parent (was the binary rebuilt \
                      or replaced while running?)"
            .to_string();
        ch.send(kind::REFUSE, &codec::encode(&Refuse { reason })?)?;
        return Ok(EXIT_REFUSED);
    }
    let _ = CURRENT.set(CurrentProcess {
        name: hello.name,
        pid: sys::proc::getpid(),
        role: Some(hello.role),
    });
    crate::task::capture_panics();
    ch.send(
        kind::READY,
        &codec::encode(&Ready {
            pid: sys::proc::getpid(),
        })?,
    )?;
    if hello.role == Role::Tracker {
        return Ok(crate::shared::memory::tracker::serve(ch));
    }
    Ok(crate::child::worker::serve(ch, page, hello.role))
}

/// This executable's identity, sent in the greeting and checked by the child.
fn identity() -> Result<[u64; 6]> {
    static ID: OnceLock<[u64; 6]> = OnceLock::new();
    if let Some(id) = ID.get() {
        return Ok(*id);
    }
    let exe = sys::proc::exe_identity()?;
    let id = [
        exe[0],
        exe[1],
        exe[2],
        exe[3],
        exe[4],
        crate::task::layout_probe(),
    ];
    Ok(*ID.get_or_init(|| id))
}

/// The parent's end of a freshly started child.
#[derive(Debug)]
pub(crate) struct ChildLink {
    pub(crate) pid: u32,
    pub(crate) channel: Channel,
    pub(crate) page: SharedPage,
    /// Readable once the child has exited.
    pub(crate) pidfd: OwnedFd,
    /// Whether the child was reaped (or handed to someone who will reap it).
    reaped: bool,
}

impl ChildLink {
    /// Waits for the child to exit and reaps it.
    pub(crate) fn reap(&mut self) -> std::io::Result<sys::proc::Exit> {
        let exit = sys::proc::reap(self.pid)?;
        self.reaped = true;
        Ok(exit)
    }

    /// How the child ended, from the status it was reaped with: a fault its handler recognised
    /// as a stack overflow (see `sys::signal`) is [`Death::StackOverflow`], anything else is
    /// told as the status says. The one rule for pool workers and `Process` children alike.
    pub(crate) fn death(&self, exit: sys::proc::Exit) -> Death {
        match exit {
            sys::proc::Exit::Signal(number)
                if sys::signal::stack_overflow_signal(self.page.slot(FAULT_SLOT))
                    == Some(number) =>
            {
                Death::StackOverflow { number }
            }
            other => other.into(),
        }
    }

    /// Hands the duty of reaping to the caller.
    pub(crate) fn detach(&mut self) {
        self.reaped = true;
    }
}

impl Drop for ChildLink {
    /// A child nobody reaped is killed and reaped: no process or zombie outlives its link.
    fn drop(&mut self) {
        if !self.reaped {
            let _ = sys::proc::signal(self.pid, sys::proc::Stop::Kill);
            let _ = sys::proc::reap(self.pid);
        }
    }
}

struct SpawnRequest {
    env: String,
    keep: [RawFd; 2],
    reply: mpsc::SyncSender<std::io::Result<u32>>,
}

/// The thread that forks every child (see the module docs), started when first needed. Only a
/// thread that exists is recorded: when it cannot be created (`EAGAIN` under a process limit,
/// say), that spawn fails with the OS cause and the next one tries again.
struct Spawner {
    tx: Mutex<Option<mpsc::Sender<SpawnRequest>>>,
    /// Test hook: the next creation of the thread fails, as it does under `RLIMIT_NPROC`.
    #[cfg(test)]
    fail_next_start: std::sync::atomic::AtomicBool,
}

/// This process's spawner.
static SPAWNER: Spawner = Spawner::new();

impl Spawner {
    const fn new() -> Self {
        Self {
            tx: Mutex::new(None),
            #[cfg(test)]
            fail_next_start: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Hands `req` to the spawner thread, starting one if there is none or it is gone.
    fn submit(&self, req: SpawnRequest) -> Result<()> {
        // Held while a thread is started, so that concurrent first spawns start only one.
        let mut tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        let req = match tx.take() {
            None => req,
            Some(running) => match running.send(req) {
                Ok(()) => {
                    *tx = Some(running);
                    return Ok(());
                }
                // The thread ended (it only does by panicking): start another.
                Err(mpsc::SendError(req)) => req,
            },
        };
        let (started, rx) = mpsc::channel::<SpawnRequest>();
        self.start_thread(move || serve_spawns(rx))
            .map_err(|e| Error::Spawn(format!("the spawner thread could not start: {e}")))?;
        started
            .send(req)
            .map_err(|_| Error::Spawn("the spawner thread is gone".into()))?;
        *tx = Some(started);
        Ok(())
    }

    /// Creates the spawner thread, running `serve`.
    fn start_thread(&self, serve: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        #[cfg(test)]
        if self
            .fail_next_start
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            // What `clone` answers when the thread limit is reached, at the same place.
            return Err(std::io::Error::from_raw_os_error(11 /* EAGAIN */));
        }
        std::thread::Builder::new()
            .name("multiproc-spawner".into())
            .spawn(serve)
            .map(drop)
    }
}

/// The spawner thread: forks a child for each request until every sender is gone.
fn serve_spawns(rx: mpsc::Receiver<SpawnRequest>) {
    for req in rx {
        // SAFETY: the requester blocks on `reply` until we answer, keeping both descriptors
        // open for the whole call.
        let keep = unsafe { req.keep.map(|fd| BorrowedFd::borrow_raw(fd)) };
        let result = sys::proc::spawn_self(sys::proc::SpawnSpec {
            env: vec![(ENV, req.env)],
            keep: keep.to_vec(),
            args: vec![CHILD_ARG, "--exact"],
        });
        let _ = req.reply.send(result);
    }
}

/// Starts a child, greets it, and returns the parent's end. The child's `READY` (or `REFUSE`)
/// is the first frame that will arrive on the channel.
pub(crate) fn spawn_child(name: &str, role: Role, nonblocking: bool) -> Result<ChildLink> {
    spawn_child_as(&SPAWNER, name, role, nonblocking, identity()?)
}

/// [`spawn_child`] through `spawner`, claiming `identity` in the greeting (tests claim a wrong
/// one, and use spawners of their own).
fn spawn_child_as(
    spawner: &Spawner,
    name: &str,
    role: Role,
    nonblocking: bool,
    identity: [u64; 6],
) -> Result<ChildLink> {
    #[cfg(target_os = "linux")]
    std::hint::black_box(&CHILD_HOOK);
    let (ours, theirs) = sys::fd::socketpair()?;
    let page = SharedPage::create()?;
    let (reply, answer) = mpsc::sync_channel(1);
    let env = format!(
        "{},{},{}",
        sys::proc::raw(&theirs),
        sys::proc::raw(&page.as_fd()),
        sys::proc::getpid()
    );
    spawner.submit(SpawnRequest {
        env,
        keep: [sys::proc::raw(&theirs), sys::proc::raw(&page.as_fd())],
        reply,
    })?;
    let pid = answer
        .recv()
        .map_err(|_| Error::Spawn("the spawner thread is gone".into()))?
        .map_err(|e| Error::Spawn(e.to_string()))?;
    drop(theirs);
    let greet = || -> Result<(OwnedFd, Channel)> {
        let pidfd = sys::proc::pidfd(pid)?;
        let mut channel = Channel::new(ours, nonblocking)?;
        let hello = Hello {
            identity,
            name: name.to_string(),
            role,
        };
        channel.push(kind::HELLO, &codec::encode(&hello)?)?;
        // A greeting is far smaller than a socket buffer: this completes even when non-blocking.
        channel.flush()?;
        Ok((pidfd, channel))
    };
    match greet() {
        Ok((pidfd, channel)) => Ok(ChildLink {
            pid,
            channel,
            page,
            pidfd,
            reaped: false,
        }),
        Err(e) => {
            // Started but unusable: it must not linger, not even as a zombie.
            let _ = sys::proc::signal(pid, sys::proc::Stop::Kill);
            let _ = sys::proc::reap(pid);
            Err(e)
        }
    }
}

/// Interprets the child's answer to the greeting.
pub(crate) fn check_ready(frame: &crate::wire::Frame) -> Result<u32> {
    match frame.kind {
        kind::READY => Ok(codec::decode::<Ready>(frame.payload())?.pid),
        kind::REFUSE => Err(Error::Spawn(
            codec::decode::<Refuse>(frame.payload())?.reason,
        )),
        other => Err(Error::Protocol(format!("expected READY, got kind {other}"))),
    }
}

/// Waits for the child's answer to the greeting (blocking channels).
pub(crate) fn await_ready(link: &mut ChildLink, deadline: Instant) -> Result<u32> {
    match link.channel.recv(Some(deadline)) {
        Ok(frame) => check_ready(&frame),
        Err(Error::Disconnected) => Err(Error::Spawn(
            "the child exited during start-up (see its stderr)".into(),
        )),
        Err(e) => Err(e),
    }
}

/// Who the current process is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentProcess {
    name: String,
    pid: u32,
    /// What this process was started for; `None` in a program not started by `multiproc`.
    role: Option<Role>,
}

impl CurrentProcess {
    /// `"MainProcess"` in the parent; the `Process` name or `"PoolWorker-N"` in a child.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// Whether this process was started by `multiproc` (a `Process` or a pool worker).
    pub fn is_worker(&self) -> bool {
        self.role.is_some()
    }
}

/// What this process was started for by its `multiproc` parent; `None` if it was not.
pub(crate) fn role() -> Option<Role> {
    CURRENT.get().and_then(|me| me.role)
}

static CURRENT: OnceLock<CurrentProcess> = OnceLock::new();

/// Describes the current process, like Python's `multiprocessing.current_process()`.
///
/// # Examples
/// ```
/// multiproc::init();
/// let me = multiproc::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert!(!me.is_worker());
/// assert_eq!(me.pid(), std::process::id());
/// ```
pub fn current_process() -> CurrentProcess {
    CURRENT.get().cloned().unwrap_or_else(|| CurrentProcess {
        name: "MainProcess".into(),
        pid: sys::proc::getpid(),
        role: None,
    })
}

/// The number of CPUs this process may use, like `os.cpu_count()` (respecting affinity masks).
///
/// # Examples
/// ```
/// assert!(multiproc::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    sys::proc::cpu_count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_refuses_a_parent_with_another_executable() {
        let mut wrong = identity().unwrap();
        wrong[1] ^= 1;
        let mut link = spawn_child_as(&SPAWNER, "impostor", Role::Process, false, wrong).unwrap();
        match await_ready(&mut link, Instant::now() + Duration::from_secs(30)) {
            Err(Error::Spawn(reason)) => assert!(reason.contains("not the same executable")),
            other => panic!("expected a refusal, got {other:?}"),
        }
        let exit = link.reap().unwrap();
        assert_eq!(exit, sys::proc::Exit::Code(EXIT_REFUSED));
    }

    /// Regression (issue 9): one failed creation of the spawner thread (EAGAIN under
    /// `RLIMIT_NPROC`) left a dead sender behind, and every later spawn failed with "the
    /// spawner thread is gone". A spawner of its own, so that other tests are not affected.
    #[test]
    fn a_spawner_thread_that_could_not_start_is_started_by_the_next_spawn() {
        let spawner = Spawner::new();
        spawner
            .fail_next_start
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let me = identity().unwrap();
        match spawn_child_as(&spawner, "first", Role::PoolWorker, false, me) {
            Err(Error::Spawn(reason)) => {
                assert!(
                    reason.contains("Resource temporarily unavailable"),
                    "{reason}"
                )
            }
            other => panic!("expected the OS cause, got {other:?}"),
        }
        let mut link = spawn_child_as(&spawner, "second", Role::PoolWorker, false, me).unwrap();
        let pid = await_ready(&mut link, Instant::now() + Duration::from_secs(30)).unwrap();
        assert_eq!(pid, link.pid);
        link.channel.send(kind::EXIT, &[]).unwrap();
        assert_eq!(link.reap().unwrap(), sys::proc::Exit::Code(0));
    }

    #[test]
    fn a_child_greets_back_with_its_pid() {
        let mut link = spawn_child("greeter", Role::PoolWorker, false).unwrap();
        let pid = await_ready(&mut link, Instant::now() + Duration::from_secs(30)).unwrap();
        assert_eq!(pid, link.pid);
        link.channel.send(kind::EXIT, &[]).unwrap();
        assert_eq!(link.reap().unwrap(), sys::proc::Exit::Code(0));
    }

    /// The stack-overflow handler is a child's: a parent keeps std's own (which reports an
    /// overflow of any of its threads), however many children it starts.
    #[test]
    fn a_parent_keeps_its_own_fault_handler() {
        let mut link = spawn_child("plain", Role::PoolWorker, false).unwrap();
        await_ready(&mut link, Instant::now() + Duration::from_secs(30)).unwrap();
        assert!(!sys::signal::installed_here());
        link.channel.send(kind::EXIT, &[]).unwrap();
        let exit = link.reap().unwrap();
        assert_eq!(link.death(exit), Death::Exit(0));
    }
}
