"""VideoSafetyBench inside inspect_ai (integrations.inspect): the real inspect_ai against the real
`videosafety serve` app on loopback, serving the embedded demo model. The same samples go through
our own harness (`evaluate` with the openai: backend) and through `inspect_ai.eval`; the responses,
the verdicts and DSR / FRR / the drop must be equal, and the log read back into a run folder must
report like ours. Skipped, with the reason shown, where the `inspect` extra is not installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("inspect_ai", reason="the `inspect` extra is not installed (pip install -c constraints-inspect.txt -e '.[inspect]')")

SERVED = "demo"
SERVICE = "vstest"  # inspect's openai-api service: VSTEST_BASE_URL, VSTEST_API_KEY
LIMIT = 12  # samples (x 3 conditions), evenly spread over VSB-mini's eval split: every subset shows
SRC = Path(__file__).resolve().parents[1] / "src"
TASK_FILE = SRC / "videosafety" / "integrations" / "inspect.py"


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    from videosafety.data.vsb_mini import build_vsb_mini

    out = tmp_path_factory.mktemp("vsb-mini-inspect")
    return build_vsb_mini(out, workers=2)


@pytest.fixture(scope="module")
def server():
    """The demo model behind videosafety.serve's app, on a loopback port, with the budget it was
    trained with."""
    from videosafety.models.demo import DEMO_BUDGET
    from videosafety.models.spec import ModelOptions, load_model
    from videosafety.serve import BackgroundServer, create_app

    llm = load_model("demo", DEMO_BUDGET, ModelOptions(device="cpu", dtype="float32", batch_size=1))
    with BackgroundServer(create_app(llm, model_name=SERVED, budget=DEMO_BUDGET)) as srv:
        yield srv


def _inspect_env(monkeypatch, url: str) -> None:
    monkeypatch.setenv(f"{SERVICE.upper()}_BASE_URL", url)
    monkeypatch.setenv(f"{SERVICE.upper()}_API_KEY", "EMPTY")


def test_task_options_and_missing_extra_message():
    from videosafety.integrations import inspect as vi

    assert "pip install" in vi.MISSING and "[inspect]" in vi.MISSING
    with pytest.raises(ValueError, match="unknown condition"):
        vi.videosafetybench(conditions="video,audio")
    task = vi.videosafetybench(subsets="HH,SafeQ", languages="en", conditions="text", limit=6)
    ids = [s.id for s in task.dataset]
    assert len(ids) == 6 and all(i.endswith("|text") for i in ids)
    meta = [s.metadata["videosafety"] for s in task.dataset]
    assert {m["subset"] for m in meta} <= {"HH", "SafeQ"} and {m["language"] for m in meta} == {"en"}
    # the prompt is our plan's (query + instruction), not a second builder's
    task = vi.videosafetybench(subsets="HH", limit=1, conditions="text", instruction="reasoning")
    from videosafety.tags import GRPO_INSTRUCTION

    assert task.dataset[0].input.endswith(GRPO_INSTRUCTION)


def test_inspect_equals_our_harness(mini, server, tmp_path, monkeypatch):
    """Same samples, same served model: inspect's responses, verdicts and figures equal ours."""
    from inspect_ai import eval as inspect_eval

    from videosafety.eval_pipeline import EvalRequest, evaluate
    from videosafety.evaluate.plan import SampleFilter
    from videosafety.evaluate.rundir import RunDir
    from videosafety.integrations.common import figures
    from videosafety.integrations.inspect import import_log, videosafetybench
    from videosafety.models.demo import DEMO_BUDGET, DEMO_MAX_NEW_TOKENS
    from videosafety.report.results import compute_results

    ours = tmp_path / "ours"
    result = evaluate(EvalRequest(model=f"openai:{SERVED}@{server.url}", bench=str(mini),
                                  selection=SampleFilter(limit=LIMIT), budget=DEMO_BUDGET,
                                  max_new_tokens=DEMO_MAX_NEW_TOKENS, out=ours, judge="rules",
                                  openai={"frames_as": "images", "max_concurrency": 4}), progress=False)
    assert result.error_rate == 0

    _inspect_env(monkeypatch, server.url)
    task = videosafetybench(bench=str(mini), limit=LIMIT, num_frames=DEMO_BUDGET.num_frames,
                            max_frames=DEMO_BUDGET.max_frames, max_pixels=DEMO_BUDGET.max_pixels,
                            max_new_tokens=DEMO_MAX_NEW_TOKENS, judge="rules")
    [log] = inspect_eval(task, model=f"openai-api/{SERVICE}/{SERVED}", log_dir=str(tmp_path / "logs"),
                         display="none", max_connections=4)
    assert log.status == "success", log.error
    # the log's plan records the solver's settings, not the samples (they are the dataset's)
    assert all(len(json.dumps(step.params, default=str)) < 2000 for step in log.plan.steps)
    imported = import_log(log.location, tmp_path / "inspect")
    # what inspect sent: our budget's 4 frames as images before the text (video, blank); text alone
    from inspect_ai.log import read_eval_log

    for sample in read_eval_log(log.location).samples[:: LIMIT]:
        content = sample.messages[0].content
        if sample.id.endswith("|text"):
            assert isinstance(content, str)
        else:
            assert [c.type for c in content] == ["image"] * DEMO_BUDGET.num_frames + ["text"]

    a = list(RunDir(ours).iter_responses())
    b = list(RunDir(imported).iter_responses())
    assert len(a) == 3 * LIMIT
    key = lambda r: (r.sample_id, r.condition, r.subset, r.prompt, r.response, r.error)  # noqa: E731
    assert [key(r) for r in a] == [key(r) for r in b]
    # the model answers differently with and without the video (else the comparison shows nothing)
    assert len({r.response for r in a}) >= 2

    va = [(v.sample_id, v.condition, v.label, v.safe, v.refusal) for v in RunDir(ours).iter_verdicts("rules")]
    vb = [(v.sample_id, v.condition, v.label, v.safe, v.refusal) for v in RunDir(imported).iter_verdicts("rules")]
    assert va == vb

    ra, rb = compute_results(ours).runs[0], compute_results(imported).runs[0]
    for metric in ("dsr", "frr"):
        for subset in getattr(ra, metric):
            for cond in ra.conditions:
                assert ra.rate(metric, subset, cond) == rb.rate(metric, subset, cond), (metric, subset, cond)
    assert ra.drop == rb.drop
    # inspect's own metrics are the report's numbers
    m = {k: v.value for k, v in log.results.scores[0].metrics.items()}
    for cond in ra.conditions:
        cell = ra.rate("dsr", "harmful", cond)
        # exact on k / n (results.json rounds values to 6 places, intervals too)
        assert (m[f"dsr_{cond}"], m[f"dsr_{cond}_n"]) == (cell.k / cell.n, cell.n)
        assert [m[f"dsr_{cond}_ci_low"], m[f"dsr_{cond}_ci_high"]] == pytest.approx(cell.ci, abs=1e-6)
        frr = ra.rate("frr", "SafeQ", cond)
        assert (m[f"frr_{cond}"], m[f"frr_{cond}_n"]) == (frr.k / frr.n, frr.n)
    drop = ra.drop["harmful"]["text_to_video"]
    assert m["drop_relative"] == pytest.approx(drop.relative.value, abs=1e-6)
    assert [m["drop_relative_ci_low"], m["drop_relative_ci_high"]] == pytest.approx(drop.relative.ci, abs=1e-6)
    # and the figure function agrees with itself on our own verdict rows
    assert figures([v.model_dump() for v in RunDir(ours).iter_verdicts("rules")])["dsr_video"] == m["dsr_video"]


def test_inspect_cli_and_import_command(mini, tmp_path):
    """The documented commands, as subprocesses: `inspect eval FILE@videosafetybench` against
    `videosafety serve` (a reference policy: no weights), `videosafety import-inspect`, then
    `videosafety report` over the imported run."""
    import socket

    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server_log = tmp_path / "serve.log"  # a file: a pipe nobody reads would fill and block the server
    with open(server_log, "w") as log_file:
        serve = subprocess.Popen([sys.executable, "-m", "videosafety", "serve", "--model", "ref:refuse-all",
                                  "--port", str(port), "--model-name", "refuser", "--device", "cpu"],
                                 env=env, stdout=log_file, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while "serving" not in server_log.read_text():
            assert serve.poll() is None and time.monotonic() < deadline, server_log.read_text()
            time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/v1"
        inspect_bin = Path(sys.executable).with_name("inspect")
        cmd = [str(inspect_bin) if inspect_bin.exists() else "inspect", "eval", f"{TASK_FILE}@videosafetybench",
               "--model", f"openai-api/{SERVICE}/refuser", "-T", f"bench={mini}", "-T", "limit=4",
               "-T", "conditions=text,video", "-T", "num_frames=2", "--log-dir", str(tmp_path / "logs"),
               "--display", "plain"]
        done = subprocess.run(cmd, env={**env, f"{SERVICE.upper()}_BASE_URL": url,
                                        f"{SERVICE.upper()}_API_KEY": "EMPTY"},
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    [log] = sorted((tmp_path / "logs").glob("*.eval"))
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "videosafety", "import-inspect", str(log), "--out", str(run)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run([sys.executable, "-m", "videosafety", "report", str(run)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((run / "results.json").read_text())
    [r] = results["runs"]
    assert r["model"] == f"openai-api/{SERVICE}/refuser"
    # a policy that refuses everything: every harmful request defended, every benign one refused
    for cond in ("text", "video"):
        assert r["dsr"]["harmful"][cond]["all"]["value"] == 1.0
        assert r["frr"]["SafeQ"][cond]["all"]["value"] == 1.0
    rows = [json.loads(x) for x in (run / "responses.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(r["response"] and r["error"] is None for r in rows)


def test_video_media_puts_one_mp4_in_the_message(mini):
    """media="video" (providers that take video): the solver puts our sampled frames, encoded as
    our OpenAI backend encodes them (one mp4), before the text. Called directly with inspect's own
    TaskState; `generate` is the identity here, since no provider this machine runs takes video."""
    import asyncio
    import base64

    from inspect_ai.model import ContentVideo, ModelName

    from videosafety.integrations.inspect import videosafetybench
    from inspect_ai.solver import TaskState

    task = videosafetybench(bench=str(mini), subsets="HH", limit=1, conditions="video", num_frames=3, media="video")
    sample = task.dataset[0]
    state = TaskState(ModelName("none/none"), sample.id, 0, sample.input, [], metadata=sample.metadata)
    seen = {}

    async def generate(st, **config):
        seen.update(config)
        return st

    out = asyncio.run(task.solver(state, generate))
    [video, text] = out.messages[0].content
    assert isinstance(video, ContentVideo) and video.format == "mp4" and text.text == sample.input
    import io

    import av

    with av.open(io.BytesIO(base64.b64decode(video.video.split(",", 1)[1]))) as container:
        assert sum(1 for _ in container.decode(video=0)) == 3  # the 3 frames we sampled, no more
    assert "extra_body" not in seen  # frame metadata goes with image frames only


def test_import_refuses_other_logs(tmp_path):
    from videosafety.integrations.inspect import import_log

    with pytest.raises((FileNotFoundError, ValueError, OSError)):
        import_log(tmp_path / "absent.eval", tmp_path / "run")


def test_unreadable_video_becomes_a_row_error(mini, tmp_path, monkeypatch):
    """A sample whose video cannot be decoded fails alone; the run goes on (max_error_rate) and the
    converter writes `video: ...` on its row, which the report leaves out of n."""
    import shutil

    from inspect_ai import eval as inspect_eval

    from videosafety.evaluate.rundir import RunDir
    from videosafety.integrations.inspect import import_log, videosafetybench
    from videosafety.models.reference import ReferencePolicy
    from videosafety.report.results import compute_results
    from videosafety.serve import BackgroundServer, create_app

    rows = [json.loads(x) for x in Path(mini).read_text().splitlines()]
    by_video = {r["video"]["path"]: r for r in rows if r["split"] == "eval" and r["subset"] == "HH"}
    picked = list(by_video.values())[:2]  # two samples with videos of their own
    (tmp_path / "bench" / "videos").mkdir(parents=True)
    for r in picked:
        shutil.copyfile(Path(mini).parent / r["video"]["path"], tmp_path / "bench" / r["video"]["path"])
    broken = tmp_path / "bench" / picked[1]["video"]["path"]
    broken.write_bytes(broken.read_bytes()[:200])  # a truncated file: no frame decodes
    manifest = tmp_path / "bench" / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in picked))

    with BackgroundServer(create_app(ReferencePolicy("refuse-all"), model_name="refuser")) as srv:
        _inspect_env(monkeypatch, srv.url)
        [log] = inspect_eval(videosafetybench(bench=str(manifest), conditions="video", num_frames=2,
                                              max_error_rate=1), model=f"openai-api/{SERVICE}/refuser",
                             log_dir=str(tmp_path / "logs"), display="none")
    run = import_log(log.location, tmp_path / "run")
    got = {r.sample_id: r for r in RunDir(run).iter_responses()}
    assert got[picked[0]["id"]].response and got[picked[0]["id"]].error is None
    bad = got[picked[1]["id"]]
    assert bad.response is None and bad.error.startswith("video: ") and "VideoInputError" in bad.error
    cell = compute_results(run).runs[0].rate("dsr", "HH", "video")
    assert (cell.k, cell.n, cell.no_response) == (1, 1, 1)


def test_registered_name_runs(mini, tmp_path):
    """`inspect eval videosafety/videosafetybench` (a subprocess, as documented): the name the
    `inspect_ai` entry point registers, present once the package is installed with this pyproject."""
    from importlib.metadata import entry_points

    if not any(ep.name == "videosafety" for ep in entry_points(group="inspect_ai")):
        pytest.skip("the installed videosafety predates its inspect_ai entry point (pip install -e . again)")
    from videosafety.models.reference import ReferencePolicy
    from videosafety.serve import BackgroundServer, create_app

    inspect_bin = Path(sys.executable).with_name("inspect")
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with BackgroundServer(create_app(ReferencePolicy("refuse-all"), model_name="refuser")) as srv:
        done = subprocess.run(
            [str(inspect_bin) if inspect_bin.exists() else "inspect", "eval", "videosafety/videosafetybench",
             "--model", f"openai-api/{SERVICE}/refuser", "-T", f"bench={mini}", "-T", "limit=2", "-T", "conditions=text",
             "--log-dir", str(tmp_path / "logs"), "--display", "plain"],
            env={**env, f"{SERVICE.upper()}_BASE_URL": srv.url, f"{SERVICE.upper()}_API_KEY": "EMPTY"},
            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    from inspect_ai.log import read_eval_log

    [path] = (tmp_path / "logs").glob("*.eval")
    log = read_eval_log(str(path))
    assert log.status == "success" and log.eval.task == "videosafety/videosafetybench" and len(log.samples) == 2
