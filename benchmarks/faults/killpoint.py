"""Run a command of this project and SIGKILL it at a chosen point of its own code: the kill
campaign's way to hit phases too short to hit by timing (judging with the rules, writing a
report, a checkpoint's last file). Nothing in the project is changed: the point is a call
wrapped in this process only, and the kill is a real SIGKILL (of the process group when the
process leads one, so decoding workers die with it, as they would under `kill -9 -PGID`).

    VS_KILL_AT=SPEC python -m faults.killpoint -m videosafety eval ...
    VS_KILL_AT=SPEC python -m faults.killpoint path/to/script.py ARGS...

SPEC is one of
    call:MODULE:QUALNAME:N     kill as the N-th call of MODULE.QUALNAME starts (calls 1..N-1 done)
    return:MODULE:QUALNAME:N   kill as the N-th call returns (its work done, nothing after it)
    torn:GLOB:N                kill while writing the N-th file whose name matches GLOB through a
                               temporary file and a rename: the temporary file is cut at half its
                               size (mid-line) and the rename never happens
Without VS_KILL_AT the command runs untouched. (PYTHONPATH must hold benchmarks/ and src/.)
"""

from __future__ import annotations

import fnmatch
import functools
import importlib
import os
import runpy
import signal
import sys

ENV = "VS_KILL_AT"


def die() -> None:
    """SIGKILL this process, and its group when it leads one (started with start_new_session)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _resolve(module: str, qualname: str) -> tuple[object, str]:
    owner: object = importlib.import_module(module)
    *path, attr = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    getattr(owner, attr)  # fails loudly on a misspelt point
    return owner, attr


def install(spec: str) -> None:
    kind, rest = spec.split(":", 1)
    if kind in ("call", "return"):
        module, qualname, n = rest.rsplit(":", 2)
        owner, attr = _resolve(module, qualname)
        inner = getattr(owner, attr)
        if isinstance(owner, type) and isinstance(owner.__dict__.get(attr), (staticmethod, classmethod)):
            raise ValueError(f"{spec}: static and class methods are not supported")
        target, calls = int(n), [0]

        @functools.wraps(inner)
        def wrapper(*args, **kwargs):
            calls[0] += 1
            if kind == "call" and calls[0] == target:
                die()
            out = inner(*args, **kwargs)
            if kind == "return" and calls[0] == target:
                die()
            return out

        setattr(owner, attr, wrapper)
    elif kind == "torn":
        pattern, n = rest.rsplit(":", 1)
        target, calls, real_replace = int(n), [0], os.replace

        def replace(src, dst, *args, **kwargs):
            if fnmatch.fnmatch(os.path.basename(os.fspath(dst)), pattern):
                calls[0] += 1
                if calls[0] == target:
                    size = os.path.getsize(src)
                    os.truncate(src, size // 2)
                    die()
            return real_replace(src, dst, *args, **kwargs)

        os.replace = replace  # pathlib.Path.replace and rename-based writers go through it
    else:
        raise ValueError(f"unknown kill point {spec!r}: call:, return: or torn:")


def main(argv: list[str]) -> None:
    spec = os.environ.get(ENV)
    if spec:
        install(spec)
    if argv[:1] == ["-m"]:
        module, args = argv[1], argv[2:]
        sys.argv = [module, *args]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
