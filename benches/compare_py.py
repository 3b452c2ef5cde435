"""CPython side of `cargo bench --bench compare`: `multiprocessing.Pool` on the same workloads
and inputs as the Rust side (benches/compare.rs), so both can be read off one table.

Usage: python3 benches/compare_py.py <fork|spawn> <full|smoke>

Workloads (sizes are full / smoke; "median of a / b" = a repetitions full, b smoke):

1. start_2, join_2   Pool(2): time from `ctx.Pool(2)` until one `apply(sq, (1,))` round trip
                     has completed (start), then `close() + join()` (join); median of 5 / 2,
                     a fresh pool each time.
2. start_n, join_n   the same with `os.cpu_count()` workers.
   Workloads 3-9 share one Pool(2), warmed up with a 1 000-item map before anything is timed.
3. map_auto          `pool.map(sq, range(N))`, default chunksize, N = 1 000 000 / 100 000;
                     median of 5 / 2. (map_auto_n = N)
4. map_chunk1        `pool.map(sq, range(M), chunksize=1)`, M = 20 000 / 2 000; median of
                     3 / 1. (map_chunk1_n = M)
5. apply_p50, _p99   2 000 / 200 sequential `pool.apply(sq, (i,))` after 50 untimed calls,
                     each timed with perf_counter_ns; percentile = sorted[round((len-1)*p)],
                     as on the Rust side.
6. imap_unordered    drain `pool.imap_unordered(sq, range(K), chunksize=64)`,
                     K = 200 000 / 20 000; median of 3 / 1. (imap_unordered_n = K)
7. echo              `pool.apply(echo, (payload,))` round trip of a bytes payload of 64 MiB /
                     8 MiB (there and back); median of 3 / 1. (echo_bytes = payload size)
8. cpu_serial,       64 x cube_sum(n) (pure-Python loop summing i**3, n = 200 000 / 20 000):
   cpu_pool          in the parent (serial) and with `pool.map(cube_sum, [n]*64)` (pool);
                     median of 3 / 1, serial and pool runs interleaved; results checked equal. (cpu_n = n)
9. idle_rss_kib      median VmRSS (from /proc/<pid>/status) of the pool's idle workers, once
                     every worker has served a task.
10. thread_map,      `multiprocessing.dummy.Pool(2)` (ThreadPool): `map(sq, range(N))` as in 3
    thread_apply_p50 (median of 5 / 2), and 2 000 / 200 `apply(sq, (i,))` as in 5. The start
                     method plays no part: threads.
11. manager_start,   `ctx.Manager()` until one `d[0] = 0` on its dict (median of 5 / 2); then
    manager_*_p50    2 000 / 200 `d[i % 100] = i` and `d[i % 100]` (set, get), and
                     `c.add(5)` on a `Counter` registered with a `BaseManager` (call).
12. manager_queue,   20 000 / 2 000 `q.put(i)` on a `Manager().Queue()`, then as many `q.get()`
    manager_list     (seconds for all); 5 000 / 500 `l.append(i)` on a `Manager().list()`.
12. start_2_fork,    In the fork run only: start_2 again under its own name, and start_2 with
    start_2_forkserver  the forkserver context, once its server is up (one untimed pool first).

Output: exactly one line on stdout, a flat JSON object of the keys above. Times are seconds
(floats); the *_n counts, echo_bytes and idle_rss_kib are integers; anything that could not
be measured is null. Diagnostics go to stderr. During the run file descriptor 1 points at
stderr, so nothing a worker might print can corrupt the JSON line.
"""

import gc
import json
import math
import multiprocessing
import multiprocessing.dummy
import os
import statistics
import sys
import threading
import time
from multiprocessing.managers import BaseManager


# ---- task functions (module level, so spawn workers can unpickle them) ----

def sq(x):
    return x * x


def echo(b):
    return b


def cube_sum(n):
    total = 0
    for i in range(n):
        total += i * i * i
    return total


def pid_after(delay):
    time.sleep(delay)
    return os.getpid()


class Counter:
    """An object hosted by a BaseManager (module level, so a spawned server can import it)."""

    def __init__(self):
        self.n = 0

    def add(self, by):
        self.n += by
        return self.n


class CounterManager(BaseManager):
    pass


CounterManager.register("Counter", Counter)


# ---- helpers ----

SCALES = {
    "full": dict(reps=5, start_reps=5, map_n=1_000_000, chunk1_n=20_000, chunk1_reps=3,
                 apply_calls=2_000, imap_n=200_000, imap_reps=3, echo_bytes=64 << 20,
                 echo_reps=3, cpu_n=200_000, cpu_reps=5, deadline=600),
    "smoke": dict(reps=2, start_reps=2, map_n=100_000, chunk1_n=2_000, chunk1_reps=1,
                  apply_calls=200, imap_n=20_000, imap_reps=1, echo_bytes=8 << 20,
                  echo_reps=1, cpu_n=20_000, cpu_reps=1, deadline=120),
}

KEYS = ["start_2", "join_2", "start_n", "join_n", "map_auto", "map_auto_n", "map_chunk1",
        "map_chunk1_n", "apply_p50", "apply_p99", "imap_unordered", "imap_unordered_n",
        "echo", "echo_bytes", "cpu_serial", "cpu_pool", "cpu_n", "idle_rss_kib",
        "thread_map", "thread_apply_p50", "manager_start", "manager_set_p50",
        "manager_get_p50", "manager_call_p50", "manager_queue", "manager_list",
        "start_2_fork", "start_2_forkserver"]


def log(msg):
    print(f"compare_py: {msg}", file=sys.stderr, flush=True)


def timed(f):
    """Seconds taken by f(), and its result."""
    gc.collect()
    t0 = time.perf_counter()
    r = f()
    return time.perf_counter() - t0, r


def median_of(reps, f):
    return statistics.median(timed(f)[0] for _ in range(reps))


def percentile(values, p):
    """Same rule as the Rust side: sorted[round((len-1)*p)], rounding half away from zero."""
    v = sorted(values)
    return v[int(math.floor((len(v) - 1) * p + 0.5))]


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Results:
    """The JSON object being filled in; emitted once, by whoever finishes first (the main
    thread, or the watchdog if something hangs)."""

    def __init__(self, out_fd):
        self.values = {k: None for k in KEYS}
        self.out_fd = out_fd
        self.lock = threading.Lock()
        self.emitted = False

    def __setitem__(self, key, value):
        assert key in self.values, key
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        self.values[key] = value

    def emit(self):
        with self.lock:
            if self.emitted:
                return
            self.emitted = True
            line = json.dumps(self.values, allow_nan=False) + "\n"
            os.write(self.out_fd, line.encode())


def section(name, res, f):
    """Run one workload; on failure log it and leave its keys null."""
    log(f"{name}…")
    try:
        f()
    except Exception as e:  # noqa: BLE001 - report and carry on with the other workloads
        log(f"{name} failed: {type(e).__name__}: {e}")


# ---- workloads ----

def start_join(ctx, workers, reps):
    starts, joins = [], []
    for _ in range(reps):
        gc.collect()
        t0 = time.perf_counter()
        p = ctx.Pool(workers)
        r = p.apply(sq, (1,))
        t1 = time.perf_counter()
        p.close()
        p.join()
        t2 = time.perf_counter()
        assert r == 1
        starts.append(t1 - t0)
        joins.append(t2 - t1)
    return statistics.median(starts), statistics.median(joins)


def wait_all_workers_served(pool):
    """Return the worker pids once each of them has run a task (so all are booted and idle)."""
    pids = {p.pid for p in pool._pool}
    seen = set()
    for _ in range(50):
        seen |= set(pool.map(pid_after, [0.01] * (2 * len(pids)), chunksize=1))
        if pids <= seen:
            break
    if not pids <= seen:
        log(f"not every worker ran a task: pool {sorted(pids)}, seen {sorted(seen)}")
    return sorted(pids & seen) or sorted(pids)


def map_squares_time(pool, n, reps):
    """Median seconds of `pool.map(sq, range(n))` (workload 3, and 10 for the ThreadPool)."""
    def once():
        out = pool.map(sq, range(n))
        assert len(out) == n and out[-1] == (n - 1) ** 2
    return median_of(reps, once)


def apply_round_trips(pool, calls):
    """Nanoseconds of each of `calls` sequential `pool.apply(sq, (i,))` after 50 untimed ones
    (workload 5, and 10 for the ThreadPool)."""
    for i in range(50):
        pool.apply(sq, (i,))
    gc.collect()
    ns = time.perf_counter_ns
    rtts = []
    for i in range(calls):
        t0 = ns()
        r = pool.apply(sq, (i,))
        rtts.append(ns() - t0)
        assert r == i * i
    return rtts


def run(method, scale, res):
    s = SCALES[scale]
    ctx = multiprocessing.get_context(method)
    ncpu = os.cpu_count() or 2
    log(f"python {sys.version.split()[0]}, start method {method}, {scale}, {ncpu} CPUs")

    def starts(workers, k_start, k_join):
        def go():
            res[k_start], res[k_join] = start_join(ctx, workers, s["start_reps"])
        return go

    section("start/join, 2 workers", res, starts(2, "start_2", "join_2"))
    section(f"start/join, {ncpu} workers", res, starts(ncpu, "start_n", "join_n"))
    if method == "fork":
        res["start_2_fork"] = res.values["start_2"]

        def forkserver():
            fs = multiprocessing.get_context("forkserver")
            start_join(fs, 2, 1)  # the server starts here, untimed
            res["start_2_forkserver"] = start_join(fs, 2, s["start_reps"])[0]

        section("start, 2 workers, forkserver", res, forkserver)

    pool = ctx.Pool(2)
    try:
        assert pool.apply(sq, (3,)) == 9
        assert pool.map(sq, range(1000)) == [i * i for i in range(1000)]  # warm-up

        def idle():
            rss = [rss_kib(pid) for pid in wait_all_workers_served(pool)]
            rss = [r for r in rss if r is not None]
            if rss:
                res["idle_rss_kib"] = int(statistics.median(rss))

        section("idle worker RSS", res, idle)

        def map_auto():
            res["map_auto_n"] = s["map_n"]
            res["map_auto"] = map_squares_time(pool, s["map_n"], s["reps"])

        section("map, default chunksize", res, map_auto)

        def map_chunk1():
            m = s["chunk1_n"]
            res["map_chunk1_n"] = m
            res["map_chunk1"] = median_of(
                s["chunk1_reps"], lambda: pool.map(sq, range(m), chunksize=1))

        section("map, chunksize 1", res, map_chunk1)

        def apply_latency():
            rtts = apply_round_trips(pool, s["apply_calls"])
            res["apply_p50"] = percentile(rtts, 0.5) / 1e9
            res["apply_p99"] = percentile(rtts, 0.99) / 1e9

        section("apply round trips", res, apply_latency)

        def imap_unordered():
            k = s["imap_n"]
            res["imap_unordered_n"] = k

            def drain():
                count = 0
                for _ in pool.imap_unordered(sq, range(k), chunksize=64):
                    count += 1
                assert count == k
            res["imap_unordered"] = median_of(s["imap_reps"], drain)

        section("imap_unordered", res, imap_unordered)

        def echo_bytes():
            size = s["echo_bytes"]
            res["echo_bytes"] = size
            payload = os.urandom(size)

            def once():
                back = pool.apply(echo, (payload,))
                assert len(back) == size
            res["echo"] = median_of(s["echo_reps"], once)

        section(f"echo {s['echo_bytes'] >> 20} MiB", res, echo_bytes)

        def cpu():
            n = s["cpu_n"]
            res["cpu_n"] = n
            serial, pooled = [], []
            for _ in range(s["cpu_reps"]):
                t, a = timed(lambda: [cube_sum(n) for _ in range(64)])
                serial.append(t)
                t, b = timed(lambda: pool.map(cube_sum, [n] * 64))
                pooled.append(t)
                assert a == b, "serial and pool cube sums differ"
                log(f"  serial {serial[-1]:.3f} s, pool {pooled[-1]:.3f} s")
            # The best run of each, as the Rust side does: interference only slows runs down.
            res["cpu_serial"] = min(serial)
            res["cpu_pool"] = min(pooled)

        section("CPU-bound map", res, cpu)
    finally:
        pool.close()
        pool.join()

    def thread_pool():
        tp = multiprocessing.dummy.Pool(2)
        try:
            assert tp.map(sq, range(1000)) == [i * i for i in range(1000)]  # warm-up
            res["thread_map"] = map_squares_time(tp, s["map_n"], s["reps"])
            rtts = apply_round_trips(tp, s["apply_calls"])
            res["thread_apply_p50"] = percentile(rtts, 0.5) / 1e9
        finally:
            tp.close()
            tp.join()

    section("ThreadPool (multiprocessing.dummy)", res, thread_pool)

    def manager():
        starts = []
        for _ in range(s["start_reps"]):
            t0 = time.perf_counter()
            m = ctx.Manager()
            d = m.dict()
            d[0] = 0
            starts.append(time.perf_counter() - t0)
            m.shutdown()
        res["manager_start"] = statistics.median(starts)
        m = ctx.Manager()
        try:
            d = m.dict()
            ns = time.perf_counter_ns
            sets, gets = [], []
            for i in range(s["apply_calls"]):
                t0 = ns()
                d[i % 100] = i
                sets.append(ns() - t0)
                t0 = ns()
                d[i % 100]
                gets.append(ns() - t0)
            res["manager_set_p50"] = percentile(sets, 0.5) / 1e9
            res["manager_get_p50"] = percentile(gets, 0.5) / 1e9
            q = m.Queue()
            n = s["apply_calls"] * 10
            t0 = time.perf_counter()
            for i in range(n):
                q.put(i)
            for i in range(n):
                assert q.get() == i
            res["manager_queue"] = time.perf_counter() - t0
            lst = m.list()
            n = s["apply_calls"] * 5 // 2
            t0 = time.perf_counter()
            for i in range(n):
                lst.append(i)
            res["manager_list"] = time.perf_counter() - t0
        finally:
            m.shutdown()
        cm = CounterManager(ctx=ctx)
        cm.start()
        try:
            c = cm.Counter()
            calls = []
            for i in range(1, s["apply_calls"] + 1):
                t0 = ns()
                assert c.add(5) == 5 * i
                calls.append(ns() - t0)
            res["manager_call_p50"] = percentile(calls, 0.5) / 1e9
        finally:
            cm.shutdown()

    section("Manager dict", res, manager)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("fork", "spawn") or sys.argv[2] not in SCALES:
        print("usage: compare_py.py <fork|spawn> <full|smoke>", file=sys.stderr)
        return 2
    method, scale = sys.argv[1], sys.argv[2]

    # Keep stdout for the JSON line alone: fd 1 points at stderr while we run (inherited by
    # forked and spawned workers too).
    sys.stdout.flush()
    out_fd = os.dup(1)
    os.dup2(2, 1)
    res = Results(out_fd)

    # If a workload hangs (a Pool can wait forever on a lost worker), report what we have.
    deadline = SCALES[scale]["deadline"]

    def watchdog():
        log(f"gave up after {deadline} s; unmeasured workloads are null")
        res.emit()
        for child in multiprocessing.active_children():
            child.kill()
        os._exit(0)

    timer = threading.Timer(deadline, watchdog)
    timer.daemon = True
    timer.start()

    t0 = time.perf_counter()
    try:
        run(method, scale, res)
    finally:
        timer.cancel()
        res.emit()
        log(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
