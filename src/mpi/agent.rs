//! A node agent: what every rank but 0 becomes in `multiproc::init()`.
//!
//! It greets rank 0 and, once welcomed, serves rank 0's pools: for each it runs a local
//! [`Pool`] of worker processes — the same spawn, supervision and recycling as on one machine,
//! so a task that crashes or overruns fails alone and its worker is replaced — hands it the
//! chunks rank 0 sends, and sends the outcomes back. Outcomes come out of the local pools
//! through [`Forward`] sinks into an [`Outbox`]; this thread, the only one here that calls MPI,
//! sends what has gathered there in one message per pool, so that results travel batched.
//! When rank 0 says the job is over, the agent ends its pools and leaves.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::message::{self, CONTROL, FromAgent, PoolSpec, ToAgent};
use super::remote::Ending;
use super::roster;
use super::world::{self, Outgoing, Pacer, Posts, World};
use crate::error::{Error, Result};
use crate::pool::{Chunk, InitTask, Pool, Sink, lock};

/// Serves rank 0 until it says stop, then leaves the job and exits. Never returns.
pub(crate) fn serve(world: &World) -> ! {
    let mut agent = Agent {
        world: world.clone(),
        posts: Posts::new(),
        pools: HashMap::new(),
        outbox: Arc::new(Outbox::default()),
    };
    let outcome = agent.run().and_then(|()| agent.stop());
    if let Err(e) = outcome {
        eprintln!(
            "multiproc: MPI rank {} on {}: {e}; aborting the job",
            world.rank, world.host
        );
        world::abort(EXIT_AGENT_FAILED)
    }
    world::finalize(&mut agent.posts, STOP_PATIENCE);
    std::process::exit(0)
}

/// How long an agent told to stop waits for what it sent to be received (rank 0 reads until
/// every agent says it stopped).
const STOP_PATIENCE: Duration = Duration::from_secs(10);

/// The status an agent that cannot go on aborts the job with.
const EXIT_AGENT_FAILED: i32 = 70;

struct Agent {
    world: World,
    posts: Posts,
    /// Rank 0's pools served here, by tag.
    pools: HashMap<i32, Pool>,
    outbox: Arc<Outbox>,
}

/// What a message from rank 0 asked for.
#[derive(PartialEq, Eq)]
enum Heard {
    /// Work, or the end of a pool: serve on.
    ServeOn,
    /// The end of the job.
    Stop,
}

impl Agent {
    /// Greets rank 0 and serves its pools until it says stop.
    fn run(&mut self) -> Result<()> {
        let hello = roster::hello(&self.world)?;
        self.posts
            .post(0, CONTROL, message::one(&FromAgent::Hello(hello))?)?;
        if !self.welcomed()? {
            return Ok(());
        }
        let mut pacer = Pacer::default();
        loop {
            let mut active = false;
            while let Some(received) = world::take(None, |_, _| false)? {
                active = true;
                if self.handle(&received.bytes?)? == Heard::Stop {
                    return Ok(());
                }
            }
            for (pool, batch) in self.outbox.take() {
                self.posts.post(0, pool, batch)?;
                active = true;
            }
            // Large sends move only while we call into MPI: keep at it until they are done.
            if self.posts.progress() || active {
                pacer.event();
            }
            self.outbox.wait(pacer.next_wait());
        }
    }

    /// Waits for rank 0's answer to the greeting: whether to serve. A refused agent says why
    /// and waits, serving nothing, for the end of the job (leaving early would end it for
    /// everyone).
    fn welcomed(&mut self) -> Result<bool> {
        let answer = world::wait_for(
            Some(CONTROL),
            &mut self.posts,
            None,
            |_, _| false,
            |_, received| {
                let bytes = received.bytes?;
                let mut input = &bytes[..];
                match message::next::<ToAgent>(&mut input)?.0 {
                    answer @ (ToAgent::Welcome | ToAgent::Stop | ToAgent::Refuse { .. }) => {
                        Ok(Some(answer))
                    }
                    other => Err(Error::Protocol(format!(
                        "rank 0 sent {other:?} before its answer to the greeting"
                    ))),
                }
            },
        )?;
        match answer {
            Some(ToAgent::Welcome) => Ok(true),
            Some(ToAgent::Refuse { reason }) => {
                eprintln!("multiproc: refused by rank 0: {reason}");
                self.wait_for_stop().map(|()| false)
            }
            _ => Ok(false),
        }
    }

    fn wait_for_stop(&mut self) -> Result<()> {
        world::wait_for(
            None,
            &mut self.posts,
            None,
            |_, _| false,
            |_, received| {
                let bytes = received.bytes?;
                let mut input = &bytes[..];
                while !input.is_empty() {
                    if let ToAgent::Stop = message::next::<ToAgent>(&mut input)?.0 {
                        return Ok(Some(()));
                    }
                }
                Ok(None)
            },
        )
        .map(|_| ())
    }

    /// Rank 0 said stop: ends the pools (their workers are killed; what they would still
    /// answer is not sent), waits until what was sent is received (rank 0 reads on until every
    /// agent has stopped), and says so, last.
    fn stop(&mut self) -> Result<()> {
        self.pools.clear();
        let _ = self.outbox.take();
        self.posts.settle(std::time::Instant::now() + STOP_PATIENCE);
        self.posts
            .post(0, CONTROL, message::one(&FromAgent::Stopped)?)
    }

    /// Acts on one message from rank 0.
    fn handle(&mut self, mut input: &[u8]) -> Result<Heard> {
        // Chunks of one message go to their pool together: one hand-over, one wake-up.
        let mut chunks: Vec<(i32, Chunk)> = Vec::new();
        while !input.is_empty() {
            let (record, payload) = message::next::<ToAgent>(&mut input)?;
            match record {
                ToAgent::Chunk {
                    pool,
                    id,
                    call,
                    entry,
                    first,
                    offsets,
                    len: _,
                } => {
                    if !message::sound_chunk(first, &offsets, payload.len()) {
                        return Err(Error::Protocol(format!(
                            "rank 0 sent a chunk whose {} items from {first} do not fit its \
                             {} bytes",
                            offsets.len(),
                            payload.len()
                        )));
                    }
                    let sink = Arc::new(Forward {
                        pool,
                        chunk: id,
                        outbox: self.outbox.clone(),
                    });
                    chunks.push((
                        pool,
                        Chunk {
                            sink,
                            call,
                            entry,
                            first: first as usize,
                            payload: payload.to_vec(),
                            offsets,
                            retries: 0,
                            fds: Arc::default(),
                        },
                    ));
                }
                ToAgent::Open { pool, spec } => {
                    self.submit(&mut chunks);
                    self.open(pool, spec);
                }
                ToAgent::Close { pool } => {
                    self.submit(&mut chunks);
                    self.end(pool, Ending::Gracefully);
                }
                ToAgent::Terminate { pool } => {
                    self.submit(&mut chunks);
                    self.end(pool, Ending::Now);
                }
                ToAgent::Stop => return Ok(Heard::Stop),
                other @ (ToAgent::Welcome | ToAgent::Refuse { .. }) => {
                    return Err(Error::Protocol(format!(
                        "rank 0 sent {other:?} after the handshake"
                    )));
                }
            }
        }
        self.submit(&mut chunks);
        Ok(Heard::ServeOn)
    }

    /// Hands chunks to their pools; those of a pool that is not here (it could not be opened)
    /// fail.
    fn submit(&mut self, chunks: &mut Vec<(i32, Chunk)>) {
        let mut by_pool: HashMap<i32, Vec<Chunk>> = HashMap::new();
        for (pool, chunk) in chunks.drain(..) {
            by_pool.entry(pool).or_default().push(chunk);
        }
        for (tag, chunks) in by_pool {
            match self.pools.get(&tag) {
                Some(pool) => {
                    pool.submit_or_fail(chunks, None);
                }
                None => {
                    for c in &chunks {
                        c.fail(0..c.len(), |_| Error::PoolTerminated);
                    }
                }
            }
        }
    }

    fn open(&mut self, tag: i32, spec: PoolSpec) {
        if self.pools.contains_key(&tag) {
            let error = Error::Protocol(format!("pool {tag} is open here already"));
            self.outbox
                .say(tag, &FromAgent::NotOpened { pool: tag, error });
            return;
        }
        let mut builder = Pool::builder()
            .processes(spec.workers)
            .start_timeout(spec.start_timeout);
        if let Some(n) = spec.max_tasks_per_child {
            builder = builder.max_tasks_per_child(n);
        }
        if let Some(limit) = spec.task_timeout {
            builder = builder.task_timeout(limit);
        }
        if let Some(method) = spec.start_method {
            builder = builder.start_method(method);
        }
        if let Some((entry, payload)) = spec.init {
            builder = builder.raw_initializer(InitTask {
                entry,
                payload,
                fds: Arc::default(),
            });
        }
        let answer = match builder.build() {
            Ok(pool) => {
                let workers = pool.processes();
                self.pools.insert(tag, pool);
                FromAgent::Opened { pool: tag, workers }
            }
            Err(error) => FromAgent::NotOpened { pool: tag, error },
        };
        self.outbox.say(tag, &answer);
    }

    /// Ends a local pool on a thread of its own, which says so to rank 0 once every outcome of
    /// the pool is on its way: the pool's last word.
    fn end(&mut self, tag: i32, how: Ending) {
        let pool = self.pools.remove(&tag);
        let outbox = self.outbox.clone();
        let ending = move || {
            match (pool, how) {
                (Some(pool), Ending::Now) => pool.terminate(),
                (Some(pool), Ending::Gracefully) => {
                    pool.close();
                    let _ = pool.join();
                }
                (None, _) => {}
            }
            outbox.say(tag, &FromAgent::Ended { pool: tag });
        };
        let spawned = std::thread::Builder::new()
            .name("multiproc-mpi-end".into())
            .spawn(ending);
        if spawned.is_err() {
            // No thread to spare: the closure, and the pool in it, were dropped, which
            // terminated the pool; its unfinished items failed and were sent on.
            self.outbox.say(tag, &FromAgent::Ended { pool: tag });
        }
    }
}

/// Records on their way to rank 0, by pool tag.
#[derive(Default)]
struct Outbox {
    records: Mutex<Vec<(i32, Outgoing)>>,
    arrived: Condvar,
}

impl Outbox {
    /// Queues `record` (and the bytes it announces) for rank 0.
    ///
    /// # Errors
    /// The record could not be encoded (nothing was queued).
    fn push(&self, pool: i32, record: &FromAgent, trailing: &[u8]) -> Result<()> {
        let mut records = lock(&self.records);
        let at = match records.iter().position(|(p, _)| *p == pool) {
            Some(at) => at,
            None => {
                records.push((pool, Outgoing::new()));
                records.len() - 1
            }
        };
        let batch = records[at].1.buffer();
        let before = batch.len();
        let pushed = message::push(batch, record, trailing);
        if pushed.is_err() {
            batch.truncate(before);
        }
        drop(records);
        self.arrived.notify_one();
        pushed
    }

    /// Queues a record that carries no data of the user's (an answer about a pool, a plain
    /// error): its encoding cannot fail short of a bug, which is said on stderr.
    fn say(&self, pool: i32, record: &FromAgent) {
        if let Err(e) = self.push(pool, record, &[]) {
            eprintln!("multiproc: MPI agent could not encode {record:?}: {e}");
        }
    }

    fn take(&self) -> Vec<(i32, Outgoing)> {
        std::mem::take(&mut *lock(&self.records))
    }

    /// Waits until something is pushed, at most `wait` (zero: yields the core).
    fn wait(&self, wait: Duration) {
        let records = lock(&self.records);
        if !records.is_empty() {
            return;
        }
        if wait.is_zero() {
            drop(records);
            std::thread::yield_now();
            return;
        }
        let _ = self.arrived.wait_timeout(records, wait);
    }
}

/// Sends a chunk's outcomes to rank 0, as the local pool produces them.
struct Forward {
    pool: i32,
    chunk: u64,
    outbox: Arc<Outbox>,
}

impl Sink for Forward {
    fn deliver(&self, first: usize, count: usize, bytes: &[u8]) {
        let record = FromAgent::Results {
            pool: self.pool,
            chunk: self.chunk,
            first: first as u64,
            count: count as u32,
            len: bytes.len() as u64,
        };
        if let Err(e) = self.outbox.push(self.pool, &record, bytes) {
            (first..first + count).for_each(|i| self.fail(i, e.clone()));
        }
    }

    fn fail(&self, index: usize, error: Error) {
        let record = |error| FromAgent::Failed {
            pool: self.pool,
            chunk: self.chunk,
            index: index as u64,
            error,
        };
        // An error too large to encode (a panic message of megabytes, say) goes as what it is.
        if let Err(e) = self.outbox.push(self.pool, &record(error), &[]) {
            let error = Error::Encode(format!("the task's error could not be sent: {e}"));
            self.outbox.say(self.pool, &record(error));
        }
    }

    fn served(&self, _len: usize, took: Duration) {
        let record = FromAgent::Served {
            pool: self.pool,
            chunk: self.chunk,
            took,
        };
        self.outbox.say(self.pool, &record);
    }
}
