"""Hostile input to ``videosafety serve`` (fault campaign, issue 13): the real app (FastAPI +
uvicorn on a loopback port) around a stand-in model that records what reaches it. Shared by
tests/faults/test_faults_serve.py and benchmarks/faults/serve.py."""

from __future__ import annotations

import base64
import http.client
import io
import json
import threading
import time
import tracemalloc
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

KEY = "sk-serve-campaign-key-3c9d"
SERVED = "stand-in"
MAX_BODY = 1 * 2**20
MAX_FRAMES = 8
AUTH = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


class StandIn:
    """A VideoLLM that echoes the query after ``delay`` seconds and records what reached it."""

    name, revision = SERVED, "stand-in-rev"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay, self.seen, self.lock = delay, [], threading.Lock()
        self.inside = self.max_inside = 0

    def generate(self, inputs, settings):
        with self.lock:
            self.inside += 1
            self.max_inside = max(self.max_inside, self.inside)
            self.seen.extend((x.query, None if x.frames is None else len(x.frames)) for x in inputs)  # not the frames
        try:
            time.sleep(self.delay)
            return [f"echo:{inputs[0].query}"]
        finally:
            with self.lock:
                self.inside -= 1


class Hits:
    """A listening HTTP server on loopback that counts the requests it gets (a 'remote URL')."""

    def __init__(self) -> None:
        hits = self
        self.count = 0

        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                hits.count += 1
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v.mp4"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def serve_app(*, max_pending: int = 64, delay: float = 0.0, max_decoding: int = 2, body_timeout: float = 60.0):
    from videosafety.budget import FrameBudget
    from videosafety.serve import BackgroundServer, create_app

    model = StandIn(delay)
    app = create_app(model, api_key=KEY, model_name=SERVED, budget=FrameBudget.uniform(4, max_pixels=3136),
                     max_request_bytes=MAX_BODY, max_frames=MAX_FRAMES, max_new_tokens_limit=64,
                     max_pending=max_pending, max_decoding=max_decoding, body_timeout=body_timeout)
    hits = Hits()
    try:
        with BackgroundServer(app) as srv:
            yield srv, model, hits
    finally:
        hits.stop()


def chat(content, **extra) -> bytes:
    return json.dumps({"model": SERVED, "messages": [{"role": "user", "content": content}], **extra}).encode()


def post(srv, body: bytes | None, headers: dict | None, *, timeout: float = 60):
    """(status, parsed JSON or text) of one POST /v1/chat/completions; body None: a good request."""
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=timeout)
    try:
        conn.request("POST", "/v1/chat/completions", body=chat("hi") if body is None else body,
                     headers=AUTH if headers is None else headers)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(data)
    except ValueError:
        return resp.status, data.decode(errors="replace")


def png(arr: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def hostile_cases(tmp: Path, remote: str) -> dict:
    """name -> (body, headers, expected status, expected error code)."""
    real_file = tmp / "real.mp4"
    from videosafety.models.openai_api import encode_mp4

    real_file.write_bytes(encode_mp4(np.zeros((2, 16, 16, 3), np.uint8), 1.0))
    tiny = png(np.zeros((16, 16, 3), np.uint8))

    def video(url):
        return chat([{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": "q"}])

    def image(url):
        return chat([{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "q"}])

    b64 = base64.b64encode(b"this is not media at all" * 20).decode()
    cases = {
        "no key": (chat("hi"), {"Content-Type": "application/json"}, 401, "invalid_api_key"),
        "wrong key": (chat("hi"), {**AUTH, "Authorization": "Bearer sk-wrong"}, 401, "invalid_api_key"),
        "key without Bearer": (chat("hi"), {**AUTH, "Authorization": KEY}, 401, "invalid_api_key"),
        "body over the limit": (chat("x" * (MAX_BODY + 10)), AUTH, 413, "request_too_large"),
        "too many frames": (chat([{"type": "image_url", "image_url": {"url": tiny}}] * (MAX_FRAMES + 1)
                                 + [{"type": "text", "text": "q"}]), AUTH, 400, "too_many_frames"),
        "base64 not a video": (video("data:video/mp4;base64," + b64), AUTH, 400, "invalid_video"),
        "base64 not an image": (image("data:image/png;base64," + b64), AUTH, 400, "invalid_image"),
        "not base64": (video("data:video/mp4;base64,%%%not base64%%%"), AUTH, 400, "invalid_base64"),
        "data URL of text": (video("data:text/plain;base64," + b64), AUTH, 400, "invalid_url"),
        "file URL video": (video(real_file.as_uri()), AUTH, 400, "unsupported_url"),
        "file URL image": (image("file:///etc/hostname"), AUTH, 400, "unsupported_url"),
        "absolute path": (video(str(real_file)), AUTH, 400, "unsupported_url"),
        "relative path": (video("real.mp4"), AUTH, 400, "unsupported_url"),
        "remote video URL": (video(remote), AUTH, 400, "unsupported_url"),
        "remote image URL": (image(remote.replace("v.mp4", "i.png")), AUTH, 400, "unsupported_url"),
        "remote URL as plain string": (chat([{"type": "video_url", "video_url": remote}]), AUTH, 400,
                                       "unsupported_url"),
        "malformed JSON": (b'{"model": "stand-in", "messages": [{"role": ', AUTH, 400, "invalid_json"),
        "JSON not an object": (b'"hi"', AUTH, 400, "invalid_json"),
        "deeply nested JSON": (b"[" * 100_000 + b"]" * 100_000, AUTH, 400, "invalid_json"),
    }
    return cases


def concurrent_flood(srv, model, *, n: int = 200, wrong_every: int = 5, timeout: float = 120) -> dict:
    """n requests at once (every ``wrong_every``-th with a wrong key), each on its own connection."""
    def one(i: int):
        headers = {**AUTH, "Authorization": "Bearer sk-wrong"} if i % wrong_every == 0 else AUTH
        try:
            return post(srv, chat(f"q{i}"), headers, timeout=timeout)[0]
        except (OSError, http.client.HTTPException) as e:
            return f"unanswered: {type(e).__name__}"

    t0 = time.monotonic()
    with ThreadPoolExecutor(n) as ex:
        got = list(ex.map(one, range(n)))
    seconds = time.monotonic() - t0
    statuses = Counter(g for g in got if isinstance(g, int))
    return {"statuses": dict(statuses), "unanswered": sum(isinstance(g, str) for g in got),
            "seconds": round(seconds, 2), "max_in_model": model.max_inside}


def decoded_peak(*, n: int = 12, frames: int = 8, size: int = 1024, max_decoding: int = 2,
                 delay: float = 0.3) -> dict:
    """Peak of traced memory (numpy's frames included) while n image requests are in flight
    against a model that takes ``delay`` s each; bodies are built before tracing starts."""
    black = png(np.zeros((size, size, 3), np.uint8))
    body = chat([{"type": "image_url", "image_url": {"url": black}}] * frames + [{"type": "text", "text": "q"}])
    with serve_app(delay=delay, max_decoding=max_decoding) as (srv, model, _):
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            with ThreadPoolExecutor(n) as ex:
                got = list(ex.map(lambda i: post(srv, body, AUTH, timeout=300)[0], range(n)))
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
    return {"answered": len(got), "statuses": dict(Counter(got)), "peak_bytes": peak,
            "max_in_model": model.max_inside}


def slow_body(srv, *, declared: int = 1000, sent: int = 10, wait: float = 15.0) -> str:
    """Headers and the first ``sent`` of ``declared`` body bytes, then nothing: the status line the
    server answers within ``wait`` seconds, or "no answer"."""
    import socket

    with socket.create_connection((srv.host, srv.port), timeout=wait) as sock:
        sock.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n").encode()
                     + b"{" * sent)
        try:
            data = sock.recv(4096)
        except (TimeoutError, socket.timeout):
            return "no answer"
    return data.split(b"\r\n", 1)[0].decode(errors="replace") or "closed"
