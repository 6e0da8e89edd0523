"""Worker processes for CPU-bound data work (rendering VSB-mini, probing and hashing videos).

Started by forkserver, never by a plain fork: a fork copies a process that may already run
threads (a decoder pool, tokenizers, torch, a test's HTTP server), and a child forked while one of
them holds a lock can hang for ever; one did, building VSB-mini inside the test suite. Work
functions must be importable module-level functions (they are pickled by name)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor


def process_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("forkserver"))
