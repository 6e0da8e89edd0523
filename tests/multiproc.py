"""Running a command as several CPU processes under torchrun, for the data-parallel tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], *, nproc: int = 2, timeout: float = 600) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node NPROC ARGS` on CPU (gloo), one thread a process, on a free
    loopback port; ARGS is a script and its arguments or `-m MODULE ...`. Output captured."""
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
           "127.0.0.1", "--master_port", str(free_port()), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
