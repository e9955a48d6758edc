"""Crash harness: SIGKILL a cluster at a random moment while client threads make mixed writes (keys, aliases,
grants, tags, rotations, multi-Region keys and their replicas, ciphertexts), restart it on the same data directory
and ports, and check that every acknowledged change is there, every acknowledged ciphertext decrypts, and every
change without an answer is wholly there or wholly absent (tests/crash_checks.py).

Rounds run on two clusters: one process, and `--workers 2`, killed as a whole process group (every process at once,
like a host dying), by its leader alone (the workers then stop on their own), or one worker first and the rest a
little later. Some rounds kill the cluster a second time while it starts again, and each cluster's very first start
is killed once too. A round's random choices, the moments of the kills among them, follow from the run's seed and
the round's number; every failure names both.

    python -m tests.crash_harness --rounds 30          (make torture)

tests/e2e/test_crash.py runs a few rounds as part of the suite."""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.crash_checks import Checker, Tally
from tests.crash_workload import Ledger, Writer
from trent.cluster.ports import free_port_block
from trent.cluster.running import RunningCluster, alive, poll
from trent.node.config import DEFAULT_REGIONS

KILL_WINDOW = (0.15, 1.0)  # seconds of writing before the kill, drawn per round
RESTART_KILL_WINDOW = (0.0, 0.6)  # seconds after launching a restart that a second kill may come (start-up ~0.3 s)
WRITE_CAP = 30.0  # seconds a writer thread may take to notice the kill before it counts as hung


@dataclass(frozen=True)
class RoundPlan:
    workers: int  # 1: one process; 2: `--workers 2`
    # "process": SIGKILL the one process; "group": every process at once; "leader": the leader only (its workers
    # then stop by themselves); "worker": one worker, then (the others serving on meanwhile) the whole group.
    kill: str
    # Kill it once more while it starts again (loading, catching up with replication), before the real restart.
    again: bool = False


FAST_PLAN = (RoundPlan(1, "process"), RoundPlan(1, "process", again=True), RoundPlan(1, "process"),
             RoundPlan(2, "worker"), RoundPlan(2, "leader", again=True))


def torture_plan(rounds: int, seed: int) -> list[RoundPlan]:
    """Every third round with workers (killed in any of the ways); one round in three also killed again while
    restarting."""
    rng = random.Random(f"{seed}/plan")
    return [RoundPlan(2, rng.choice(("group", "leader", "worker")), rng.random() < 1 / 3) if n % 3 == 2
            else RoundPlan(1, "process", rng.random() < 1 / 3) for n in range(rounds)]


@dataclass
class Subject:
    """One cluster under test, and what all its rounds so far were told (for the final re-check)."""

    cluster: RunningCluster
    ledger: Ledger
    whole: set[tuple[str, str]]


class CrashRun:
    def __init__(self, base: Path, seed: int, threads: int = 4, regions: tuple[str, ...] = DEFAULT_REGIONS,
                 log: bool = False) -> None:
        self.base = base
        self.seed = seed
        self.threads = threads
        self.regions = regions
        self.log = log
        self.tally = Tally()
        self.subjects: dict[int, Subject] = {}

    def subject(self, workers: int) -> Subject:
        """The cluster for rounds with ``workers`` processes; its very first start is killed once on the way."""
        if workers not in self.subjects:
            extra = ("--replica-delay", "0.2", *(("--workers", str(workers)) if workers > 1 else ()))
            c = RunningCluster(self.base / f"workers{workers}", free_port_block(len(self.regions) + 1),
                               regions=self.regions, extra_args=extra, own_group=True, verbose=False)
            self.kill_while_starting(c, random.Random(f"{self.seed}/first/{workers}").uniform(*RESTART_KILL_WINDOW))
            self.subjects[workers] = Subject(c.start(), Ledger(), set())
        return self.subjects[workers]

    def round(self, number: int, plan: RoundPlan) -> None:
        rng = random.Random(f"{self.seed}/{number}")
        delay, again = rng.uniform(*KILL_WINDOW), rng.uniform(*RESTART_KILL_WINDOW)
        label = (f"round {number} (seed {self.seed}, workers {plan.workers}, kill {plan.kill} after {delay:.3f}s"
                 f"{f', again {again:.3f}s into the restart' if plan.again else ''})")
        subject = self.subject(plan.workers)
        c = subject.cluster
        checker = Checker(c, self.regions, self.tally, label, subject.whole)
        ledger = self.write_and_kill(number, plan, c, rng, delay, checker)
        if plan.again:
            self.kill_while_starting(c, again)
        c.start()
        checker.sweep()
        checker.check(ledger)
        subject.ledger.extend(ledger)
        self.tally.rounds += 1
        if self.log:
            acked = sum(1 for ch in ledger.changes if ch.acked)
            print(f"{label}: {acked} acknowledged, {len(ledger.changes) - acked} maybe, "
                  f"{len(ledger.ciphertexts)} ciphertexts; failures so far {len(self.tally.failures)}", flush=True)

    def write_and_kill(self, number: int, plan: RoundPlan, c: RunningCluster, rng: random.Random, delay: float,
                       checker: Checker) -> Ledger:
        """Client threads write until the cluster is killed ``delay`` seconds in; what they were told."""
        ledger, killed, worker_killed = Ledger(), threading.Event(), threading.Event()
        homes = [self.regions[i % len(self.regions)] for i in range(self.threads)]
        writers = [Writer(f"r{number}w{i}", home, tuple(r for r in self.regions if r != home), c.client(home),
                          random.Random(rng.random()), ledger, killed, worker_killed)
                   for i, home in enumerate(homes)]
        stop_at = time.monotonic() + WRITE_CAP
        threads = [threading.Thread(target=w.run, args=(lambda: killed.is_set() or time.monotonic() > stop_at,),
                                    daemon=True) for w in writers]
        for t in threads:
            t.start()
        pids = c.worker_pids()
        # The random moment of the crash: the writers keep going meanwhile.
        if plan.kill == "worker":  # one worker dies first; the other processes serve on until the group dies
            time.sleep(delay / 2)
            worker_killed.set()
            os.kill(pids[0], signal.SIGKILL)
            self.tally.kills += 1
            time.sleep(delay / 2)
        else:
            time.sleep(delay)
        killed.set()
        c.kill(group=plan.kill in ("group", "worker"))
        self.tally.kills += 1
        for t in threads:
            t.join(WRITE_CAP)
        if any(t.is_alive() for t in threads):
            checker.fail("a writer thread hung after the kill")
        for problem in ledger.unexpected:
            checker.fail(problem)
        self.tally.retryable += ledger.retryable
        self.tally.dropped += ledger.dropped
        # The workers of a leader killed alone stop on their own (they were told their parent died).
        poll(lambda: not any(alive(p) for p in pids), timeout=WRITE_CAP)
        return ledger

    def kill_while_starting(self, c: RunningCluster, delay: float) -> None:
        """Start ``c`` and SIGKILL all its processes ``delay`` seconds after launching it, up or not yet."""
        def kill() -> None:
            proc = poll(lambda: c.proc, timeout=WRITE_CAP, interval=0.001)
            assert proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        timer = threading.Timer(delay, kill)
        timer.start()
        with contextlib.suppress(RuntimeError):  # it died before it was up
            c.start()
        timer.join()
        assert c.proc is not None
        c.proc.wait(WRITE_CAP)
        c.proc = None
        self.tally.kills += 1

    def recheck(self) -> None:
        """Every round's ledger again, on each cluster as it is at the end (later crashes must not lose earlier
        rounds' changes)."""
        for workers, subject in self.subjects.items():
            checker = Checker(subject.cluster, self.regions, Tally(), f"final re-check (workers {workers})",
                              set())
            checker.sweep()
            checker.check(subject.ledger)
            self.tally.failures += checker.tally.failures

    def close(self) -> None:
        for subject in self.subjects.values():
            if subject.cluster.proc is not None:
                subject.cluster.kill(group=True)


def run(base: Path, plans: list[RoundPlan] | tuple[RoundPlan, ...], seed: int, threads: int = 4,
        log: bool = False) -> Tally:
    crash = CrashRun(base, seed, threads, log=log)
    try:
        for number, plan in enumerate(plans):
            crash.round(number, plan)
        crash.recheck()
    finally:
        crash.close()
    return crash.tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.crash_harness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seed", type=int, default=None, help="repeat a run's random choices")
    parser.add_argument("--threads", type=int, default=4, help="client threads writing in each round")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep the clusters' data and logs here")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"crash harness: {args.rounds} rounds, seed {seed}", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="trent-crash-") as tmp:
        base = args.data_dir or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        tally = run(base, torture_plan(args.rounds, seed), seed, args.threads, log=True)
    print(tally.summary())
    print(f"{time.monotonic() - started:.1f}s")
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.exit(main())
