"""The response cache: SQLite, keyed by everything that makes a response.

A key hashes the sample's content (not its id), the condition, the model and its revision,
the generation settings, the frame budget and the prompt version, so a rerun skips finished
work and a changed setting recomputes. Each batch commits atomically: a run killed at any
moment loses at most the batch in flight. Only successes are cached; a failed row is retried
by the next run (its last error is kept apart, for the report of a run that stops there)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

from videosafety.budget import FrameBudget
from videosafety.models.base import GenerationSettings
from videosafety.store import open_store

# Bumped whenever the way a sample becomes a prompt changes (system text, query wrapping).
# v2: the blank condition flickers and is timed from the decoded clip; HF models no longer let
# a processor drop static patches (models.hf token_compression), so both conditions changed.
PROMPT_VERSION = "v2"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, response TEXT NOT NULL, seconds REAL, created REAL);
CREATE TABLE IF NOT EXISTS errors (key TEXT PRIMARY KEY, error TEXT NOT NULL, created REAL);
"""


class AskedVideo(Protocol):
    sha256: str
    duration: float
    width: int
    height: int


class AskedSample(Protocol):
    """What of a sample reaches the model (a schema.Sample or a plan's PlannedSample)."""

    query: str
    video: AskedVideo


def sample_content(sample: AskedSample) -> dict:
    """What of a sample reaches the model: the query and the video's bytes and geometry."""
    v = sample.video
    return {"query": sample.query, "video": [v.sha256, v.duration, v.width, v.height]}


def run_fingerprint(model_name: str, revision: str, settings: GenerationSettings, budget: FrameBudget,
                    instruction: str | None = None) -> str:
    payload = {"model": model_name, "revision": revision, "generation": asdict(settings),
               "budget": budget.model_dump(mode="json"), "prompt_version": PROMPT_VERSION}
    if instruction:  # absent otherwise, so caches of runs without one keep their keys
        payload["instruction"] = instruction
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_key(fingerprint: str, sample: AskedSample, condition: str) -> str:
    payload = json.dumps([fingerprint, condition, sample_content(sample)], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


class ResponseCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.db = open_store(self.path, _SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "ResponseCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def done(self, keys: Sequence[str]) -> set[str]:
        out: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = list(keys[i:i + 500])
            q = f"SELECT key FROM responses WHERE key IN ({','.join('?' * len(chunk))})"
            out.update(r[0] for r in self.db.execute(q, chunk))
        return out

    def get(self, keys: Sequence[str]) -> dict[str, tuple[str | None, str | None, float | None]]:
        """key -> (response, error, seconds) for keys with a response or a recorded error."""
        out: dict = {}
        for i in range(0, len(keys), 500):
            chunk = list(keys[i:i + 500])
            marks = ",".join("?" * len(chunk))
            for k, err in self.db.execute(f"SELECT key, error FROM errors WHERE key IN ({marks})", chunk):
                out[k] = (None, err, None)
            for k, resp, sec in self.db.execute(f"SELECT key, response, seconds FROM responses WHERE key IN ({marks})", chunk):
                out[k] = (resp, None, sec)
        return out

    def put(self, successes: Iterable[tuple[str, str, float]], failures: Iterable[tuple[str, str]]) -> None:
        now = time.time()
        successes, failures = list(successes), list(failures)
        with self.db:  # one transaction: the batch lands whole or not at all
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)",
                                [(k, r, s, now) for k, r, s in successes])
            self.db.executemany("DELETE FROM errors WHERE key = ?", [(k,) for k, _, _ in successes])
            self.db.executemany("INSERT OR REPLACE INTO errors VALUES (?, ?, ?)", [(k, e, now) for k, e in failures])

    def forget(self, keys: Sequence[str]) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("DELETE FROM responses WHERE key = ?", [(k,) for k in keys])
