"""OpenAIVideoLLM against the real videosafety server (uvicorn on a loopback port, tiny Qwen2-VL),
and against small misbehaving servers: retries, failures, timeouts, limits, secrets."""

import asyncio
import base64
import http.client
import io
import json
import logging
import os
import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from videosafety.budget import FrameBudget
from videosafety.models.base import FailedResponse, GenerationSettings, ModelInput
from videosafety.models.openai_api import OpenAIVideoLLM, encode_mp4

KEY_ENV = "VIDEOSAFETY_TEST_SERVE_KEY"
SECRET = "sk-test-8c1f0e-DO-NOT-LEAK-4b2a"
SERVED = "tiny-qwen2-vl"
MAX_BODY = 2 * 2**20
MAX_FRAMES = 8
GREEDY = GenerationSettings(max_new_tokens=8)


# --------------------------------------------------------------------------------------------
# helpers


def smooth_frames(t: int = 4, h: int = 56, w: int = 56, seed: int = 0) -> np.ndarray:
    """Frames that survive lossy H.264 closely: smooth gradients plus a moving square."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        base = rng.uniform(40, 200, size=3)
        img = base[None, None, :] + 30 * np.sin((xx[..., None] + 7 * i) / 9.0) + 20 * np.cos(yy[..., None] / 11.0)
        img[8 + 4 * i:20 + 4 * i, 10:22] = 250 - 40 * i
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def video_input(query="What happens in this video?", system=None, fps=1.0, t=4) -> ModelInput:
    return ModelInput(query=query, frames=smooth_frames(t), timestamps=(np.arange(t) + 0.5) / fps,
                      video_fps=fps, system=system)


class Recorder:
    """A VideoLLM that records what the server hands it, then delegates (to the HF model)."""

    def __init__(self, inner):
        self.inner, self.name, self.revision = inner, inner.name, inner.revision
        self.processor = getattr(inner, "processor", None)
        self.seen: list[ModelInput] = []

    def generate(self, inputs, settings):
        self.seen.extend(inputs)
        return self.inner.generate(inputs, settings)


class FakeLLM:
    """A VideoLLM whose behaviour is chosen by the query (no real model)."""

    name, revision = "fake", "fake-rev"

    def generate(self, inputs, settings):
        q = inputs[0].query
        if q == "sleep":
            time.sleep(1.0)
        if q == "boom":
            raise RuntimeError("internal detail /secret/path")
        if q == "failed":
            return [FailedResponse("internal detail")]
        return [f"echo:{q}"]


def raw(srv, method, path, body=b"", headers=None, chunks=None):
    """(status, parsed JSON or text) of one plain HTTP request to a BackgroundServer."""
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=20)
    try:
        if chunks is not None:
            conn.request(method, path, body=iter(chunks), headers=headers or {}, encode_chunked=True)
        else:
            conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(data)
    except ValueError:
        return resp.status, data.decode(errors="replace")


def chat_body(content, model=SERVED, **extra) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": content}], **extra}).encode()


def png_url(arr: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


AUTH = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}


def assert_error_shape(status, body, expected_status, code=None):
    assert status == expected_status, body
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str)
    assert "pydantic" not in json.dumps(body) and "errors.pydantic.dev" not in json.dumps(body)
    if code is not None:
        assert err["code"] == code, err


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def key_env():
    mp = pytest.MonkeyPatch()
    mp.setenv(KEY_ENV, SECRET)
    yield KEY_ENV
    mp.undo()


@pytest.fixture(scope="module")
def hf(_tiny_llm_cache):
    return _tiny_llm_cache("qwen2_vl")


@pytest.fixture(scope="module")
def server(hf, key_env):
    from videosafety.serve import BackgroundServer, create_app

    rec = Recorder(hf)
    app = create_app(rec, api_key=SECRET, model_name=SERVED, budget=FrameBudget.uniform(4, max_pixels=3136),
                     max_request_bytes=MAX_BODY, max_frames=MAX_FRAMES, max_new_tokens_limit=64)
    with BackgroundServer(app) as srv:
        srv.recorder = rec
        yield srv


@pytest.fixture(scope="module")
def fake_server(key_env):
    """videosafety's app around FakeLLM (no auth): server behaviour without a real model."""
    from videosafety.serve import BackgroundServer, create_app

    with BackgroundServer(create_app(FakeLLM(), model_name="fake", max_pending=2)) as srv:
        yield srv


@pytest.fixture(scope="module")
def flaky_server():
    """A misbehaving OpenAI-compatible server. Paths: /flaky (503 twice, then fine), /mixed (500
    when the query says 'fail', echoing the Authorization header), /slow (sleeps 3 s),
    /bad (400). attempts[path] counts requests."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from videosafety.serve import BackgroundServer

    attempts: dict[str, int] = {}
    lock = threading.Lock()
    app = FastAPI()

    def ok(text):
        return {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 1, "total_tokens": 1}}

    def query_of(body):
        content = body["messages"][-1]["content"]
        return content if isinstance(content, str) else content[-1]["text"]

    @app.post("/{kind}/v1/chat/completions")
    async def chat(kind: str, request: Request):
        body = await request.json()
        q = query_of(body)
        with lock:
            attempts[f"{kind}:{q}"] = attempts.get(f"{kind}:{q}", 0) + 1
            n = attempts[f"{kind}:{q}"]
        if kind == "flaky" and n <= 2:
            return JSONResponse({"error": {"message": "overloaded", "type": "server_error"}}, status_code=503)
        if kind == "mixed" and "fail" in q:
            # A careless server that echoes the credentials it got: the client must not pass them on.
            return JSONResponse({"error": {"message": f"broken; got {request.headers.get('authorization')}",
                                           "type": "server_error"}}, status_code=500)
        if kind == "slow":
            await asyncio.sleep(3.0)
        if kind == "bad":
            return JSONResponse({"error": {"message": "bad request", "type": "invalid_request_error"}},
                                status_code=400)
        return ok(f"ok:{q}")

    @app.get("/{kind}/v1/models")
    async def models(kind: str):
        return {"object": "list", "data": [{"id": "m", "object": "model", "created": int(time.time()),
                                            "owned_by": "vllm", "root": "org/some-model"}]}

    with BackgroundServer(app) as srv:
        srv.attempts = attempts
        yield srv


# --------------------------------------------------------------------------------------------
# round trip through the real server


def test_round_trip_matches_direct_hf(server, hf):
    """The served model answers what the HF model answers directly, for the same frames."""
    rec = server.recorder
    url = server.url

    def client(**kw):
        return OpenAIVideoLLM(SERVED, url, api_key_env=KEY_ENV, **kw)

    vid = video_input(system="You are careful.")
    text = ModelInput(query="Is it safe to mix bleach and ammonia?", system="Be brief.")

    # images as PNG: lossless, and fps + timestamps travel as fields -> the exact same input.
    rec.seen.clear()
    got = client(frames_as="images", image_format="png").generate([vid, text], GREEDY)
    assert got == [hf.generate([vid], GREEDY)[0], hf.generate([text], GREEDY)[0]]
    seen = {s.query: s for s in rec.seen}
    s = seen[vid.query]
    assert np.array_equal(s.frames, vid.frames) and s.video_fps == 1.0 and s.system == vid.system
    np.testing.assert_allclose(s.timestamps, vid.timestamps)
    assert seen[text.query].frames is None and seen[text.query].system == "Be brief."

    # video_url, lossless mp4: the frames arrive bit-exact; the mp4's clock restarts at 0.
    rec.seen.clear()
    got = client(frames_as="video_url", video_lossless=True).generate([vid], GREEDY)
    s = rec.seen[-1]
    assert np.array_equal(s.frames, vid.frames) and s.video_fps == pytest.approx(1.0)
    np.testing.assert_allclose(s.timestamps, np.arange(4.0))
    assert got == hf.generate([replace(vid, timestamps=np.arange(4.0))], GREEDY)

    # The lossy paths (default mp4, JPEG): answers are strings; the frames arrive close, in order.
    for kw in ({"frames_as": "video_url"}, {"frames_as": "images", "image_format": "jpeg"}):
        rec.seen.clear()
        got = client(**kw).generate([vid], GREEDY)
        assert isinstance(got[0], str), (kw, got)
        s = rec.seen[-1]
        assert s.frames.shape == vid.frames.shape
        err = np.abs(s.frames.astype(int) - vid.frames.astype(int)).mean(axis=(1, 2, 3))
        assert err.max() < 6, (kw, err)

    # Sampling settings travel too (temperature, top_p, seed).
    sampled = GenerationSettings(max_new_tokens=8, do_sample=True, temperature=0.7, top_p=0.9, seed=3)
    assert client().generate([text], sampled) == hf.generate([text], sampled)


def test_models_revision_and_odd_frames(server, hf):
    llm = OpenAIVideoLLM(SERVED, server.url, api_key_env=KEY_ENV)
    assert llm.revision == f"{SERVED}@{hf.revision}"
    assert llm.name == f"openai:{SERVED}@{server.url}"
    assert OpenAIVideoLLM("nope", server.url, api_key_env=KEY_ENV).revision == "unknown"
    # Odd frame sizes are padded for yuv420p; fps from timestamps when video_fps is absent.
    odd = ModelInput(query="odd", frames=smooth_frames(3, 27, 41), timestamps=np.array([0.25, 0.75, 1.25]))
    server.recorder.seen.clear()
    (out,) = llm.generate([odd], GREEDY)
    assert isinstance(out, str)
    assert server.recorder.seen[-1].frames.shape == (3, 28, 42, 3)
    assert server.recorder.seen[-1].video_fps == pytest.approx(2.0)
    data = encode_mp4(odd.frames, 2.0)
    assert data == encode_mp4(odd.frames, 2.0)  # deterministic bytes


def test_api_key_enforced(server, monkeypatch):
    body = chat_body("hi")
    for headers in ({}, {"Authorization": "Bearer wrong-key"}, {"Authorization": SECRET}):
        status, resp = raw(server, "POST", "/v1/chat/completions", body, headers)
        assert_error_shape(status, resp, 401, "invalid_api_key")
        assert SECRET not in json.dumps(resp)
    status, resp = raw(server, "GET", "/v1/models")
    assert_error_shape(status, resp, 401)
    status, resp = raw(server, "GET", "/v1/models", headers=AUTH)
    assert status == 200 and resp["data"][0]["id"] == SERVED and resp["data"][0]["owned_by"] == "videosafety"
    assert raw(server, "GET", "/health") == (200, {"status": "ok"})

    monkeypatch.delenv(KEY_ENV)
    # No key in the environment: "EMPTY" is sent; a clear 401, not retried, even mid-upload of
    # a sizeable body (the server reads the rest before answering, so the client is not reset).
    big = ModelInput("hi", frames=np.random.default_rng(1).integers(0, 256, (4, 300, 300, 3), dtype=np.uint8),
                     video_fps=1.0)
    llm = OpenAIVideoLLM(SERVED, server.url, api_key_env=KEY_ENV, frames_as="images", image_format="png")
    for out in llm.generate([ModelInput("hi"), big], GREEDY):
        assert isinstance(out, FailedResponse) and "401" in out.error and "attempts" not in out.error


def test_oversized_body_413(server):
    filler = "x" * (MAX_BODY + 1000)
    # By Content-Length.
    status, resp = raw(server, "POST", "/v1/chat/completions", chat_body(filler), AUTH)
    assert_error_shape(status, resp, 413, "request_too_large")
    # By the bytes actually received (chunked: no Content-Length).
    body = chat_body(filler)
    chunks = [body[i:i + 256 * 1024] for i in range(0, len(body), 256 * 1024)]
    status, resp = raw(server, "POST", "/v1/chat/completions", headers=AUTH, chunks=chunks)
    assert_error_shape(status, resp, 413, "request_too_large")
    # Through the client: a clear 413, not retried.
    big = ModelInput(query="big", frames=np.random.default_rng(0).integers(0, 256, (8, 320, 320, 3), dtype=np.uint8),
                     video_fps=1.0)
    llm = OpenAIVideoLLM(SERVED, server.url, api_key_env=KEY_ENV, frames_as="images", image_format="png")
    (out,) = llm.generate([big], GREEDY)
    assert isinstance(out, FailedResponse) and "413" in out.error and "attempts" not in out.error


def _bad_requests():
    tiny = png_url(np.zeros((28, 28, 3), np.uint8))
    garbage_video = "data:video/mp4;base64," + base64.b64encode(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 200).decode()
    return {
        "remote_url": (chat_body([{"type": "video_url", "video_url": {"url": "https://example.com/v.mp4"}},
                                  {"type": "text", "text": "q"}]), "unsupported_url"),
        "file_path": (chat_body([{"type": "image_url", "image_url": {"url": "/etc/passwd"}}]), "unsupported_url"),
        "file_url": (chat_body([{"type": "video_url", "video_url": {"url": "file:///etc/passwd"}}]), "unsupported_url"),
        "bad_base64": (chat_body([{"type": "video_url", "video_url": {"url": "data:video/mp4;base64,@@not base64@@"}}]),
                       "invalid_base64"),
        "garbage_video": (chat_body([{"type": "video_url", "video_url": {"url": garbage_video}}]), "invalid_video"),
        "garbage_image": (chat_body([{"type": "image_url", "image_url": {"url": "data:image/png;base64,"
                                      + base64.b64encode(b"not an image").decode()}}]), "invalid_image"),
        "too_many_frames": (chat_body([{"type": "image_url", "image_url": {"url": tiny}}] * (MAX_FRAMES + 1)),
                            "too_many_frames"),
        "stream": (chat_body("hi", stream=True), "stream_unsupported"),
        "stream_str": (chat_body("hi", stream="true"), "stream_unsupported"),
        "unknown_model": (chat_body("hi", model="gpt-4o"), "model_not_found"),
        "max_tokens": (chat_body("hi", max_tokens=65), "max_tokens_too_large"),
        "max_tokens_type": (chat_body("hi", max_tokens="many"), "invalid_request"),
        "malformed_json": (b'{"model": "tiny', "invalid_json"),
        "not_object": (b"[1, 2]", "invalid_json"),
        "no_messages": (json.dumps({"model": SERVED}).encode(), "invalid_request"),
        "two_turns": (json.dumps({"model": SERVED, "messages": [
            {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"}]}).encode(), "invalid_messages"),
        "split_images": (chat_body([{"type": "image_url", "image_url": {"url": tiny}}, {"type": "text", "text": "x"},
                                    {"type": "image_url", "image_url": {"url": tiny}}]), "invalid_messages"),
        "n2": (chat_body("hi", n=2), "unsupported_parameter"),
    }


@pytest.mark.parametrize("case", list(_bad_requests()))
def test_bad_requests_400(server, case):
    body, code = _bad_requests()[case]
    status, resp = raw(server, "POST", "/v1/chat/completions", body, AUTH)
    assert_error_shape(status, resp, 400, code)


def test_server_failures_and_responsiveness(fake_server):
    status, resp = raw(fake_server, "POST", "/v1/chat/completions", chat_body("boom", model="fake"))
    assert_error_shape(status, resp, 500, "internal_error")
    assert "secret" not in json.dumps(resp) and "RuntimeError" not in json.dumps(resp)
    status, resp = raw(fake_server, "POST", "/v1/chat/completions", chat_body("failed", model="fake"))
    assert_error_shape(status, resp, 500, "internal_error")
    assert "detail" not in json.dumps(resp)
    status, resp = raw(fake_server, "GET", "/nowhere")
    assert_error_shape(status, resp, 404)

    # While a generation runs in its worker thread, the event loop still answers; past
    # max_pending (2) waiting requests, a 503 that clients retry.
    slow_results = []
    slow = [threading.Thread(target=lambda: slow_results.append(raw(
        fake_server, "POST", "/v1/chat/completions", chat_body("sleep", model="fake")))) for _ in range(2)]
    for th in slow:
        th.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    assert raw(fake_server, "GET", "/health")[0] == 200
    assert time.monotonic() - t0 < 0.5
    status, resp = raw(fake_server, "POST", "/v1/chat/completions", chat_body("hi", model="fake"))
    assert_error_shape(status, resp, 503, "server_busy")
    for th in slow:
        th.join()
    assert [r[0] for r in slow_results] == [200, 200]

    status, resp = raw(fake_server, "POST", "/v1/chat/completions", chat_body("hi", model="fake", max_tokens=4))
    assert status == 200 and resp["object"] == "chat.completion"
    assert resp["choices"][0]["message"] == {"role": "assistant", "content": "echo:hi"}
    assert resp["model"] == "fake" and set(resp["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}

    # generate() called from code that already runs an event loop.
    llm = OpenAIVideoLLM("fake", fake_server.url, api_key_env="VIDEOSAFETY_TEST_UNSET_KEY")

    async def inside_loop():
        return llm.generate([ModelInput("x")], GREEDY)

    assert asyncio.run(inside_loop()) == ["echo:x"]
    # ... and from a worker thread that has no loop.
    got = []
    th = threading.Thread(target=lambda: got.append(llm.generate([ModelInput("y")], GREEDY)))
    th.start()
    th.join()
    assert got == [["echo:y"]]


# --------------------------------------------------------------------------------------------
# retries, failures, timeouts


def test_retries_then_success(flaky_server, key_env):
    llm = OpenAIVideoLLM("m", f"{flaky_server.url[:-3]}/flaky/v1", api_key_env=key_env, backoff=0.01)
    assert llm.generate([ModelInput("q1")], GREEDY) == ["ok:q1"]
    assert flaky_server.attempts["flaky:q1"] == 3
    assert llm.revision == "m@root=org/some-model"  # 'created' (per-listing in vLLM) left out


def test_failures_are_per_row(flaky_server, key_env):
    base = flaky_server.url[:-3]
    llm = OpenAIVideoLLM("m", f"{base}/mixed/v1", api_key_env=key_env, max_retries=2, backoff=0.01,
                         max_concurrency=2)
    rows = [ModelInput("a"), ModelInput("fail-1"), ModelInput("b", frames=smooth_frames(2), video_fps=1.0),
            ModelInput("fail-2")]
    out = llm.generate(rows, GREEDY)
    assert out[0] == "ok:a" and out[2] == "ok:b"
    for i in (1, 3):
        assert isinstance(out[i], FailedResponse) and "500" in out[i].error and "3 attempts" in out[i].error
        assert SECRET not in out[i].error and "***" in out[i].error
    assert flaky_server.attempts["mixed:fail-1"] == 3 and flaky_server.attempts["mixed:a"] == 1

    bad = OpenAIVideoLLM("m", f"{base}/bad/v1", api_key_env=key_env, backoff=0.01)
    (out,) = bad.generate([ModelInput("c")], GREEDY)
    assert isinstance(out, FailedResponse) and "400" in out.error
    assert flaky_server.attempts["bad:c"] == 1  # other 4xx: not retried


def test_timeout_bounded(flaky_server, key_env):
    llm = OpenAIVideoLLM("m", f"{flaky_server.url[:-3]}/slow/v1", api_key_env=key_env, timeout=0.4,
                         max_retries=1, backoff=0.05)
    t0 = time.monotonic()
    (out,) = llm.generate([ModelInput("z")], GREEDY)
    elapsed = time.monotonic() - t0
    assert isinstance(out, FailedResponse) and "timed out" in out.error
    assert flaky_server.attempts["slow:z"] == 2
    assert elapsed <= llm.max_request_seconds  # the documented bound
    assert elapsed <= 0.4 * 2 + 0.05 + 1.0, elapsed  # no Retry-After: two timeouts and one backoff, plus slack

    # Nobody listening: connection errors, retried, then a FailedResponse.
    from videosafety.serve import bind_socket

    sock = bind_socket()  # bound, never listening
    dead = OpenAIVideoLLM("m", f"http://127.0.0.1:{sock.getsockname()[1]}/v1", api_key_env=key_env,
                          timeout=1.0, max_retries=2, backoff=0.01)
    try:
        (out,) = dead.generate([ModelInput("q")], GREEDY)
    finally:
        sock.close()
    assert isinstance(out, FailedResponse) and "connection" in out.error.lower()
    assert dead.revision == "unknown"


def test_secrets_never_leak(server, flaky_server, key_env, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx2", "httpcore2", "uvicorn", "uvicorn.error", "uvicorn.access", "videosafety"):
        caplog.set_level(logging.DEBUG, logger=name)
    errors = []
    good = OpenAIVideoLLM(SERVED, server.url, api_key_env=key_env, frames_as="images")
    assert all(isinstance(r, str) for r in good.generate([ModelInput("hi"), video_input()], GREEDY))
    echo = OpenAIVideoLLM("m", f"{flaky_server.url[:-3]}/mixed/v1", api_key_env=key_env, max_retries=1,
                          backoff=0.01)
    errors += [r.error for r in echo.generate([ModelInput("fail-secret")], GREEDY)]
    # A wrong key is a secret too: the server's 401 and logs must not show it.
    wrong = "sk-wrong-7f7f-ALSO-SECRET"
    os.environ["VIDEOSAFETY_TEST_WRONG_KEY"] = wrong
    try:
        bad = OpenAIVideoLLM(SERVED, server.url, api_key_env="VIDEOSAFETY_TEST_WRONG_KEY")
        errors += [r.error for r in bad.generate([ModelInput("hi")], GREEDY)]
        texts = [repr(good), str(good), good.name, repr(vars(good)), good.revision, *errors, caplog.text,
                 repr(bad), repr(vars(bad))]
    finally:
        del os.environ["VIDEOSAFETY_TEST_WRONG_KEY"]
    # Credentials in a base URL never show in the name or repr either.
    cred = OpenAIVideoLLM("m", "http://user:pw-SECRET-9@127.0.0.1:9/v1", revision="r")
    assert "pw-SECRET-9" not in cred.name + repr(cred)
    assert caplog.records, "expected some log records"
    for t in texts:
        assert SECRET not in t and wrong not in t


def test_serve_refuses_missing_key_env(monkeypatch):
    from videosafety.serve import serve

    monkeypatch.delenv("VIDEOSAFETY_TEST_NO_SUCH_KEY", raising=False)
    with pytest.raises(ValueError, match="VIDEOSAFETY_TEST_NO_SUCH_KEY"):
        serve(FakeLLM(), api_key_env="VIDEOSAFETY_TEST_NO_SUCH_KEY")
