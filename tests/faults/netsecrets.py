"""The secrets scenario of the fault campaign (issue 13), shared by tests/faults/test_faults_secrets.py
and benchmarks/faults/secrets.py.

Every networked command runs with ``OPENAI_API_KEY`` set to a marker (and, where a URL carries
``user:password@``, a marker password), HOME / XDG_CACHE_HOME / the working folder inside the
work folder; then every file under the work folder, every command's stdout and stderr, and the
servers' logs are searched for the markers in the forms a leak takes: as written, percent-encoded,
and the base64 Basic credential built from ``user:password`` (a server may echo it back).
"""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

from fakeserver import FakeOpenAIServer
from netfaults import cli_env, read_jsonl, run_cli

KEY = "sk-vsmarker-KEY-4f1c9e27b3"
WRONG = "sk-vsmarker-WRONG-88d0a1"
PASSWORD = "pw-vsmarker-PASS-61e2"
USER = "alice"


def needles() -> dict[str, bytes]:
    out = {}
    for name, s in (("key", KEY), ("wrong key", WRONG), ("password", PASSWORD)):
        out[name] = s.encode()
        out[f"{name} percent-encoded"] = quote(s, safe="").encode()
    out["basic credential"] = base64.b64encode(f"{USER}:{PASSWORD}".encode())
    out["key base64"] = base64.b64encode(KEY.encode()).rstrip(b"=")
    return out


def scan(root: Path, texts: dict[str, str]) -> list[str]:
    """'where: which secret' for every file under root and every text that holds a marker."""
    found = []
    ns = needles()
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path.relative_to(root)}: {n}" for n, b in ns.items() if b in data]
    for where, text in texts.items():
        data = text.encode("utf-8", "surrogateescape")
        found += [f"{where}: {n}" for n, b in ns.items() if b in data]
    return found


def _with_password(url: str) -> str:
    return url.replace("http://", f"http://{USER}:{PASSWORD}@", 1)


def _serve(work: Path, env: dict) -> tuple[subprocess.Popen, str]:
    # the reference policy: the server's own code paths without loading torch (the model is not what is tested)
    proc = subprocess.Popen([sys.executable, "-m", "videosafety", "serve", "--api-key-env", "OPENAI_API_KEY",
                             "--port", "0", "--model", "ref:refuse-all", "--model-name", "demo", "--device", "cpu"],
                            env=env, cwd=work,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.search(r"at (http://\S+/v1)", line)
    if m is None:
        proc.kill()
        raise RuntimeError(f"serve did not start: {line!r} {proc.stderr.read()[-2000:]}")
    url = m.group(1)
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url[:-3] + "/health", timeout=2):
                return proc, url
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("serve did not answer /health")
            time.sleep(0.2)


def _raw(url: str, body: bytes, headers: dict) -> tuple[int, str]:
    req = urllib.request.Request(url + "/chat/completions", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def secrets_campaign(manifest: Path, work: Path, *, limit: int = 4, full: bool = True) -> dict:
    """Runs the networked commands; returns {"commands", "leaks", "files", "checks"} where checks
    are facts that show the error paths really ran (errors recorded, 401s answered). ``full=False``
    (the fast case) leaves out the judges' 401, the dead server's connection errors and the eval
    through ``videosafety serve`` (one good raw request with the key instead)."""
    work.mkdir(parents=True, exist_ok=True)
    home = work / "home"
    home.mkdir(exist_ok=True)
    env = cli_env(OPENAI_API_KEY=KEY, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    texts: dict[str, str] = {}
    checks: dict[str, object] = {}
    n = 0

    def cli(name: str, args: list[str]):
        nonlocal n
        n += 1
        t0 = time.monotonic()
        proc = run_cli(args, env=env, cwd=work, timeout=600)
        checks[f"{name} seconds"] = round(time.monotonic() - t0, 1)
        texts[f"{name} stdout"], texts[f"{name} stderr"] = proc.stdout, proc.stderr
        return proc

    bench = ["--bench", str(manifest), "--limit", str(limit), "--conditions", "text", "--timeout", "5"]
    # 1. eval, llm and rj judges against a server that takes the key; 30 % faults (its 500s echo
    #    the Authorization header they got).
    with FakeOpenAIServer(seed=3, rate=0.3, api_key=KEY, cycle=True,
                          faults=("500", "empty_choices", "null_content", "refusal", "malformed_json")) as srv:
        run = work / "run-ok"
        p = cli("eval ok", ["eval", *bench, "--model", f"openai:fake-model@{srv.url}", "--out", str(run),
                            "--max-error-rate", "1"])
        checks["eval ok rc"] = p.returncode
        rows = read_jsonl(run / "responses.jsonl")
        checks["eval ok responses"] = sum(r["response"] is not None for r in rows)
        p = cli("judge ok", ["judge", str(run), "--judge", f"llm:openai:fake-model@{srv.url}",
                             "--judge", f"rj:openai:fake-model@{srv.url}"])
        checks["judge ok rc"] = p.returncode
        checks["500 echoes served"] = sum(e["fault"] == "500" for e in srv.log)
        texts["fake server ok log"] = json.dumps(srv.access_log) + json.dumps(srv.log)
    # 2. the same commands against a server that wants another key, through a URL with
    #    user:password@ (httpx sends it as Basic auth; the server's 401 echoes it).
    with FakeOpenAIServer(rate=0.0, api_key="another-key") as srv:
        url = _with_password(srv.url)
        run = work / "run-401"
        p = cli("eval 401", ["eval", *bench, "--model", f"openai:fake-model@{url}", "--out", str(run)])
        checks["eval 401 rc"] = p.returncode
        rows = read_jsonl(run / "responses.jsonl")
        checks["eval 401 errors"] = sum("401" in (r["error"] or "") for r in rows)
        if full:
            p = cli("judge 401", ["judge", str(work / "run-ok"), "--judge", f"llm:openai:fake-model@{url}",
                                  "--judge", f"rj:openai:fake-model@{url}"])
            checks["judge 401 not reached"] = p.stdout.count("0/") + p.stdout.count("not reached")
        texts["fake server 401 log"] = json.dumps(srv.access_log) + json.dumps(srv.log)
    # 3. nobody listening, credentials in the URL: connection errors.
    if full:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))  # bound, never listening
            dead = f"http://{USER}:{PASSWORD}@127.0.0.1:{sock.getsockname()[1]}/v1"
            p = cli("eval dead", ["eval", *bench, "--model", f"openai:fake-model@{dead}", "--out",
                                  str(work / "run-dead"), "--no-judge"])
        checks["eval dead rc"] = p.returncode
    # 4. videosafety serve with the key from the environment: an eval through it, then raw
    #    requests with a wrong key, no key and a bad body.
    proc, url = _serve(work, env)
    n += 1
    try:
        body = json.dumps({"model": "demo", "messages": [{"role": "user", "content": "hi"}],
                           "max_tokens": 4}).encode()
        if full:
            p = cli("eval serve", ["eval", *bench, "--limit", "2", "--model", f"openai:demo@{url}", "--out",
                                   str(work / "run-serve"), "--no-judge", "--max-error-rate", "0"])
            checks["eval serve rc"] = p.returncode
        else:
            checks["eval serve rc"] = 0 if _raw(url, body, {"Authorization": f"Bearer {KEY}"})[0] == 200 else 1
        statuses = [_raw(url, body, {"Authorization": f"Bearer {WRONG}", "Content-Type": "application/json"}),
                    _raw(url, body, {}),
                    _raw(url, b'{"model": "demo", "messages": [', {"Authorization": f"Bearer {KEY}"})]
        checks["serve statuses"] = [s for s, _ in statuses]
        texts.update({f"serve answer {i}": t for i, (_, t) in enumerate(statuses)})
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    texts["serve stdout"], texts["serve stderr"] = out, err
    checks["serve log lines"] = len(err.splitlines())
    files = sum(1 for x in work.rglob("*") if x.is_file())
    return {"commands": n, "leaks": scan(work, texts), "files": files, "checks": checks}
