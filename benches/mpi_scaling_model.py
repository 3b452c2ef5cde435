"""The scaling model of a pool over MPI ranks (README, "Beyond one machine"): the parallel
efficiency of a CPU-bound map at many ranks, from per-chunk costs measured at rank 0 by
`cargo bench --features mpi --bench mpi_vs_python` on a small machine.

A discrete-event simulation of what rank 0 does: one thread hands out chunks one after another
(each costs it C0 plus CI per item: encoding, the send, the answer, decoding), chunk sizes follow
the pool's automatic (guided) schedule, every chunk spends LATENCY beyond its work on the way
there and back, and a worker gets its next chunk ahead while its chunks are short or plenty of
work waits behind them (as `Member::room` does), near the end only when it is done. Everything else (the network's bandwidth, a slow node)
is left out: it is a model of rank 0 as the bottleneck, which it is for short tasks.

    python3 benches/mpi_scaling_model.py [--c0 US] [--ci NS] [--latency US]
"""
import argparse
import heapq
import math


def python_chunksize(total, workers):
    return max(1, math.ceil(total / (workers * 4)))


def guided(total, workers):
    """Chunk sizes of `Chunking::guided` (src/pool/job.rs), in order."""
    smallest = math.ceil(python_chunksize(total, workers) / 8)
    sizes, nxt = [], 0
    while nxt < total:
        left = total - nxt
        size = max(min(math.ceil(left / (2 * workers)), nxt), smallest, 1)
        size = min(size, left)
        sizes.append(size)
        nxt += size
    return sizes


def simulate(items, task, workers, c0, ci, latency):
    """Makespan of a map of `items` tasks of `task` seconds over `workers` workers, and rank 0's
    busy time."""
    sizes = guided(items, workers)
    ready = [(0.0, w) for w in range(workers)]
    heapq.heapify(ready)
    rank0_free = 0.0
    busy = 0.0
    makespan = 0.0
    left = items
    for size in sizes:
        left -= size
        t, w = heapq.heappop(ready)
        cost = c0 + size * ci
        start = max(rank0_free, t)
        rank0_free = start + cost
        busy += cost
        arrive = rank0_free + latency / 2
        work = size * task
        # A chunk queued ahead waits at the agent until the worker is free.
        begin = max(arrive, t)
        finish = begin + work
        makespan = max(makespan, finish + latency / 2)
        ahead = latency / work >= 0.05 or left >= workers * size
        # The next request goes out early enough to arrive as this chunk ends, if ahead.
        heapq.heappush(ready, (finish - latency if ahead else finish + latency / 2, w))
    return makespan, busy, len(sizes)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--c0", type=float, default=1.8, help="rank 0 CPU per chunk, us")
    ap.add_argument("--ci", type=float, default=26.0, help="rank 0 CPU per item, ns")
    ap.add_argument("--latency", type=float, default=100.0,
                    help="a chunk's round trip beyond its work, us (here ~35; a network more)")
    ap.add_argument("--per-rank", type=int, default=16, help="workers per rank")
    a = ap.parse_args()
    c0, ci, lat = a.c0 * 1e-6, a.ci * 1e-9, a.latency * 1e-6
    print(f"rank 0: {a.c0} us per chunk + {a.ci} ns per item; round trip +{a.latency} us; "
          f"{a.per_rank} workers per rank; automatic chunks")
    print(f"{'map':<26}{'ranks':>6}{'workers':>9}{'chunks':>9}{'efficiency':>12}"
          f"{'rank 0 busy':>13}")
    for items, task in [(1_000_000, 1e-3), (100_000, 10e-3), (1_000_000, 100e-6)]:
        for ranks in (16, 64, 256):
            workers = ranks * a.per_rank
            makespan, busy, chunks = simulate(items, task, workers, c0, ci, lat)
            ideal = items * task / workers
            label = f"{items:,} x {task * 1e3:g} ms"
            print(f"{label:<26}{ranks:>6}{workers:>9}{chunks:>9}{ideal / makespan:>11.0%}"
                  f"{busy / makespan:>12.0%}")


if __name__ == "__main__":
    main()
