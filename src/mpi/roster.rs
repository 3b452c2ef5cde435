//! Rank 0's side of the handshake and of the end of the job: who the agents are, whether each
//! runs the same program, and telling them all to stop.
//!
//! Every agent greets rank 0 first thing ([`Hello`]). Rank 0 reads the greetings when it first
//! needs the agents (the first pool that spans the ranks), compares each program's identity by
//! content with its own — the same bytes at another path, or on another machine, are the same
//! program; anything else is refused, with both paths and identities named — and answers each.
//! At exit it tells every agent to stop, then leaves the job.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::message::{self, CONTROL, FromAgent, Hello, ToAgent};
use super::world::{self, Posts, World};
use crate::error::{Error, Rank, Result};
use crate::pool::lock;

/// How long rank 0 waits for the agents' greetings: they are sent as soon as each rank has
/// initialized MPI, which `mpirun` started at the same time as rank 0.
const GREETING_TIMEOUT: Duration = Duration::from_secs(60);

/// An agent, as it introduced itself.
#[derive(Clone, Debug)]
pub(crate) struct Agent {
    pub(crate) rank: u32,
    pub(crate) host: String,
    pub(crate) cpus: usize,
    /// Why it was refused (another program), if it was.
    pub(crate) refused: Option<String>,
}

impl Agent {
    pub(crate) fn place(&self) -> Rank {
        Rank {
            number: self.rank,
            host: self.host.clone(),
        }
    }
}

/// The agents greeted so far (by rank; all of them once `complete`), and the sends of the
/// answers. Kept across attempts: an agent greets once, so a greeting read by an attempt that
/// then timed out waiting for another rank is not read again.
struct Roster {
    greeted: Vec<Option<Agent>>,
    complete: bool,
    posts: Posts,
}

static ROSTER: Mutex<Roster> = Mutex::new(Roster {
    greeted: Vec::new(),
    complete: false,
    posts: Posts::new(),
});

/// This program's greeting: what an agent sends and what rank 0 compares it with.
pub(crate) fn hello(world: &World) -> Result<Hello> {
    let (kind, id) = crate::sys::exe::content_id()?;
    Ok(Hello {
        id_kind: format!("{kind:?}"),
        id,
        layout: crate::task::layout_probe(),
        path: std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "?".into()),
        host: world.host.clone(),
        pid: std::process::id(),
        cpus: crate::cpu_count(),
    })
}

/// The agents (every rank but 0), greeted and answered; read once, on first use.
///
/// # Errors
/// An agent did not greet within [`GREETING_TIMEOUT`], or the job ended.
pub(crate) fn agents(world: &World) -> Result<Vec<Agent>> {
    let mut roster = lock(&ROSTER);
    roster.greet(world, GREETING_TIMEOUT)?;
    Ok(roster.greeted.iter().flatten().cloned().collect())
}

impl Roster {
    /// Reads every agent's greeting not read yet, and answers it.
    fn greet(&mut self, world: &World, patience: Duration) -> Result<()> {
        if self.complete {
            return Ok(());
        }
        self.greeted.resize(world.size as usize, None);
        greet(world, &mut self.greeted, &mut self.posts, patience)?;
        self.complete = true;
        Ok(())
    }
}

/// Reads the greetings of the agents missing in `agents` (indexed by rank) and answers them.
fn greet(
    world: &World,
    agents: &mut [Option<Agent>],
    posts: &mut Posts,
    patience: Duration,
) -> Result<()> {
    let ours = hello(world)?;
    let missing = |agents: &[Option<Agent>]| agents.iter().skip(1).any(Option::is_none);
    if !missing(agents) {
        return Ok(());
    }
    let until = Instant::now() + patience;
    let greeted = world::wait_for(
        Some(CONTROL),
        posts,
        Some(until),
        |_, _| false,
        |posts, received| {
            let bytes = received.bytes?;
            let mut input = &bytes[..];
            let (FromAgent::Hello(theirs), _) = message::next::<FromAgent>(&mut input)? else {
                return Err(Error::Protocol(format!(
                    "rank {} spoke before it greeted",
                    received.source
                )));
            };
            let refused = differs(&ours, &theirs).map(|why| {
                format!(
                    "rank {} on {} runs another program: {why}. Run the same build on every \
                     rank (a copy of it anywhere is fine)",
                    received.source, theirs.host
                )
            });
            let answer = match &refused {
                None => ToAgent::Welcome,
                Some(reason) => ToAgent::Refuse {
                    reason: reason.clone(),
                },
            };
            posts.post(received.source, CONTROL, message::one(&answer)?)?;
            if let Some(slot) = agents.get_mut(received.source as usize) {
                *slot = Some(Agent {
                    rank: received.source,
                    host: theirs.host,
                    cpus: theirs.cpus.max(1),
                    refused,
                });
            }
            Ok((!missing(agents)).then_some(()))
        },
    )?;
    if greeted.is_none() {
        let missing: Vec<String> = (1..world.size)
            .filter(|&r| agents[r as usize].is_none())
            .map(|r| r.to_string())
            .collect();
        return Err(Error::Spawn(format!(
            "MPI ranks {} did not greet rank 0 within {patience:?}: do they run a program that \
             calls multiproc::init()?",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// Why `theirs` is not the program `ours` is, if it is not.
fn differs(ours: &Hello, theirs: &Hello) -> Option<String> {
    let hex = |id: &[u8]| id.iter().map(|b| format!("{b:02x}")).collect::<String>();
    if ours.id_kind != theirs.id_kind || ours.id != theirs.id {
        return Some(format!(
            "its executable {} ({} {}) is not rank 0's {} ({} {})",
            theirs.path,
            theirs.id_kind,
            hex(&theirs.id),
            ours.path,
            ours.id_kind,
            hex(&ours.id)
        ));
    }
    (ours.layout != theirs.layout).then(|| {
        format!(
            "its executable {} lays out tasks differently from rank 0's",
            theirs.path
        )
    })
}

/// The end of the job, at rank 0's exit: every agent is told to stop (after its greeting is
/// read, if it was not yet), then this process leaves the job.
pub(crate) fn end_job(world: &World) {
    let mut roster = lock(&ROSTER);
    let roster = &mut *roster;
    // Agents wait for their answer before anything else: read their greetings (and answer
    // them) so that none is left waiting for one.
    if let Err(e) = roster.greet(world, Duration::from_secs(10)) {
        eprintln!("multiproc: at exit: {e}");
    }
    if let Ok(stop) = message::one(&ToAgent::Stop) {
        for rank in 1..world.size {
            if roster.posts.post(rank, CONTROL, stop.clone()).is_err() {
                break;
            }
        }
    }
    // Read on until every agent has stopped: what they still send (the answers of pools that
    // ran to the end) can then be received, and neither side waits in `MPI_Finalize` for sends
    // nobody reads. Pools' messages are dropped unread.
    let mut stopped = vec![false; world.size as usize];
    stopped[0] = true;
    let all_stopped = |stopped: &[bool]| !stopped.contains(&false);
    if !all_stopped(&stopped) {
        let _ = world::wait_for(
            None,
            &mut roster.posts,
            Some(Instant::now() + STOP_PATIENCE),
            |_, tag| tag != CONTROL,
            |_, received| {
                let Ok(bytes) = received.bytes else {
                    return Ok(None);
                };
                let mut input = &bytes[..];
                while let Ok((record, _)) = message::next::<FromAgent>(&mut input) {
                    if let (FromAgent::Stopped, Some(s)) =
                        (record, stopped.get_mut(received.source as usize))
                    {
                        *s = true;
                    }
                }
                Ok(all_stopped(&stopped).then_some(()))
            },
        );
    }
    world::finalize(&mut roster.posts, STOP_PATIENCE);
}

/// How long rank 0 waits at exit for the agents to stop.
const STOP_PATIENCE: Duration = Duration::from_secs(10);
