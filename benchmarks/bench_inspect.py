"""One inspect_ai run and one run of our harness on the same served model and samples.

The demo model is served by `videosafety serve` (a subprocess on a loopback port, its trained
frame budget); the same VSB-mini samples (evenly spread, 3 conditions) go through
`videosafety eval --model openai:demo@URL --frames-as images` (our harness: generate, judge with
rules, report) and through `inspect_ai.eval(videosafetybench(...))` (the same prompts, frames and
request fields; the rules judge as scorer), then `import_log` and our report. Prints whether the
responses, verdicts and DSR / FRR / drop are equal, and each side's wall time. The order of the
two runs alternates over `--pairs`; a warm-up request is made first, so neither pays the server's
first call. Needs the `inspect` extra.

    python benchmarks/bench_inspect.py [--samples 40] [--pairs 2] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVICE = "vsbench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()

    from inspect_ai import eval as inspect_eval

    from videosafety.data.vsb_mini import default_vsb_mini
    from videosafety.eval_pipeline import EvalRequest, evaluate
    from videosafety.evaluate.plan import SampleFilter
    from videosafety.evaluate.rundir import RunDir
    from videosafety.integrations.inspect import import_log, videosafetybench
    from videosafety.models.demo import DEMO_BUDGET, DEMO_MAX_NEW_TOKENS
    from videosafety.models.openai_api import OpenAIVideoLLM
    from videosafety.models.base import GenerationSettings, ModelInput
    from videosafety.report.results import compute_results

    manifest = default_vsb_mini()
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    # the server's log goes to a file: a pipe nobody reads would fill and block the server
    server_log = Path(tempfile.mkdtemp(prefix="bench-inspect-serve-")) / "serve.log"
    with open(server_log, "w") as log_file:
        server = subprocess.Popen([sys.executable, "-m", "videosafety", "serve", "--model", "demo", "--port",
                                   str(port), "--model-name", "demo", "--max-pixels", str(DEMO_BUDGET.max_pixels),
                                   "--device", "cpu"], stdout=log_file, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while "serving" not in server_log.read_text():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"videosafety serve did not start: {server_log.read_text()[-2000:]}")
            time.sleep(0.2)
        OpenAIVideoLLM("demo", url).generate([ModelInput(query="warm-up")], GenerationSettings(max_new_tokens=4))
        os.environ[f"{SERVICE.upper()}_BASE_URL"] = url
        os.environ[f"{SERVICE.upper()}_API_KEY"] = "EMPTY"
        tmp = Path(tempfile.mkdtemp(prefix="bench-inspect-"))
        times: dict[str, list[float]] = {"ours": [], "inspect": []}
        checks = []
        for pair in range(args.pairs):
            order = ("ours", "inspect") if pair % 2 == 0 else ("inspect", "ours")
            runs = {}
            for side in order:
                out = tmp / f"{side}-{pair}"
                t0 = time.perf_counter()
                if side == "ours":
                    evaluate(EvalRequest(model=f"openai:demo@{url}", bench=str(manifest),
                                         selection=SampleFilter(limit=args.samples), budget=DEMO_BUDGET,
                                         max_new_tokens=DEMO_MAX_NEW_TOKENS, out=out, judge="rules",
                                         openai={"frames_as": "images", "max_concurrency": args.concurrency}),
                             progress=False)
                else:
                    task = videosafetybench(bench=str(manifest), limit=args.samples, num_frames=DEMO_BUDGET.num_frames,
                                            max_frames=DEMO_BUDGET.max_frames, max_pixels=DEMO_BUDGET.max_pixels,
                                            max_new_tokens=DEMO_MAX_NEW_TOKENS, judge="rules")
                    [log] = inspect_eval(task, model=f"openai-api/{SERVICE}/demo", log_dir=str(tmp / f"logs-{pair}"),
                                         display="none", max_connections=args.concurrency)
                    assert log.status == "success", log.error
                    import_log(log.location, out)
                    from videosafety.report import write_report

                    write_report([out], out, judge="rules")
                times[side].append(time.perf_counter() - t0)
                runs[side] = out
            a, b = (list(RunDir(runs[s]).iter_responses()) for s in ("ours", "inspect"))
            va, vb = (list(RunDir(runs[s]).iter_verdicts("rules")) for s in ("ours", "inspect"))
            ra, rb = (compute_results(runs[s]).runs[0] for s in ("ours", "inspect"))
            same_rates = all(ra.rate(m, s, c) == rb.rate(m, s, c) for m in ("dsr", "frr")
                             for s in getattr(ra, m) for c in ra.conditions)
            checks.append({
                "rows": len(a),
                "same_responses": sum((x.sample_id, x.condition, x.response) == (y.sample_id, y.condition, y.response)
                                      for x, y in zip(a, b)),
                "same_verdicts": sum((x.label, x.safe, x.refusal) == (y.label, y.safe, y.refusal) for x, y in zip(va, vb)),
                "same_dsr_frr": same_rates, "same_drop": ra.drop == rb.drop,
                "dsr": {c: ra.rate("dsr", "harmful", c).value for c in ra.conditions},
                "frr": {c: ra.rate("frr", "SafeQ", c).value for c in ra.conditions},
                "drop_relative_HH": ra.text_to_video("HH").relative.value if ra.text_to_video("HH") else None,
            })
        print(json.dumps({"samples": args.samples, "pairs": args.pairs, "concurrency": args.concurrency,
                          "checks": checks, "seconds": times,
                          "median_seconds": {k: statistics.median(v) for k, v in times.items()}}, indent=1))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
