"""An OpenAI-compatible chat-completions server for any ``VideoLLM`` (FastAPI + uvicorn).

Endpoints: ``POST /v1/chat/completions`` (non-streaming), ``GET /v1/models``, ``GET /health``.

A request holds an optional system message and exactly one user message (single turn: the
``VideoLLM`` interface has no history). The user content is a string, or parts:

* ``text``: joined with newlines into the query;
* one ``video_url`` with a ``data:video/...;base64,...`` URL: decoded to a temporary file and
  sampled with the server's frame budget (``videosafety.video``). A video holding no more frames
  than the budget would sample is used whole: its frames were sampled already (typically by the
  client, ``OpenAIVideoLLM``), and sampling it again at its own rate would shift frames by the
  nearest-frame rule's tie-breaking;
* or consecutive ``image_url`` parts with ``data:image/...;base64,...`` URLs: the frames of one
  video, in order (Pillow decodes them; all must have the same size). Their sampling rate is the
  request's ``video_fps`` field, else ``mm_processor_kwargs.fps``, else the budget's fps (1 fps
  for a uniform budget); ``video_timestamps`` (seconds, one per frame) may give their times.

Remote ``http(s)`` URLs and file paths are refused (400): the server fetches nothing.

Settings: ``max_completion_tokens`` / ``max_tokens`` (default 256, at most
``max_new_tokens_limit``); ``temperature`` absent or 0 means greedy (the house default, unlike
OpenAI's 1.0); above 0 samples with ``temperature``, ``top_p`` and ``seed`` (default 0).
``stream``, ``n`` > 1, ``stop``, ``logprobs``, ``tools`` and non-text ``response_format`` are
refused with 400 rather than silently ignored; other unknown fields are ignored.

Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``: 401 missing or
wrong key, 413 body over ``max_request_bytes`` (by Content-Length and by the bytes actually
received), 400 for anything wrong with the request, 503 while ``max_pending`` requests are in
progress, 408 when the body has not arrived ``body_timeout`` seconds after the request began (a
client trickling its body would otherwise hold a pending slot for ever), 500 (generic message;
details in the server log) when the model fails. Generation runs in a
worker thread, one request at a time behind a lock, so the event loop keeps answering.

Memory is bounded: at most ``max_pending`` request bodies (each at most ``max_request_bytes``)
are held, and at most ``max_decoding`` requests (default 2: one generating, the next one
decoding) hold decoded frames (each at most ``MAX_DECODED_BYTES``); the others wait with their
body only, so a flood of small bodies that decode to large frames cannot exhaust memory.

The ``VideoLLM`` interface reports neither token counts nor why generation stopped, so ``usage``
counts are 0 and ``finish_reason`` is ``"stop"`` (re-tokenizing the text was tried: it miscounts).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at runtime,
# and Request is imported inside create_app.

import asyncio
import base64
import binascii
import hashlib
import hmac
import io
import json
import logging
import math
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .budget import FrameBudget
from .models.base import FailedResponse, GenerationSettings, ModelInput, VideoLLM
from .models.openai_api import OWNER  # owned_by in /v1/models: OpenAIVideoLLM recognises this server by it

log = logging.getLogger(__name__)

MiB = 2**20
DEFAULT_MAX_TOKENS = GenerationSettings().max_new_tokens
MAX_IMAGE_PIXELS = 4096 * 4096  # one decoded frame
MAX_DECODED_BYTES = 2 * 2**30  # all decoded frames of one request (uint8 RGB)
_WS = re.compile(rb"\s+")


# --------------------------------------------------------------------------------------------
# errors


class APIError(Exception):
    """An error answered to the client in OpenAI's shape."""

    def __init__(self, status: int, message: str, code: str, *, type_: str = "invalid_request_error",
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.type, self.param = status, message, code, type_, param
        self.headers = headers or {}


def _error_json(status: int, message: str, code: str | None, type_: str, param: str | None = None,
                headers: dict[str, str] | None = None):
    from fastapi.responses import JSONResponse

    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _bad(message: str, code: str = "invalid_request", param: str | None = None) -> APIError:
    return APIError(400, message, code, param=param)


# --------------------------------------------------------------------------------------------
# request parsing (pure, runs in a worker thread)


class ChatRequest(BaseModel):
    """The fields read from a chat-completions request; others are ignored."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[Any] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    n: int | None = Field(default=None, ge=1)
    stream: bool | None = None
    stop: str | list[str] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    response_format: dict[str, Any] | None = None
    video_fps: float | None = Field(default=None, gt=0)
    video_timestamps: list[float] | None = None
    mm_processor_kwargs: dict[str, Any] | None = None


def _validation_message(exc: ValidationError) -> str:
    """'field.path: message' for the first few errors, without pydantic's input echo or URLs."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False)[:3]:
        loc = ".".join(str(x) for x in err.get("loc", ())) or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def _decode_data_url(url: Any, kind: str, where: str) -> tuple[str, bytes]:
    """(mime type, bytes) of a ``data:<kind>/...;base64,`` URL; APIError(400) otherwise."""
    if not isinstance(url, str) or not url:
        raise _bad(f"{where}: url must be a non-empty string", "invalid_url")
    if not url[:5].lower() == "data:":
        scheme = url.split(":", 1)[0].lower() if ":" in url[:16] else ""
        what = "remote URLs" if scheme in ("http", "https", "ftp", "s3", "gs") else "URLs other than data: URLs and file paths"
        raise _bad(f"{where}: {what} are refused (this server fetches nothing); send the {kind} inline "
                   f"as a data:{kind}/...;base64,... URL", "unsupported_url")
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise _bad(f"{where}: malformed data URL (no comma)", "invalid_url")
    mime, *params = [p.strip() for p in header.split(";")]
    if not mime.lower().startswith(kind + "/"):
        raise _bad(f"{where}: expected a {kind}/* data URL, got {mime or 'no'} media type", "invalid_url")
    if "base64" not in (p.lower() for p in params):
        raise _bad(f"{where}: the data URL must be base64-encoded (';base64,')", "invalid_url")
    try:
        data = base64.b64decode(_WS.sub(b"", payload.encode("ascii")), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise _bad(f"{where}: invalid base64 data", "invalid_base64") from None
    if not data:
        raise _bad(f"{where}: the data URL is empty", "invalid_base64")
    return mime.lower(), data


def _part_url(part: dict, key: str, where: str) -> Any:
    v = part.get(key)
    if isinstance(v, dict):
        return v.get("url")
    return v  # some clients send the URL as a plain string


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, p in enumerate(content):
            if not isinstance(p, dict) or p.get("type") != "text" or not isinstance(p.get("text"), str):
                raise _bad(f"{where}.content[{j}]: only text parts are allowed here", "invalid_messages")
            texts.append(p["text"])
        return "\n".join(texts)
    raise _bad(f"{where}.content must be a string or a list of parts", "invalid_messages")


@dataclass
class _UserContent:
    query: str
    video: tuple[str, bytes] | None = None  # (mime, bytes)
    images: list[bytes] | None = None


def parse_messages(messages: Sequence[Any]) -> tuple[str | None, _UserContent]:
    """(system text, user content) of a single-turn conversation; APIError(400) otherwise."""
    system: str | None = None
    user: _UserContent | None = None
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(f"{where} must be an object", "invalid_messages")
        role = m.get("role")
        if role in ("system", "developer"):
            if system is not None or user is not None:
                raise _bad(f"{where}: one system message, before the user message", "invalid_messages")
            system = _text_of(m.get("content"), where)
        elif role == "user":
            if user is not None:
                raise _bad(f"{where}: exactly one user message is supported (single turn)", "invalid_messages")
            user = _parse_user(m.get("content"), where)
        else:
            raise _bad(f"{where}: role {role!r} is not supported; send an optional system message and "
                       "one user message", "invalid_messages")
    if user is None:
        raise _bad("messages: no user message", "invalid_messages")
    return system, user


def _parse_user(content: Any, where: str) -> _UserContent:
    if isinstance(content, str):
        return _UserContent(query=content)
    if not isinstance(content, list) or not content:
        raise _bad(f"{where}.content must be a string or a non-empty list of parts", "invalid_messages")
    texts: list[str] = []
    video: tuple[str, bytes] | None = None
    images: list[bytes] = []
    images_closed = False  # a non-image part followed the images
    for j, p in enumerate(content):
        pw = f"{where}.content[{j}]"
        if not isinstance(p, dict):
            raise _bad(f"{pw} must be an object", "invalid_messages")
        kind = p.get("type")
        if kind == "text":
            if not isinstance(p.get("text"), str):
                raise _bad(f"{pw}.text must be a string", "invalid_messages")
            texts.append(p["text"])
            images_closed = images_closed or bool(images)
        elif kind == "video_url":
            if video is not None or images:
                raise _bad(f"{pw}: one video per request (a video_url, or consecutive image_url frames)",
                           "invalid_messages")
            video = _decode_data_url(_part_url(p, "video_url", pw), "video", pw)
        elif kind == "image_url":
            if video is not None:
                raise _bad(f"{pw}: one video per request (a video_url, or consecutive image_url frames)",
                           "invalid_messages")
            if images_closed:
                raise _bad(f"{pw}: image_url parts must be consecutive (they are the frames of one video)",
                           "invalid_messages")
            images.append(_decode_data_url(_part_url(p, "image_url", pw), "image", pw)[1])
        else:
            raise _bad(f"{pw}: unsupported content part type {kind!r} (text, video_url, image_url)",
                       "invalid_messages")
    return _UserContent(query="\n".join(texts), video=video, images=images or None)


def decode_images(blobs: Sequence[bytes], max_frames: int) -> np.ndarray:
    """(T, H, W, 3) uint8 frames from encoded images; APIError(400) when they are not usable."""
    from PIL import Image, UnidentifiedImageError

    if len(blobs) > max_frames:
        raise _bad(f"too many frames: {len(blobs)} images, this server accepts at most {max_frames}",
                   "too_many_frames")
    frames: list[np.ndarray] = []
    total = 0
    for k, blob in enumerate(blobs):
        try:
            with Image.open(io.BytesIO(blob)) as im:
                w, h = im.size
                if w < 1 or h < 1 or w * h > MAX_IMAGE_PIXELS:
                    raise _bad(f"image {k}: size {w}x{h} outside 1..{MAX_IMAGE_PIXELS} pixels", "invalid_image")
                total += w * h * 3
                if total > MAX_DECODED_BYTES:
                    raise _bad("the images decode to more than "
                               f"{MAX_DECODED_BYTES // 2**20} MiB of frames", "request_too_large")
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except APIError:
            raise
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, EOFError):
            raise _bad(f"image {k}: not a decodable image", "invalid_image") from None
        if frames and arr.shape != frames[0].shape:
            raise _bad(f"image {k}: size {arr.shape[1]}x{arr.shape[0]} differs from the first frame's "
                       f"{frames[0].shape[1]}x{frames[0].shape[0]} (all frames of a video share one size)",
                       "invalid_image")
        frames.append(arr)
    return np.stack(frames)


def sample_video_bytes(data: bytes, mime: str, budget: FrameBudget, max_frames: int,
                       *, timeout: float = 60.0):
    """Sample an uploaded video with the budget (whole when it is no longer than the budget's
    plan for it; see the module docstring). Returns (frames, timestamps, fps)."""
    from .video import VideoError, plan_timestamps, probe, sample_frames, sample_with_budget

    suffix = "." + re.sub(r"[^a-z0-9]", "", mime.split("/", 1)[1])[:8] if "/" in mime else ""
    fd, path = tempfile.mkstemp(prefix="videosafety-serve-", suffix=suffix or ".bin")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        start = time.monotonic()
        try:
            info = probe(path, timeout=min(timeout, 10.0))
            planned = len(plan_timestamps(info.duration, num_frames=budget.num_frames,
                                          fps=None if budget.num_frames else budget.fps,
                                          max_frames=budget.max_frames))
            n = min(planned, info.num_frames) if info.num_frames > 0 else planned
            if n > max_frames:
                raise _bad(f"too many frames: the budget samples {n} frames from this video, this server "
                           f"accepts at most {max_frames}", "too_many_frames")
            if n * info.width * info.height * 3 > MAX_DECODED_BYTES:
                raise _bad(f"the video decodes to more than {MAX_DECODED_BYTES // 2**20} MiB of frames",
                           "request_too_large")
            left = max(1.0, timeout - (time.monotonic() - start))
            if 0 < info.num_frames <= planned:
                # Every frame, once: a uniform plan at twice the frame count lands nearest to each
                # frame at least once; duplicates are dropped by timestamp.
                s = sample_frames(path, num_frames=2 * info.num_frames, max_frames=2 * info.num_frames,
                                  timeout=left)
                _, keep = np.unique(s.timestamps, return_index=True)
                keep.sort()
                frames, ts = s.frames[keep], s.timestamps[keep]
                fps = float(info.fps) if info.fps > 0 else s.sampled_fps
            else:
                s = sample_with_budget(path, budget, timeout=left)
                frames, ts, fps = s.frames, s.timestamps, float(s.sampled_fps)
        except VideoError as exc:
            raise _bad(f"the video could not be decoded: {exc.reason}", "invalid_video") from None
        except APIError:
            raise
        except Exception:  # noqa: BLE001 - decoder errors we did not type
            log.warning("video decoding failed", exc_info=True)
            raise _bad("the video could not be decoded", "invalid_video") from None
    finally:
        try:
            os.remove(path)
        except OSError:
            pass
    if len(frames) > max_frames:
        raise _bad(f"too many frames: {len(frames)}, this server accepts at most {max_frames}", "too_many_frames")
    if not (fps > 0 and math.isfinite(fps)):
        fps = budget.fps or 1.0
    return frames, ts, fps


@dataclass
class ParsedRequest:
    input: ModelInput
    settings: GenerationSettings
    max_tokens: int


def parse_request(payload: Any, *, served_name: str, budget: FrameBudget, max_frames: int,
                  max_new_tokens_limit: int, decode_timeout: float = 60.0) -> ParsedRequest:
    """A decoded JSON body -> the model input and settings; APIError(400) for any problem."""
    if not isinstance(payload, dict):
        raise _bad("the request body must be a JSON object", "invalid_json")
    if payload.get("stream") is True:
        raise _bad("stream=true is not supported by this server; send a non-streaming request",
                   "stream_unsupported", "stream")
    try:
        req = ChatRequest.model_validate(payload)
    except ValidationError as exc:
        raise _bad(_validation_message(exc), "invalid_request") from None
    if req.stream:
        raise _bad("stream=true is not supported by this server; send a non-streaming request",
                   "stream_unsupported", "stream")
    if req.model != served_name:
        raise _bad(f"unknown model {req.model!r}; this server serves {served_name!r}", "model_not_found", "model")
    if req.n not in (None, 1):
        raise _bad("n > 1 is not supported", "unsupported_parameter", "n")
    if req.stop:
        raise _bad("stop sequences are not supported", "unsupported_parameter", "stop")
    if req.logprobs or req.top_logprobs:
        raise _bad("logprobs are not supported", "unsupported_parameter", "logprobs")
    if req.tools or req.functions:
        raise _bad("tools / functions are not supported", "unsupported_parameter", "tools")
    if req.response_format and req.response_format.get("type") not in (None, "text"):
        raise _bad("only response_format type 'text' is supported", "unsupported_parameter", "response_format")
    max_tokens = req.max_completion_tokens or req.max_tokens or min(DEFAULT_MAX_TOKENS, max_new_tokens_limit)
    if max_tokens > max_new_tokens_limit:
        raise _bad(f"max_tokens={max_tokens} exceeds this server's limit of {max_new_tokens_limit}",
                   "max_tokens_too_large", "max_tokens")
    if req.temperature:
        settings = GenerationSettings(max_new_tokens=max_tokens, do_sample=True, temperature=req.temperature,
                                      top_p=req.top_p if req.top_p is not None else 1.0, seed=req.seed or 0)
    else:
        settings = GenerationSettings(max_new_tokens=max_tokens)

    system, user = parse_messages(req.messages)
    frames = timestamps = fps = None
    if user.images is not None:
        frames = decode_images(user.images, max_frames)
        fps = req.video_fps
        mm_fps = (req.mm_processor_kwargs or {}).get("fps")
        if fps is None and isinstance(mm_fps, (int, float)) and not isinstance(mm_fps, bool) and mm_fps > 0:
            fps = float(mm_fps)
        if fps is None:
            fps = budget.fps or 1.0
        if req.video_timestamps is not None:
            ts = np.asarray(req.video_timestamps, dtype=float)
            if ts.shape != (len(frames),) or not np.all(np.isfinite(ts)) or np.any(np.diff(ts) < 0):
                raise _bad(f"video_timestamps must be {len(frames)} finite, ascending numbers (one per frame)",
                           "invalid_request", "video_timestamps")
            timestamps = ts
    elif user.video is not None:
        frames, timestamps, fps = sample_video_bytes(user.video[1], user.video[0], budget, max_frames,
                                                     timeout=decode_timeout)
    elif not user.query and system is None:
        raise _bad("the user message is empty", "invalid_messages")
    inp = ModelInput(query=user.query, frames=frames, timestamps=timestamps, video_fps=fps, system=system)
    return ParsedRequest(inp, settings, max_tokens)


# --------------------------------------------------------------------------------------------
# the app


def create_app(
    model: VideoLLM,
    *,
    api_key: str | None = None,
    model_name: str | None = None,
    budget: FrameBudget | None = None,
    max_request_bytes: int = 64 * MiB,
    max_frames: int = 256,
    max_new_tokens_limit: int = 4096,
    max_pending: int = 64,
    decode_timeout: float = 60.0,
    max_decoding: int = 2,
    body_timeout: float = 60.0,
):
    """The FastAPI app serving ``model`` under ``model_name`` (default: ``model.name``).

    ``api_key``: required as ``Authorization: Bearer <key>`` on /v1/* when given (compared in
    constant time). ``budget``: how uploaded videos are sampled (default ``FrameBudget()``);
    pixel bounds are the model's own (HFVideoLLM's ``budget``)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    if not body_timeout > 0:
        raise ValueError("body_timeout must be > 0")
    if min(max_request_bytes, max_frames, max_new_tokens_limit, max_pending, max_decoding) < 1:
        raise ValueError("max_request_bytes, max_frames, max_new_tokens_limit, max_pending and max_decoding "
                         "must be >= 1")
    if api_key is not None and not api_key:
        raise ValueError("api_key must be None (no auth) or a non-empty string")
    budget = budget or FrameBudget()
    served = model_name or model.name
    revision = str(getattr(model, "revision", "unknown"))
    key_digest = hashlib.sha256(api_key.encode()).digest() if api_key is not None else None
    created = int(time.time())
    gen_lock = asyncio.Lock()
    decoding = asyncio.Semaphore(max_decoding)  # requests holding decoded frames (see the docstring)
    state = {"pending": 0}

    app = FastAPI(title="videosafety serve", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return _error_json(exc.status, exc.message, exc.code, exc.type, exc.param, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error_json(exc.status_code, str(exc.detail), code, "invalid_request_error")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):
        parts = []
        for err in exc.errors()[:3]:
            loc = ".".join(str(x) for x in err.get("loc", ())) or "request"
            parts.append(f"{loc}: {err.get('msg', 'invalid')}")
        return _error_json(400, "; ".join(parts) or "invalid request", "invalid_request", "invalid_request_error")

    def check_auth(request: Request) -> None:
        if key_digest is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).digest()
        ok = hmac.compare_digest(given, key_digest)  # both digests: equal length, constant time
        if not (scheme.lower() == "bearer" and ok):
            raise APIError(401, "missing or invalid API key (send 'Authorization: Bearer <key>')",
                           "invalid_api_key", type_="authentication_error",
                           headers={"WWW-Authenticate": "Bearer"})

    async def read_body(request: Request) -> bytes:
        too_large = APIError(413, f"request body exceeds {max_request_bytes} bytes", "request_too_large")
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                raise _bad("invalid Content-Length header", "invalid_request") from None
            if n > max_request_bytes:
                raise too_large
        buf = bytearray()
        more = True
        while more:
            msg = await request.receive()
            if msg.get("type") != "http.request":
                raise _bad("the client disconnected", "client_disconnected")
            buf += msg.get("body", b"")
            more = bool(msg.get("more_body", False))
            if len(buf) > max_request_bytes:
                raise too_large
        return bytes(buf)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def list_models(request: Request):
        check_auth(request)
        return {"object": "list", "data": [{
            "id": served, "object": "model", "created": created, "owned_by": OWNER,
            "revision": revision, "frame_budget": budget.describe(),
        }]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        import anyio

        # Errors answered before the body is read still reach a client mid-upload: uvicorn reads
        # and drops the rest of the body after the response (tested with 30 MiB over loopback).
        check_auth(request)
        if state["pending"] >= max_pending:
            raise APIError(503, "the server is busy; retry later", "server_busy", type_="server_error",
                           headers={"Retry-After": "1"})
        state["pending"] += 1
        try:
            try:  # a client that trickles its body must not hold a pending slot for ever
                body = await asyncio.wait_for(read_body(request), body_timeout)
            except asyncio.TimeoutError:
                raise APIError(408, f"the request body did not arrive within {body_timeout:g} s", "request_timeout",
                               headers={"Connection": "close"}) from None

            def parse() -> ParsedRequest:  # JSON, base64 and media decoding: off the event loop
                try:
                    payload = json.loads(body)
                except (ValueError, RecursionError):
                    raise _bad("the request body is not valid JSON", "invalid_json") from None
                return parse_request(payload, served_name=served, budget=budget, max_frames=max_frames,
                                     max_new_tokens_limit=max_new_tokens_limit, decode_timeout=decode_timeout)

            async with decoding:
                parsed = await anyio.to_thread.run_sync(parse)
                del body
                t0 = time.monotonic()
                async with gen_lock:
                    try:
                        out = await anyio.to_thread.run_sync(model.generate, [parsed.input], parsed.settings)
                    except Exception:  # noqa: BLE001
                        log.exception("generation failed")
                        out = None
                nframes = 0 if parsed.input.frames is None else len(parsed.input.frames)
                del parsed  # the decoded frames go with it, before the slot is given back
            text = out[0] if isinstance(out, list) and len(out) == 1 else None
            if not isinstance(text, str):
                if isinstance(text, FailedResponse):
                    log.error("generation failed: %s", text.error)
                elif out is not None:
                    log.error("generation returned %s instead of one string", type(out).__name__)
                raise APIError(500, "the model failed to generate a response", "internal_error",
                               type_="server_error")
            log.info("completion: %d frames, %.2f s", nframes, time.monotonic() - t0)
            return JSONResponse({
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": served,
                "system_fingerprint": revision,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": "stop",
                }],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            })
        finally:
            state["pending"] -= 1

    return app


# --------------------------------------------------------------------------------------------
# running


def load_model(spec: str | None, *, budget: FrameBudget | None = None, device: str = "cpu", dtype: str = "auto",
               trust_remote_code: bool = False) -> VideoLLM:
    """A VideoLLM from a model spec (see videosafety.models.spec); a bare hub id or path means
    hf:. Serving an openai: model (a proxy) is refused."""
    from .models.spec import ModelOptions
    from .models.spec import load_model as load_spec

    if spec is not None and spec.startswith("openai:"):
        raise ValueError("serving an openai: model is not supported; give an hf: model or a checkpoint path")
    if spec is not None and not spec.startswith(("hf:", "ref:")) and spec != "demo":
        spec = f"hf:{spec}"
    return load_spec(spec, budget or FrameBudget(), ModelOptions(device=device, dtype=dtype, batch_size=1,
                                                                  trust_remote_code=trust_remote_code))


def _url(host: str, port: int) -> str:
    h = f"[{host}]" if ":" in host else host
    return f"http://{h}:{port}/v1"


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


class BackgroundServer:
    """An app served by uvicorn in a daemon thread (tests, notebooks): ``with BackgroundServer(app)
    as srv: ... srv.url``. Binds 127.0.0.1 on a free port unless told otherwise."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, *, log_config: Any = None,
                 startup_timeout: float = 30.0) -> None:
        import uvicorn

        self.sock = bind_socket(host, port)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.url = _url(host, self.port)
        cfg = uvicorn.Config(app, log_config=log_config, log_level="info", lifespan="off",
                             timeout_graceful_shutdown=1, timeout_keep_alive=5)
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name=f"uvicorn-{self.port}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + startup_timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> "BackgroundServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(
    model: str | VideoLLM,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    api_key_env: str | None = None,
    model_name: str | None = None,
    budget: FrameBudget | None = None,
    device: str = "cpu",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    max_request_bytes: int = 64 * MiB,
    max_frames: int = 256,
    max_new_tokens_limit: int = 4096,
    max_pending: int = 64,
    max_decoding: int = 2,
    body_timeout: float = 60.0,
    log_level: str = "info",
) -> None:
    """Serve a model (a ``VideoLLM`` or a spec for ``load_model``) until interrupted.

    Binds 127.0.0.1 unless ``host`` says otherwise (port 0: a free port). The API key, when
    wanted, is read from the environment variable named by ``api_key_env`` (never from a command
    line value, which other users could read in the process list); the variable must then be set
    and non-empty. Prints the URL, never the key.
    """
    import uvicorn

    api_key = None
    if api_key_env is not None:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise ValueError(f"environment variable {api_key_env} is not set or empty; set it to the API "
                             "key clients must send, or serve without api_key_env")
    budget = budget or FrameBudget()
    llm = load_model(model, budget=budget, device=device, dtype=dtype,
                     trust_remote_code=trust_remote_code) if isinstance(model, str) else model
    app = create_app(llm, api_key=api_key, model_name=model_name, budget=budget,
                     max_request_bytes=max_request_bytes, max_frames=max_frames,
                     max_new_tokens_limit=max_new_tokens_limit, max_pending=max_pending, max_decoding=max_decoding,
                     body_timeout=body_timeout)
    sock = bind_socket(host, port)
    url = _url(host, sock.getsockname()[1])
    served = model_name or llm.name
    auth = f"API key required, from ${api_key_env}" if api_key else "no API key required"
    print(f"serving {served!r} at {url} ({auth}; frame budget {budget.describe()})", flush=True)
    if api_key is None and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s without an API key: anyone who can reach it can use the model", host)
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="off", timeout_graceful_shutdown=5))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


__all__ = ["APIError", "BackgroundServer", "ChatRequest", "create_app", "load_model", "parse_messages",
           "parse_request", "serve", "OWNER"]
