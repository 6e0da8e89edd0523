"""A benchmark too large for one node: several OpenAI-compatible servers behind one
`--model openai:MODEL@URL1,URL2`, data-parallel evaluation processes, one merged run folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from videosafety.budget import FrameBudget
from videosafety.cli import app
from videosafety.models.base import FailedResponse, GenerationSettings, ModelInput
from videosafety.models.openai_api import OpenAIVideoLLM
from videosafety.models.spec import load_model
from multiproc import free_port, torchrun

runner = CliRunner()
GREEDY = GenerationSettings(max_new_tokens=8)


class Counting:
    """A served model that answers with its own name and the query, and counts requests."""

    def __init__(self, name: str, revision: str = "same"):
        self.name, self.revision, self.seen = name, revision, 0

    def generate(self, inputs, settings):
        self.seen += len(inputs)
        return [f"{self.name}:{inp.query}" for inp in inputs]


@pytest.fixture
def servers():
    from videosafety.serve import BackgroundServer, create_app

    started = []

    def start(model):
        srv = BackgroundServer(create_app(model, model_name="m"))
        srv.model = model
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


def test_replicas_take_requests_in_turn_and_cover_a_dead_one(servers):
    a, b = servers(Counting("a")), servers(Counting("b"))
    llm = OpenAIVideoLLM("m", [a.url, b.url], max_retries=0)
    assert llm.name == f"openai:m@{a.url},{b.url}" and llm.revision == "m@same"
    out = llm.generate([ModelInput(f"q{i}") for i in range(3)], GREEDY)
    out += llm.generate([ModelInput(f"q{i}") for i in range(3, 6)], GREEDY)
    assert out == ["a:q0", "b:q1", "a:q2", "b:q3", "a:q4", "b:q5"]  # in turn, across calls
    assert (a.model.seen, b.model.seen) == (3, 3)

    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    llm = OpenAIVideoLLM("m", [dead, a.url], max_retries=1, backoff=0.0)
    out = llm.generate([ModelInput(f"r{i}") for i in range(4)], GREEDY)
    assert out == [f"a:r{i}" for i in range(4)]  # each row that met the dead server was retried on the live one
    alone = OpenAIVideoLLM("m", [dead, a.url], max_retries=0, backoff=0.0)
    got = alone.generate([ModelInput("s0"), ModelInput("s1")], GREEDY)
    assert isinstance(got[0], FailedResponse) and got[1] == "a:s1"


def test_replicas_of_different_models_are_refused(servers):
    a, b = servers(Counting("a", "rev-1")), servers(Counting("b", "rev-2"))
    with pytest.raises(ValueError, match="different models"):
        OpenAIVideoLLM("m", [a.url, b.url])
    with pytest.raises(ValueError, match="twice"):
        OpenAIVideoLLM("m", [a.url, a.url + "/"])


def test_spec_lists_replicas(servers):
    a, b = servers(Counting("a")), servers(Counting("b"))
    llm = load_model(f"openai:m@{a.url},{b.url}", FrameBudget())
    assert llm.base_urls == (a.url, b.url)
    one = load_model(f"openai:m@{a.url}", FrameBudget())
    assert one.base_urls == (a.url,) and one.name == f"openai:m@{a.url}"


# ---------------------------------------------------------------- two processes, two servers

@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    from videosafety.data.vsb_mini import build_vsb_mini

    return build_vsb_mini(tmp_path_factory.mktemp("vsb-mini-replicas"), workers=2)


def _serve(model_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "videosafety", "serve", "--model", f"hf:{model_dir}", "--model-name", "tiny",
           "--port", str(port), "--device", "cpu", "--max-pixels", "3136"]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    return proc, f"http://127.0.0.1:{port}/v1"


def _wait(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/models", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"server at {url} did not start: {log.read_text()[-2000:]}")


def _served(log: Path) -> int:
    return len(re.findall(r'"POST /v1/chat/completions HTTP/1.1" 200', log.read_text()))


def _rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "responses.jsonl").read_text().splitlines()]


def test_two_processes_two_servers_one_run_folder(mini, tmp_path, tiny_model_dirs):
    logs = [tmp_path / "server-a.log", tmp_path / "server-b.log"]
    started = [_serve(tiny_model_dirs["qwen2_vl"], log) for log in logs]
    try:
        for (proc, url), log in zip(started, logs):
            _wait(url, proc, log)
        spec = f"openai:tiny@{started[0][1]},{started[1][1]}"
        common = ["eval", "--bench", str(mini), "--model", spec, "--limit", "12", "--conditions", "video,text",
                  "--num-frames", "4", "--max-pixels", "3136", "--max-new-tokens", "6", "--batch-size", "4"]
        one = tmp_path / "one"
        r = runner.invoke(app, [*common, "--out", str(one)])
        assert r.exit_code == 0, r.output
        first = [_served(log) for log in logs]
        assert min(first) > 0 and sum(first) == len(_rows(one))

        two = tmp_path / "two"
        p = torchrun(["-m", "videosafety", *common, "--out", str(two)])
        assert p.returncode == 0, p.stderr[-3000:]
        assert json.loads((two / "run.json").read_text())["processes"] == 2
        a, b = _rows(one), _rows(two)
        assert [(x["sample_id"], x["condition"], x["response"], x["error"]) for x in b] == \
               [(x["sample_id"], x["condition"], x["response"], x["error"]) for x in a]
        assert all(x["error"] is None and x["model"] == f"openai:tiny@{started[0][1]},{started[1][1]}" for x in b)
        added = [_served(log) - n for log, n in zip(logs, first)]
        assert min(added) > 0 and sum(added) == len(b)  # both processes used both servers, one request a row
        assert (two / "results.json").is_file()
    finally:
        for proc, _ in started:
            proc.terminate()
        for proc, _ in started:
            proc.wait(timeout=30)
