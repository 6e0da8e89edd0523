"""A faulty OpenAI-compatible chat-completions server on loopback (fault campaign, issue 13).

One copy, shared by the fast cases (tests/faults/test_faults_*.py) and the long campaign
(benchmarks/faults/*.py, which put this folder on sys.path).

A real threaded HTTP server (``http.server.ThreadingHTTPServer`` on 127.0.0.1, a free port).
Each ``POST /v1/chat/completions`` is keyed by a digest of its JSON body (so a row's request has
the same key in every run: the client's encoding is deterministic) and numbered per key
(attempt 0, 1, ...). A seeded schedule decides, from (seed, key, attempt) alone, whether that
attempt gets a fault and which one; otherwise it gets a deterministic answer:

* a rubric judge's request (its system prompt names the "safety evaluator"): a rubric JSON
  object whose ``reason`` carries ``ref <key>``;
* a request with ``logprobs``: one digit token with ``top_logprobs`` over "1".."5";
* anything else (a model under evaluation): a refusal or a compliance, by the key's parity,
  ending with ``[ref <key>]``.

Every request is logged (``log``: key, kind, attempt, fault, answer), so a test can tell from
the server side alone what each row should have ended as: the answer of its last attempt, or
its last fault. ``api_key``: when set, requests without ``Authorization: Bearer <api_key>`` get a
401 whose message echoes the header it got (a careless server: the client must not pass it on).
"""

from __future__ import annotations

import hashlib
import json
import math
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("429_retry_after", "429", "500", "503", "read_timeout", "dropped", "malformed_json",
          "empty_choices", "null_content", "refusal")
# Faults a client may retry (transport and status); the others are well-formed 200 answers that
# carry no text: they must end as a recorded error, never as a response or a verdict.
RETRYABLE = frozenset({"429_retry_after", "429", "500", "503", "read_timeout", "dropped"})

REFUSAL = "I'm sorry, but I can't help with that."
COMPLIANCE = "Sure, here is how you do it. Step 1: gather what you need."


def body_key(body: bytes) -> str:
    try:
        canon = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canon = body
    return hashlib.sha256(canon).hexdigest()[:16]


def _unit(*parts) -> float:
    h = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


class FaultSchedule:
    """(key, attempt) -> a fault name or None. Whether an attempt gets a fault depends on (seed,
    key, attempt) alone; which fault too, unless ``cycle``: then the n-th fault served is
    ``faults[n % len(faults)]`` (every kind shows up once ten faults were served, whatever the
    keys; the order of concurrent requests decides which row gets which)."""

    def __init__(self, seed: int = 0, rate: float = 0.3, faults=FAULTS, cycle: bool = False) -> None:
        self.seed, self.rate, self.faults, self.cycle = int(seed), float(rate), tuple(faults), cycle
        self.served = 0

    def __call__(self, key: str, attempt: int) -> str | None:  # called under the server's lock
        if not self.faults or _unit(self.seed, key, attempt, "rate") >= self.rate:
            return None
        if self.cycle:
            self.served += 1
            return self.faults[(self.served - 1) % len(self.faults)]
        return self.faults[int(_unit(self.seed, key, attempt, "kind") * len(self.faults))]


def request_kind(body: dict) -> str:
    if body.get("logprobs"):
        return "rj"
    for m in body.get("messages") or []:
        if isinstance(m, dict) and m.get("role") == "system" and "safety evaluator" in str(m.get("content")):
            return "rubric"
    return "model"


def rubric_answer(key: str) -> dict:
    h = int(key, 16)
    refusal = bool(h % 2)
    return {"safe": refusal or bool((h >> 1) % 2), "refusal": refusal, "helpfulness": 1 + (h >> 2) % 5,
            "reason": f"ref {key}"}


def rj_logprobs(key: str) -> dict[str, float]:
    """{digit: logprob} over "1".."5" (unnormalised weights from the key)."""
    h = int(key, 16)
    w = [1 + (h >> (4 * i)) % 16 for i in range(5)]
    s = sum(w)
    return {str(d + 1): math.log(w[d] / s) for d in range(5)}


def rj_expected_score(key: str) -> float:
    p = {int(k): math.exp(v) for k, v in rj_logprobs(key).items()}
    return sum(k * v for k, v in p.items()) / sum(p.values())


def model_answer(key: str) -> str:
    return f"{REFUSAL if int(key, 16) % 2 else COMPLIANCE} [ref {key}]"


class FakeOpenAIServer:
    """``with FakeOpenAIServer(seed=0) as srv: ... srv.url`` (see the module docstring).

    ``stall``: seconds a ``read_timeout`` fault waits before answering (set it above the client's
    timeout). ``retry_after``: the Retry-After of ``429_retry_after`` faults, in seconds."""

    def __init__(self, *, seed: int = 0, rate: float = 0.3, faults=FAULTS, cycle: bool = False, stall: float = 3.0,
                 retry_after: float = 1, api_key: str | None = None, model: str = "fake-model") -> None:
        self.schedule = FaultSchedule(seed, rate, faults, cycle)
        self.stall, self.retry_after, self.api_key, self.model = float(stall), retry_after, api_key, model
        self.log: list[dict] = []
        self.attempts: dict[str, int] = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # the server's log: kept, not printed
                with srv.lock:
                    srv.access_log.append(fmt % args)

            def _send(self, status: int, payload, headers: dict | None = None) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if srv.api_key is None:
                    return True
                got = self.headers.get("Authorization", "")
                if got == f"Bearer {srv.api_key}":
                    return True
                self._send(401, {"error": {"message": f"invalid key; got {got!r}", "type": "authentication_error",
                                           "code": "invalid_api_key"}})
                return False

            def do_GET(self):
                if not self._authorized():
                    return
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [
                        {"id": srv.model, "object": "model", "created": 0, "owned_by": "fake", "root": "fake/root"}]})
                else:
                    self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self._authorized():
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._send(400, {"error": {"message": "invalid JSON", "type": "invalid_request_error"}})
                    return
                key = body_key(raw)
                kind = request_kind(body)
                with srv.lock:
                    attempt = srv.attempts.get(key, 0)
                    srv.attempts[key] = attempt + 1
                    fault = srv.schedule(key, attempt)
                    entry = {"key": key, "kind": kind, "attempt": attempt, "fault": fault, "answer": None,
                             "t": time.monotonic()}
                    srv.log.append(entry)
                self._answer(body, key, kind, fault, entry)

            def _answer(self, body, key, kind, fault, entry):
                err = {"type": "server_error", "code": None, "param": None}
                if fault == "429_retry_after":
                    self._send(429, {"error": {**err, "message": "rate limited"}},
                               {"Retry-After": f"{srv.retry_after:g}"})
                elif fault == "429":
                    self._send(429, {"error": {**err, "message": "rate limited"}})
                elif fault == "500":  # a careless server that echoes the credentials it got
                    echo = self.headers.get("Authorization")
                    self._send(500, {"error": {**err, "message": f"fault 500; got {echo!r}"}})
                elif fault == "503":
                    self._send(503, {"error": {**err, "message": "fault 503"}})
                elif fault == "read_timeout":
                    srv._stop.wait(srv.stall)
                    try:
                        self._send(503, {"error": {**err, "message": "too late"}})
                    except OSError:
                        pass
                elif fault == "dropped":
                    # close with a reset: no status line, no body
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                elif fault == "malformed_json":
                    self._send(200, b'{"id": "x", "object": "chat.completion", "choices": [{"index": 0, "mess')
                elif fault == "empty_choices":
                    self._send(200, _completion(srv.model, []))
                elif fault == "null_content":
                    self._send(200, _completion(srv.model, [_choice(None)]))
                elif fault == "refusal":
                    self._send(200, _completion(srv.model, [_choice(None, refusal="I refuse to answer this.")]))
                else:
                    if kind == "rubric":
                        answer = json.dumps(rubric_answer(key))
                        choice = _choice(answer)
                    elif kind == "rj":
                        lp = rj_logprobs(key)
                        top = max(lp, key=lp.get)
                        answer = top
                        choice = _choice(top, logprobs={"content": [{
                            "token": top, "logprob": lp[top], "bytes": None,
                            "top_logprobs": [{"token": d, "logprob": v, "bytes": None} for d, v in lp.items()]}]})
                    else:
                        answer = model_answer(key)
                        choice = _choice(answer)
                    entry["answer"] = answer
                    self._send(200, _completion(srv.model, [choice]))

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.access_log: list[str] = []
        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.host, self.port = "127.0.0.1", self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name=f"fake-openai-{self.port}", daemon=True)
        self.thread.start()

    # ---------------------------------------------------------------- what happened

    def final(self, kind: str | None = None) -> dict[str, dict]:
        """key -> the log entry of its last attempt (its outcome), for requests of ``kind``."""
        out: dict[str, dict] = {}
        with self.lock:
            for e in self.log:
                if kind is None or e["kind"] == kind:
                    out[e["key"]] = e
        return out

    def entries(self, kind: str | None = None, since: int = 0) -> list[dict]:
        with self.lock:
            return [e for e in self.log[since:] if kind is None or e["kind"] == kind]

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def __enter__(self) -> "FakeOpenAIServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _choice(content, *, refusal=None, logprobs=None) -> dict:
    return {"index": 0, "message": {"role": "assistant", "content": content, "refusal": refusal},
            "logprobs": logprobs, "finish_reason": "stop"}


def _completion(model: str, choices: list) -> dict:
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model, "choices": choices,
            "usage": {"prompt_tokens": 0, "completion_tokens": 1, "total_tokens": 1}}


# What a recorded error must say for each fault that ended a row (a substring, case-insensitive).
ERROR_TEXT = {
    "429_retry_after": "429", "429": "429", "500": "500", "503": "503", "read_timeout": "timed out",
    "dropped": "connection", "malformed_json": "malformed", "empty_choices": "malformed",
    "null_content": "no text content", "refusal": "refusal",
}
