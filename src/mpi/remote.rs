//! Rank 0's side of a pool that spans the ranks: the thread that stands where a local pool's
//! supervisor stands, between the pool's inbox and the agents.
//!
//! The calls (`map`, `imap`, `apply_async`, …) are the local pool's own: they encode items into
//! chunks and put them in the inbox, and their sinks decode what comes back. This thread hands
//! each chunk to the agent with the fewest chunks per worker in hand, with a non-blocking send
//! (the chunks of one round for one agent go as one message), so that a slow rank never holds
//! up the others; it reads the agents' batched answers and passes them to the sinks. An agent
//! gets as many chunks as keep its workers busy across the round trip ([`Member::room`]), and no
//! more, so that the end of a call does not wait on chunks queued at one rank.
//!
//! Crashes and timeouts are the agents' local pools' business: a worker that dies fails its
//! item there, is replaced there, and the error arrives here, where it is given the rank and
//! host it happened on. A chunk's answers come in any order (a crash fails its item at once
//! and runs the items before it again), and each is taken once (`Sent::mark`). A rank whose
//! workers' initializer fails is taken out of the pool, its items queued again for the others;
//! a rank that breaks the protocol is lost to the pool, its items failed. The pool's tag is
//! reused only once every agent has said its last word on it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::message::{self, FromAgent, PoolSpec, ToAgent};
use super::roster::{self, Agent};
use super::world::{self, Outgoing, Pacer, Posts, World};
use crate::error::{Error, Rank, Result};
use crate::pool::{Chunk, Counters, PoolState, Shared, deliver_outcomes, lock};
use crate::sys;

/// How long rank 0 waits for the agents to answer: to open a pool, and to end one.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a chunk that carries handles cannot go to another rank.
pub(crate) const HANDLES_STAY_LOCAL: &str = "a Queue, Pipe, Lock, Value, Array or SharedMemory lives in this \
     machine's memory and cannot be sent to another MPI rank; share data between ranks through \
     a Manager (multiproc::Manager, which works over TCP) or in the tasks' arguments and results";

/// Tags in use by pools (see `message`): a pool takes the lowest free one.
static TAGS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// The tag of a new pool. MPI guarantees tags up to 32767.
fn take_tag() -> Result<i32> {
    let mut tags = lock(&TAGS);
    let tag = (1..=32767)
        .find(|t| !tags.contains(t))
        .ok_or_else(|| Error::Spawn("32767 pools span the MPI ranks already".into()))?;
    tags.insert(tag);
    Ok(tag)
}

/// The bits of items `start..end` in a bitset of 64-bit words: each word they touch, and the
/// mask of their bits in it.
fn word_masks(start: usize, end: usize) -> impl Iterator<Item = (usize, u64)> {
    let words = if start < end {
        start / 64..(end - 1) / 64 + 1
    } else {
        0..0
    };
    words.map(move |word| {
        let low = start.max(word * 64) - word * 64;
        let high = end.min(word * 64 + 64) - word * 64;
        let mask = if high - low == 64 {
            u64::MAX
        } else {
            ((1u64 << (high - low)) - 1) << low
        };
        (word, mask)
    })
}

/// How a pool ends on the agents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Its work done, its workers told to exit (`close` and `join`).
    Gracefully,
    /// Its workers killed (`terminate`).
    Now,
}

/// A chunk in an agent's hands.
struct Sent {
    chunk: Chunk,
    /// Which of its items were answered (a bit each), and how many. The agent's pool answers
    /// them in any order: a worker's death fails the item it ran at once, and runs the items
    /// before it again, later.
    seen: Vec<u64>,
    answered: usize,
    sent: Instant,
    /// Its time in a worker, once the agent has said.
    took: Option<Duration>,
}

impl Sent {
    fn new(chunk: Chunk) -> Self {
        Sent {
            seen: vec![0; chunk.len().div_ceil(64)],
            chunk,
            answered: 0,
            sent: Instant::now(),
            took: None,
        }
    }

    /// Notes items `first..first + count` (indices in the call) answered.
    ///
    /// # Errors
    /// [`Error::Protocol`] if any is not the chunk's, or was answered before.
    fn mark(&mut self, first: usize, count: usize) -> Result<()> {
        let c = &self.chunk;
        let start = first
            .checked_sub(c.first)
            .filter(|&start| start.checked_add(count).is_some_and(|end| end <= c.len()));
        let Some(start) = start else {
            return Err(Error::Protocol(format!(
                "answers for items {first}..+{count}, not those of its chunk ({}..+{})",
                c.first,
                c.len()
            )));
        };
        // A word at a time: a batch of answers is a run of thousands of items.
        let words = || word_masks(start, start + count);
        if words().any(|(word, mask)| self.seen[word] & mask != 0) {
            return Err(Error::Protocol(format!(
                "answers for items {first}..+{count} twice"
            )));
        }
        for (word, mask) in words() {
            self.seen[word] |= mask;
        }
        self.answered += count;
        Ok(())
    }

    fn done(&self) -> bool {
        self.answered == self.chunk.len()
    }

    /// Fails every item not answered yet.
    fn fail_rest(&self, error: impl Fn() -> Error) {
        for i in 0..self.chunk.len() {
            if self.seen[i / 64] & (1 << (i % 64)) == 0 {
                self.chunk.sink.fail(self.chunk.first + i, error());
            }
        }
    }
}

/// An agent, as one pool sees it.
struct Member {
    agent: Agent,
    workers: usize,
    inflight: HashMap<u64, Sent>,
    /// It sent its pool's last word.
    ended: bool,
    /// It was told to end the pool (once only: it answers each time).
    told_to_end: bool,
    /// Its pool's initializer failed: it can run no task, and gets no more (its tasks go to
    /// the others while any can serve).
    broken: Option<Error>,
    /// It broke the protocol: it gets no more work, and what it sends is ignored; the pool's
    /// tag is never used again (it may still send on it).
    lost: bool,
    /// What a chunk's round trip costs beyond its time in a worker — the messages both ways,
    /// the agent's hand-over — as the least of late (seconds; 0 until measured). A chunk that
    /// waited at the agent behind others took longer, which is not the cost of the trip.
    latency: f64,
    /// The call whose chunks it timed last, and its slowest chunk's time in a worker there
    /// (forgotten by an eighth per chunk), as the local pool paces its workers (`pool::pace`):
    /// a call is paced by its own chunks only, and each rank by its own speed.
    timing: (u64, f64),
}

impl Member {
    /// How many chunks it may hold while chunks of `call` are handed out: one per worker, and
    /// as many more per worker as cover the round trip's cost in chunks of `call` as it serves
    /// them. Tiny tasks need many in flight to keep the workers fed. Long ones (the trip under
    /// 5 % of their time) get one ahead while `plenty` of the call's work waits besides — a
    /// worker then never waits for the trip between two of its chunks — and none near the end
    /// of the queue, so that no chunk waits at a slow rank while another rank's workers are
    /// idle (as the local pool paces long chunks, `pool::pace`). Two per worker for a call it has
    /// not timed yet.
    fn room(&self, call: u64, plenty: bool) -> usize {
        let service = (self.timing.0 == call).then_some(self.timing.1);
        let ahead = match service {
            Some(service) if service > 0.0 => {
                let ratio = self.latency / service;
                if ratio >= 0.05 {
                    ratio.ceil() as usize
                } else {
                    usize::from(plenty)
                }
            }
            _ => 1,
        };
        self.workers * (1 + ahead.min(31))
    }

    fn usable(&self) -> bool {
        !self.lost && !self.ended && self.broken.is_none()
    }
}

/// The thread of a pool that spans the ranks.
pub(crate) struct Remote {
    tag: i32,
    members: Vec<Member>,
    posts: Posts,
    pending: VecDeque<Chunk>,
    next_id: u64,
    state: PoolState,
    admitted: usize,
    /// Whether the agents were told to end the pool.
    ending: bool,
    /// The pool's counters (`Pool::stats`): tasks dropped unrun are counted here.
    stats: Arc<Counters>,
}

/// Opens a pool on every agent of the job, each running `per_rank` workers (by default its
/// share of its host's CPUs). Returns the pool's thread, ready to run.
///
/// # Errors
/// An agent runs another program ([`Error::Spawn`], naming both), an agent could not open its
/// pool (its error), or the agents did not answer.
pub(crate) fn open(
    world: &World,
    template: PoolSpec,
    per_rank: Option<usize>,
    stats: Arc<Counters>,
) -> Result<Remote> {
    let agents = roster::agents(world)?;
    if let Some(refused) = agents.iter().find_map(|a| a.refused.clone()) {
        return Err(Error::Spawn(refused));
    }
    let mut on_host: HashMap<&str, usize> = HashMap::new();
    for a in &agents {
        *on_host.entry(a.host.as_str()).or_default() += 1;
    }
    let share = |a: &Agent| (a.cpus / on_host.get(a.host.as_str()).copied().unwrap_or(1)).max(1);
    let mut remote = Remote {
        tag: take_tag()?,
        members: agents
            .iter()
            .map(|a| Member {
                agent: a.clone(),
                workers: 0,
                inflight: HashMap::new(),
                ended: false,
                told_to_end: false,
                broken: None,
                lost: false,
                latency: 0.0,
                timing: (0, 0.0),
            })
            .collect(),
        posts: Posts::new(),
        pending: VecDeque::new(),
        next_id: 1,
        state: PoolState::Running,
        admitted: 0,
        ending: false,
        stats,
    };
    let opened = remote.open_on_agents(&template, |a| per_rank.unwrap_or_else(|| share(a)));
    if let Err(e) = opened {
        remote.end_on_agents(Ending::Now);
        return Err(e);
    }
    Ok(remote)
}

impl Remote {
    /// Worker processes over all ranks.
    pub(crate) fn workers(&self) -> usize {
        self.members.iter().map(|m| m.workers).sum()
    }

    fn open_on_agents(
        &mut self,
        template: &PoolSpec,
        workers: impl Fn(&Agent) -> usize,
    ) -> Result<()> {
        for m in &self.members {
            let spec = PoolSpec {
                workers: workers(&m.agent),
                ..template.clone()
            };
            let open = message::one(&ToAgent::Open {
                pool: self.tag,
                spec,
            })?;
            self.posts.post(m.agent.rank, self.tag, open)?;
        }
        let members = &mut self.members;
        let mut answered = 0;
        let opened = world::wait_for(
            Some(self.tag),
            &mut self.posts,
            Some(Instant::now() + ANSWER_TIMEOUT),
            |_, _| false,
            |_, received| {
                let source = received.source;
                let Some(m) = members.iter_mut().find(|m| m.agent.rank == source) else {
                    return Err(Error::Protocol(format!(
                        "rank {source} is not serving this pool"
                    )));
                };
                let bytes = received.bytes?;
                let mut input = &bytes[..];
                match message::next::<FromAgent>(&mut input)?.0 {
                    FromAgent::Opened { workers, .. } => m.workers = workers,
                    // The agent has no pool: asked to end it, it answers at once
                    // (`end_on_agents`).
                    FromAgent::NotOpened { error, .. } => return Err(error),
                    other => {
                        return Err(Error::Protocol(format!(
                            "rank {source} answered a new pool with {other:?}"
                        )));
                    }
                }
                answered += 1;
                Ok((answered == members.len()).then_some(()))
            },
        )?;
        opened.ok_or_else(|| {
            Error::Spawn(format!(
                "MPI agents did not answer within {ANSWER_TIMEOUT:?}"
            ))
        })
    }

    /// Tells the agents to end the pool and waits for their last word; frees the pool's tag
    /// once every agent has said it (a tag that may still see messages is never reused: not
    /// after an agent broke the protocol, nor after one kept silent).
    fn end_on_agents(&mut self, how: Ending) {
        let end = match how {
            Ending::Now => ToAgent::Terminate { pool: self.tag },
            Ending::Gracefully => ToAgent::Close { pool: self.tag },
        };
        self.ending = true;
        if let Ok(end) = message::one(&end) {
            // Each agent is told once: told twice, it would answer twice, and the second
            // answer could reach the tag's next pool.
            for m in self
                .members
                .iter_mut()
                .filter(|m| !m.ended && !m.told_to_end)
            {
                m.told_to_end = true;
                let _ = self.posts.post(m.agent.rank, self.tag, end.clone());
            }
        }
        let until = Instant::now() + ANSWER_TIMEOUT;
        let mut pacer = Pacer::default();
        let waiting = |members: &[Member]| members.iter().any(|m| !m.ended && !m.lost);
        while waiting(&self.members) && Instant::now() < until {
            self.posts.progress();
            match self.receive() {
                Ok(true) => pacer.event(),
                Ok(false) => std::thread::sleep(pacer.next_wait()),
                Err(_) => return,
            }
        }
        if self.posts.settle(until) && self.members.iter().all(|m| m.ended) {
            lock(&TAGS).remove(&self.tag);
        }
    }

    /// Takes one message of the pool's tag, if one has arrived, and applies it; an agent whose
    /// message is malformed is lost to the pool, and what a lost agent sends is dropped unread.
    /// Returns whether a message was there.
    ///
    /// # Errors
    /// [`Error::Disconnected`]: the job has ended here.
    fn receive(&mut self) -> Result<bool> {
        let members = &self.members;
        let lost = |source: u32, _| members.iter().any(|m| m.lost && m.agent.rank == source);
        let Some(received) = world::take(Some(self.tag), lost)? else {
            return Ok(false);
        };
        match (received.bytes, self.member(received.source)) {
            (Ok(bytes), _) => self.apply(received.source, &bytes),
            (Err(e), Ok(m)) => self.lose(m, &e.to_string()),
            (Err(e), Err(_)) => eprintln!("multiproc: MPI pool: {e}"),
        }
        Ok(true)
    }

    fn member(&self, rank: u32) -> Result<usize> {
        self.members
            .iter()
            .position(|m| m.agent.rank == rank)
            .ok_or_else(|| Error::Protocol(format!("rank {rank} is not serving this pool")))
    }

    /// The thread's body: serves until the pool ends, then tells the agents. Should it ever
    /// panic, the pool is terminated — every waiting call gets an answer, the agents end their
    /// pools — rather than left without its thread, as the local supervisor does.
    pub(crate) fn run(mut self, shared: Arc<Shared>) {
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.serve(&shared)));
        if served.is_err() {
            eprintln!("multiproc: the MPI pool's thread failed; terminating the pool");
            lock(&shared.inbox).state = PoolState::Terminating;
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.take_inbox(&shared);
                self.fail_everything(|| Error::PoolTerminated);
                self.end_on_agents(Ending::Now);
            }));
        }
    }

    fn serve(&mut self, shared: &Shared) {
        let mut pacer = Pacer::default();
        loop {
            self.take_inbox(shared);
            if self.state == PoolState::Terminating {
                self.fail_everything(|| Error::PoolTerminated);
                self.end_on_agents(Ending::Now);
                return;
            }
            if !self.members.iter().any(Member::usable) {
                // Every rank's initializer failed (the last failure says how), or every rank
                // broke the protocol.
                let why = self.members.iter().rev().find_map(|m| m.broken.clone());
                self.fail_everything(|| {
                    why.clone().unwrap_or_else(|| {
                        Error::Spawn("no MPI rank is left to serve this pool".into())
                    })
                });
            }
            let heard = self.dispatch().and_then(|sent| {
                let mut heard = sent;
                while self.receive()? {
                    heard = true;
                }
                Ok(heard)
            });
            if let Err(Error::Disconnected) = heard {
                // The job has ended here (this program is exiting): nothing will be answered,
                // and nothing more is accepted.
                lock(&shared.inbox).state = PoolState::Terminating;
                self.take_inbox(shared);
                self.fail_everything(|| Error::PoolTerminated);
                self.ending = true;
                return;
            }
            let active = heard.unwrap_or(true);
            if self.state.winds_down(self.admitted) && self.idle() {
                self.end_on_agents(Ending::Gracefully);
                return;
            }
            if self.posts.progress() || active {
                pacer.event();
            }
            let wait = pacer.next_wait();
            if wait.is_zero() {
                std::thread::yield_now();
            } else {
                let _ = sys::fd::wait_readable(shared.waker.as_fd(), Some(wait));
            }
            let _ = shared.waker.drain();
        }
    }

    fn take_inbox(&mut self, shared: &Shared) {
        let mut inbox = lock(&shared.inbox);
        self.pending.extend(inbox.chunks.drain(..));
        self.state = inbox.state;
        self.admitted = inbox.admitted;
    }

    fn idle(&self) -> bool {
        self.pending.is_empty() && self.members.iter().all(|m| m.inflight.is_empty())
    }

    fn fail_everything(&mut self, error: impl Fn() -> Error) {
        for chunk in self.pending.drain(..) {
            self.stats.never_run(&chunk, |_| error());
        }
        for m in &mut self.members {
            for (_, sent) in m.inflight.drain() {
                sent.fail_rest(&error);
            }
        }
    }

    /// Hands pending chunks to the agents with room; returns whether it sent any.
    ///
    /// # Errors
    /// [`Error::Disconnected`]: the job has ended here (what was handed out stays in flight,
    /// to be failed by the caller).
    fn dispatch(&mut self) -> Result<bool> {
        let mut batches: Vec<Outgoing> = vec![Outgoing::new(); self.members.len()];
        let workers: usize = self
            .members
            .iter()
            .filter(|m| m.usable())
            .map(|m| m.workers)
            .sum();
        let mut waiting: usize = self.pending.iter().map(Chunk::len).sum();
        while let Some(chunk) = self.pending.front() {
            waiting -= chunk.len();
            if chunk.sink.abandoned() {
                self.stats.cancelled(chunk.len());
                self.pending.pop_front();
                continue;
            }
            let call = chunk.call;
            // Enough waits behind this chunk for every worker to find as much when it is done.
            let plenty = waiting >= workers.saturating_mul(chunk.len());
            let Some(m) = self
                .members
                .iter()
                .enumerate()
                .filter(|(_, m)| {
                    m.usable() && m.workers > 0 && m.inflight.len() < m.room(call, plenty)
                })
                .min_by_key(|(_, m)| m.inflight.len() * 1024 / m.workers)
                .map(|(at, _)| at)
            else {
                break;
            };
            let Some(chunk) = self.pending.pop_front() else {
                break;
            };
            if !chunk.sink.claim() {
                self.stats.cancelled(chunk.len());
                continue;
            }
            if !chunk.fds.is_empty() {
                chunk.fail(0..chunk.len(), |_| Error::Encode(HANDLES_STAY_LOCAL.into()));
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let record = ToAgent::Chunk {
                pool: self.tag,
                id,
                call: chunk.call,
                entry: chunk.entry,
                first: chunk.first as u64,
                offsets: chunk.offsets.clone(),
                len: chunk.payload.len() as u64,
            };
            if let Err(e) = message::push(batches[m].buffer(), &record, &chunk.payload) {
                chunk.fail(0..chunk.len(), |_| e.clone());
                continue;
            }
            self.members[m].inflight.insert(id, Sent::new(chunk));
        }
        let mut sent = false;
        for (m, batch) in batches.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            sent = true;
            self.posts
                .post(self.members[m].agent.rank, self.tag, batch)?;
        }
        Ok(sent)
    }

    /// Applies an agent's message; an agent that breaks the protocol is lost to the pool.
    fn apply(&mut self, source: u32, mut input: &[u8]) {
        let Ok(m) = self.member(source) else {
            eprintln!("multiproc: a message from MPI rank {source}, which serves no such pool");
            return;
        };
        while !input.is_empty() && !self.members[m].lost {
            let applied = message::next::<FromAgent>(&mut input)
                .and_then(|(record, bytes)| self.apply_record(m, record, bytes));
            if let Err(e) = applied {
                self.lose(m, &e.to_string());
                return;
            }
        }
    }

    fn apply_record(&mut self, m: usize, record: FromAgent, bytes: &[u8]) -> Result<()> {
        let others_serve = self
            .members
            .iter()
            .enumerate()
            .any(|(i, o)| i != m && o.usable());
        let member = &mut self.members[m];
        if self.ending {
            // Its chunks were failed here already: everything but its last word is dropped.
            if let FromAgent::Ended { .. } = record {
                member.ended = true;
            }
            return Ok(());
        }
        let place = member.agent.place();
        let unknown = |chunk: u64| {
            Error::Protocol(format!("answers for chunk {chunk}, which it does not hold"))
        };
        let chunk = match record {
            FromAgent::Results {
                chunk,
                first,
                count,
                ..
            } => {
                let sent = member
                    .inflight
                    .get_mut(&chunk)
                    .ok_or_else(|| unknown(chunk))?;
                let (first, count) = (first as usize, count as usize);
                sent.mark(first, count)?;
                deliver_outcomes(&*sent.chunk.sink, first, count, bytes);
                chunk
            }
            FromAgent::Failed {
                chunk,
                index,
                error,
                ..
            } => {
                let sent = member
                    .inflight
                    .get_mut(&chunk)
                    .ok_or_else(|| unknown(chunk))?;
                let index = index as usize;
                sent.mark(index, 1)?;
                let error = on_rank(error, &place);
                if let Error::InitializerFailed(_) = error {
                    // This rank cannot run tasks (its workers' initializer fails there): it is
                    // taken out of the pool, and its items run on the others, while any can.
                    if member.broken.is_none() {
                        eprintln!(
                            "multiproc: {place} is taken out of the MPI pool: {error}{}",
                            if others_serve {
                                "; its tasks go to the other ranks"
                            } else {
                                ""
                            }
                        );
                        member.broken = Some(error.clone());
                    }
                    if others_serve {
                        let at = index - sent.chunk.first;
                        self.pending.push_back(sent.chunk.slice(at..at + 1, 0));
                        return self.forget_if_done(m, chunk);
                    }
                }
                sent.chunk.sink.fail(index, error);
                chunk
            }
            FromAgent::Served { chunk, took, .. } => {
                if let Some(sent) = member.inflight.get_mut(&chunk) {
                    sent.chunk.sink.served(sent.chunk.len(), took);
                    sent.took = Some(took);
                    let (call, took) = (sent.chunk.call, took.as_secs_f64());
                    member.timing = match member.timing {
                        (timed, slowest) if timed == call => (call, took.max(slowest * 7.0 / 8.0)),
                        _ => (call, took),
                    };
                }
                return Ok(());
            }
            other => return Err(Error::Protocol(format!("unexpected {other:?}"))),
        };
        self.forget_if_done(m, chunk)
    }

    /// Forgets chunk `chunk` of member `m` once every item of it is answered, noting what its
    /// round trip cost.
    fn forget_if_done(&mut self, m: usize, chunk: u64) -> Result<()> {
        let member = &mut self.members[m];
        if member.inflight.get(&chunk).is_some_and(Sent::done) {
            let done = member.inflight.remove(&chunk);
            if let Some(Sent {
                sent,
                took: Some(took),
                ..
            }) = done
            {
                let beyond = sent.elapsed().saturating_sub(took).as_secs_f64();
                member.latency = if member.latency == 0.0 || beyond < member.latency {
                    beyond
                } else {
                    // Drifts up slowly, should the trip itself become dearer.
                    member.latency * 0.9 + beyond * 0.1
                };
            }
        }
        Ok(())
    }

    /// Gives up on an agent that broke the protocol: what it holds fails, and it gets nothing
    /// more.
    fn lose(&mut self, m: usize, why: &str) {
        let member = &mut self.members[m];
        let place = member.agent.place();
        eprintln!("multiproc: {place} broke the protocol ({why}); it gets no more work");
        member.lost = true;
        for (_, sent) in member.inflight.drain() {
            sent.fail_rest(|| Error::Protocol(format!("{place}: {why}")));
        }
    }
}

impl Drop for Remote {
    /// A pool that never ran (its thread could not start) still ends on the agents.
    fn drop(&mut self) {
        if !self.ending {
            self.end_on_agents(Ending::Now);
        }
    }
}

/// `error`, as it happened on `place`: a worker's death or timeout names the rank and host.
fn on_rank(error: Error, place: &Rank) -> Error {
    match error {
        Error::WorkerDied {
            pid, cause, task, ..
        } => Error::WorkerDied {
            pid,
            cause,
            task,
            rank: Some(place.clone()),
        },
        Error::TaskTimeout {
            task, after, pid, ..
        } => Error::TaskTimeout {
            task,
            after,
            pid,
            rank: Some(place.clone()),
        },
        Error::InitializerFailed(inner) => Error::InitializerFailed(Box::new(match *inner {
            // A panic names no rank of its own: its message says which.
            Error::TaskPanicked {
                message,
                location,
                backtrace,
            } => Error::TaskPanicked {
                message: format!("{message} (on {place})"),
                location,
                backtrace,
            },
            inner => on_rank(inner, place),
        })),
        Error::Spawn(why) => Error::Spawn(format!("{place}: {why}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_masks_cover_exactly_the_items() {
        for (start, end) in [
            (0, 0),
            (0, 1),
            (3, 9),
            (0, 64),
            (63, 65),
            (5, 200),
            (64, 128),
        ] {
            let mut bits = [0u64; 4];
            for (word, mask) in word_masks(start, end) {
                assert_eq!(bits[word] & mask, 0, "a bit twice");
                bits[word] |= mask;
            }
            for i in 0..256 {
                let set = bits[i / 64] & (1 << (i % 64)) != 0;
                assert_eq!(set, (start..end).contains(&i), "item {i} of {start}..{end}");
            }
        }
    }
}
