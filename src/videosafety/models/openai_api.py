"""Any OpenAI-compatible chat-completions server (vLLM's ``vllm serve``, ``videosafety serve``)
behind the ``VideoLLM`` protocol.

Wire format (what one ``ModelInput`` becomes):

* ``system`` -> a system message whose content is the text;
* text-only -> one user message whose content is the query string;
* with frames -> one user message whose content is the media followed by
  ``{"type": "text", "text": query}`` (the order the HF backend renders: video, then text), where
  the media is either

  - ``frames_as="video_url"``: ``{"type": "video_url", "video_url": {"url":
    "data:video/mp4;base64,..."}}``, the sampled frames encoded in memory as an H.264 mp4 whose
    frame rate is the input's sampling rate (so the container itself carries the timing: frame i
    at i / video_fps; the half-frame offset of sampled timestamps is not kept). Default encoding:
    yuv420p, ``video_crf`` 18, odd sizes padded to even by repeating the last row / column;
    ``video_lossless=True`` writes lossless RGB H.264 (libx264rgb, qp 0; High 4:4:4 profile,
    which FFmpeg-based readers decode) instead, so that the frames arrive bit-exact;
  - ``frames_as="images"``: one ``{"type": "image_url", "image_url": {"url":
    "data:image/jpeg;base64,..."}}`` per frame, in order (PNG with ``image_format="png"``: exact).

  Frames always travel as data, never as file paths or remote URLs.
* Sampling rate: the mp4 carries it for ``video_url``. For ``images``, the request gets two extra
  top-level fields, ``video_fps`` and ``video_timestamps`` (the input's own), that
  ``videosafety.serve`` reads; they are sent only to servers that list the model as
  ``owned_by: "videosafety"`` (``send_video_metadata=None``, the default), since other servers may
  warn about (vLLM) or refuse unknown fields; ``True`` / ``False`` force it. Anything else a server
  understands (e.g. vLLM's ``mm_processor_kwargs``) goes in ``extra_body``.
* Settings: greedy -> ``temperature=0``; sampling -> ``temperature``, ``top_p`` and ``seed``;
  ``max_tokens`` = ``settings.max_new_tokens``.

Serving with vLLM: vLLM samples frames of a ``video_url`` again with its own loader (32 frames by
default); start it with ``--media-io-kwargs '{"video": {"num_frames": -1}}'`` so that it keeps
exactly the frames sent (the frame budget stays ours).

Requests run on ``openai.AsyncOpenAI`` (its own retries off) with at most ``max_concurrency`` in
flight. Each attempt is cut off after ``timeout`` seconds; timeouts, connection errors, 408, 429,
5xx and a body that is not valid JSON are retried up to ``max_retries`` times with exponential
backoff and jitter (the n-th retry waits between half and all of ``min(backoff * 2**(n-1), 30)``
seconds, or longer when the server's ``Retry-After`` asks for it, capped at 30 s); any other error,
and the last failure, become a ``FailedResponse`` for that row only. So a row never takes longer
than ``max_request_seconds`` once its request starts (queueing behind ``max_concurrency`` aside).

A 200 answer without text is a ``FailedResponse`` too, never a response: no ``choices``, a
``null`` content, or a ``refusal`` field instead of content. The refusal field is the API's
channel (a provider's policy layer may fill it), not the model's text: counting it as the
model's answer would credit the model with a refusal it did not write, so the row is recorded
as an error (``--max-error-rate`` sees it) and asked again by the next run.

Several servers (replicas of one model, e.g. one vLLM per GPU or per host): give ``base_url`` a
list. The requests of this object go to the servers in turn (the k-th to server ``k mod N``,
counted across ``generate`` calls) and each retry to the next server,
so load spreads and a dead replica only costs retries. The name lists every server (the same
string in every process of a data-parallel run, so cache keys and run fingerprints agree), and
the constructor asks every server for its revision: replicas that report different models are
refused, since their responses would be mixed under one name.

The API key is read from the environment variable ``api_key_env`` each time a client is made
(``"EMPTY"`` when unset, for servers without auth). It is not stored on this object and is
scrubbed from every error text and log message this module writes.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import io
import logging
import math
import os
import random
import threading
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

import numpy as np

from ..budget import DEFAULT_FPS
from .base import FailedResponse, GenerationSettings, ModelInput, check_frames

log = logging.getLogger(__name__)

NO_KEY = "EMPTY"  # what servers without auth (vLLM's default) are sent
MAX_BACKOFF = 30.0  # seconds: the longest wait between two attempts
_PROBE_TIMEOUT = 10.0  # seconds: models.list, for the revision
_RETRY_STATUS = frozenset({408, 429})  # plus every 5xx
OWNER = "videosafety"  # the owned_by that videosafety.serve reports in /v1/models


def display_url(url: str) -> str:
    """The URL without user:password@ (never shown), for names, logs and errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def url_secrets(url: str | None) -> list[str]:
    """The forms a base URL's ``user:password@`` can take in an error text: the password (as
    written and percent-decoded) and the Basic credential httpx builds from it (base64 of
    ``user:password``), which a server may echo back."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:
        return []
    out = []
    for u, pw in ((user, password), (unquote(user or ""), unquote(password or ""))):
        if pw:
            out += [pw, base64.b64encode(f"{u or ''}:{pw}".encode()).decode("ascii")]
    return sorted(set(out), key=len, reverse=True)


def scrub_key(text: str, key: str | None, url: str | None = None) -> str:
    """``text`` with the API key, and the credentials of ``url`` (see ``url_secrets``), replaced by
    ``***`` (errors quote request headers; a careless server echoes them)."""
    for secret in ([key] if key and key != NO_KEY else []) + url_secrets(url):
        text = text.replace(secret, "***")
    return text


def run_sync(coro_factory):
    """Run the coroutine made by coro_factory() to completion from synchronous code.

    Without a running loop in this thread (a script, a worker thread): asyncio.run. With one (a
    notebook, async code calling the sync API): a fresh loop in a helper thread; the calling loop
    is blocked until it returns, as with any synchronous call."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_factory())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="openai-videollm") as ex:
        return ex.submit(lambda: asyncio.run(coro_factory())).result()


# --------------------------------------------------------------------------------------------
# encoding frames


def input_fps(inp: ModelInput) -> float | None:
    """The sampling rate of an input's frames: video_fps, else from its timestamps, else None."""
    if inp.video_fps is not None:
        if not (inp.video_fps > 0 and math.isfinite(inp.video_fps)):
            raise ValueError(f"video_fps must be positive, got {inp.video_fps}")
        return float(inp.video_fps)
    ts = None if inp.timestamps is None else np.asarray(inp.timestamps, dtype=float)
    if ts is not None and len(ts) >= 2 and ts[-1] > ts[0]:
        return float((len(ts) - 1) / (ts[-1] - ts[0]))
    return None


def encode_mp4(frames: np.ndarray, fps: float, *, lossless: bool = False, crf: int = 18) -> bytes:
    """H.264 mp4 bytes of (T, H, W, 3) uint8 frames at ``fps``, written in memory.

    Identical frames give identical bytes (ultrafast preset, one thread, bitexact muxer). Lossy
    (default): yuv420p at ``crf``, odd sizes padded to even by repeating the last row / column.
    Lossless: RGB H.264 at qp 0 (libx264rgb), any size, decoded back bit-exact.
    """
    import av

    arr = check_frames(frames)
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be positive, got {fps}")
    if not lossless:
        ph, pw = arr.shape[1] % 2, arr.shape[2] % 2
        if ph or pw:
            arr = np.pad(arr, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    height, width = int(arr.shape[1]), int(arr.shape[2])
    rate = Fraction(float(fps)).limit_denominator(1001)
    if rate <= 0:
        rate = Fraction(1, 1001)
    if lossless:
        codec, pix_fmt, options = "libx264rgb", "rgb24", {"qp": "0"}
    else:
        codec, pix_fmt, options = "libx264", "yuv420p", {"crf": str(int(crf))}
    options.update(preset="ultrafast", threads="1")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4", container_options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.thread_count = 1
        for n, a in enumerate(arr):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format="rgb24")
            frame.pts = n
            frame.time_base = 1 / rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def encode_image(frame: np.ndarray, image_format: str = "jpeg", jpeg_quality: int = 90) -> bytes:
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(frame), mode="RGB")
    out = io.BytesIO()
    if image_format == "png":
        img.save(out, format="PNG", compress_level=1)
    else:
        img.save(out, format="JPEG", quality=int(jpeg_quality))
    return out.getvalue()


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


# --------------------------------------------------------------------------------------------
# the backend


class OpenAIVideoLLM:
    """A model on an OpenAI-compatible chat-completions server (see the module docstring).

    Args:
        model: the model name the server serves (``--served-model-name`` for vLLM).
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``, or a list of them: replicas
            serving the same model, used in turn.
        api_key_env: environment variable holding the API key (unset: ``"EMPTY"``).
        frames_as: ``"video_url"`` (one mp4) or ``"images"`` (one image per frame).
        max_concurrency: requests in flight at once.
        timeout: seconds one attempt may take.
        max_retries: further attempts after a retryable failure.
        backoff: base of the exponential wait between attempts, in seconds.
        image_format, jpeg_quality: how frames are encoded with ``frames_as="images"``.
        video_lossless, video_crf: how the mp4 is encoded with ``frames_as="video_url"``.
        revision: the served model's revision, if known (e.g. the checkpoint commit vLLM was
            started with). Otherwise the constructor asks the server's ``/v1/models`` (one
            request, at most ``min(timeout, 10)`` s; see ``_revision_from_server``), so that the
            value is fixed for the object's lifetime; ``refresh_revision()`` asks again.
        extra_body: extra top-level request fields for every request (e.g. vLLM's
            ``{"mm_processor_kwargs": {...}}``).
        send_video_metadata: send ``video_fps`` / ``video_timestamps`` with image frames:
            None (default) only to a videosafety server, or True / False.
    """

    reads_inputs = True  # frames are sent to the server
    cpu_bound = False  # the server computes

    def __init__(
        self,
        model: str,
        base_url: str | Sequence[str],
        *,
        api_key_env: str = "OPENAI_API_KEY",
        frames_as: Literal["video_url", "images"] = "video_url",
        max_concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        image_format: Literal["jpeg", "png"] = "jpeg",
        jpeg_quality: int = 90,
        video_lossless: bool = False,
        video_crf: int = 18,
        revision: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        send_video_metadata: bool | None = None,
    ) -> None:
        if frames_as not in ("video_url", "images"):
            raise ValueError(f"frames_as must be 'video_url' or 'images', got {frames_as!r}")
        if image_format not in ("jpeg", "png"):
            raise ValueError(f"image_format must be 'jpeg' or 'png', got {image_format!r}")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        if not timeout > 0:
            raise ValueError("timeout must be > 0")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if backoff < 0:
            raise ValueError("backoff must be >= 0")
        if not 1 <= jpeg_quality <= 100:
            raise ValueError("jpeg_quality must be in 1..100")
        self.model = str(model)
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        self.base_urls = tuple(str(u).rstrip("/") for u in urls)
        if not self.base_urls or not all(self.base_urls):
            raise ValueError("base_url: give at least one server URL")
        if len(set(self.base_urls)) < len(self.base_urls):
            raise ValueError(f"base_url: a server is listed twice: {', '.join(map(display_url, self.base_urls))}")
        self.base_url = self.base_urls[0]
        self._turn = 0  # requests handed out so far: the next one goes to base_urls[_turn % N]
        self.api_key_env = api_key_env
        self.frames_as = frames_as
        self.max_concurrency = int(max_concurrency)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.image_format = image_format
        self.jpeg_quality = int(jpeg_quality)
        self.video_lossless = bool(video_lossless)
        self.video_crf = int(video_crf)
        self.extra_body = dict(extra_body or {})
        self.send_video_metadata = send_video_metadata
        self.name = f"openai:{self.model}@{','.join(map(display_url, self.base_urls))}"
        self._server: dict[str, Any] | None = None  # the server's models.list entry
        self._probed = False  # the server answered models.list (a failure is asked again later)
        self._probe_lock = threading.Lock()
        self._given_revision = revision
        if revision is None:
            self._ensure_probed_sync()
        self.revision = revision if revision is not None else self._revision_from_server()
        if revision is None and len(self.base_urls) > 1:
            self._check_replicas()

    # ------------------------------------------------------------------ identity

    def __getstate__(self) -> dict[str, Any]:  # picklable (worker processes): the lock is not
        state = dict(self.__dict__)
        del state["_probe_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._probe_lock = threading.Lock()

    def __repr__(self) -> str:
        urls = ",".join(map(display_url, self.base_urls))
        return (f"OpenAIVideoLLM(model={self.model!r}, base_url={urls!r}, "
                f"frames_as={self.frames_as!r}, api_key_env={self.api_key_env!r})")

    @property
    def max_request_seconds(self) -> float:
        """Upper bound on one row's time once its request starts (encoding aside): every attempt
        times out and every wait is the longest (a server's Retry-After may ask for up to
        MAX_BACKOFF)."""
        return self.timeout * (self.max_retries + 1) + MAX_BACKOFF * self.max_retries

    def refresh_revision(self) -> str:
        """Ask the server again (e.g. after it restarted with other weights); returns the new
        ``revision``. Meaningless when a revision was given to the constructor."""
        if self._given_revision is not None:
            return self.revision
        with self._probe_lock:
            self._probed, self._server = False, None
        self._ensure_probed_sync()
        self.revision = self._revision_from_server()
        return self.revision

    def _revision_from_server(self) -> str:
        """``revision``, from the server's ``/v1/models`` entry for this model, asked once at
        construction: ``"<id>@<revision>"`` when the server reports a ``revision`` field
        (videosafety serve: the weights digest), else ``"<id>@root=<root>"`` when it reports
        ``root`` (vLLM: the checkpoint path or hub id, not a content hash), else ``"<id>"``.
        ``created`` is left out on purpose: vLLM reports the time of the listing, which would
        change every cache key. ``"unknown"`` when the server does not answer or does not list
        the model. A ``revision`` given to the constructor wins (and nothing is asked)."""
        return self._revision_of(self._server)

    def _revision_of(self, s: dict[str, Any] | None) -> str:
        if s is None:
            return "unknown"
        ident = str(s.get("id", self.model))
        if s.get("revision"):
            return f"{ident}@{s['revision']}"
        if s.get("root"):
            return f"{ident}@root={s['root']}"
        return ident

    # ------------------------------------------------------------------ client

    def _check_replicas(self) -> None:
        """Every server that answers must report the first one's revision (see the module docstring)."""
        key = self._api_key()

        async def entries() -> list[dict[str, Any] | None]:
            found: list[dict[str, Any] | None] = []
            for url in self.base_urls[1:]:
                async with self._client(key, url) as client:
                    found.append((await self._models_entry(client, key))[1])
            return found

        revisions = {self.base_url: self.revision}
        revisions.update(zip(self.base_urls[1:], map(self._revision_of, run_sync(entries))))
        known = {url: rev for url, rev in revisions.items() if rev != "unknown"}
        if len(set(known.values())) > 1:
            raise ValueError(f"{self.name}: the servers report different models: " + "; ".join(
                f"{display_url(u)} {r}" for u, r in known.items()))

    def _api_key(self) -> str:
        return os.environ.get(self.api_key_env) or NO_KEY

    def _client(self, key: str, base_url: str | None = None):
        import openai

        return openai.AsyncOpenAI(api_key=key, base_url=base_url or self.base_url, max_retries=0,
                                  timeout=self.timeout)

    def _scrub(self, text: str, key: str) -> str:
        """``text`` without the API key and without the credentials of any of the servers."""
        for url in self.base_urls:
            text = scrub_key(text, key, url)
        return text

    async def _probe(self, client, key: str) -> None:
        if self._probed:
            return
        answered, server = await self._models_entry(client, key)
        if answered:
            self._server, self._probed = server, True

    async def _models_entry(self, client, key: str) -> tuple[bool, dict[str, Any] | None]:
        """(answered, this model's /v1/models entry or None) of the client's server."""
        try:
            page = await asyncio.wait_for(client.models.list(), min(self.timeout, _PROBE_TIMEOUT))
        except Exception as exc:  # noqa: BLE001 - optional information
            log.warning("%s: models.list at %s failed (%s)", self.name, display_url(str(client.base_url)),
                        self._scrub(f"{type(exc).__name__}: {exc}", key))
            return False, None
        for entry in getattr(page, "data", None) or []:
            d = entry.model_dump() if hasattr(entry, "model_dump") else dict(entry)
            if d.get("id") == self.model:
                return True, d
        log.warning("%s: the server at %s does not list model %r", self.name, display_url(str(client.base_url)),
                    self.model)
        return True, None

    def _ensure_probed_sync(self) -> None:
        if self._probed:
            return
        with self._probe_lock:
            if self._probed:
                return

            async def probe() -> None:
                key = self._api_key()
                async with self._client(key) as client:
                    await self._probe(client, key)

            run_sync(probe)

    def _sends_video_metadata(self) -> bool:
        if self.send_video_metadata is not None:
            return bool(self.send_video_metadata)
        return self._server is not None and self._server.get("owned_by") == OWNER

    # ------------------------------------------------------------------ requests

    def build_request(self, inp: ModelInput, settings: GenerationSettings) -> dict[str, Any]:
        """Keyword arguments of ``chat.completions.create`` for one input (``extra_body``
        included). Pure apart from encoding the frames."""
        messages: list[dict[str, Any]] = []
        if inp.system is not None:
            messages.append({"role": "system", "content": inp.system})
        extra: dict[str, Any] = dict(self.extra_body)
        if inp.frames is None:
            messages.append({"role": "user", "content": inp.query})
        else:
            frames = check_frames(inp.frames)
            fps = input_fps(inp)
            if self.frames_as == "video_url":
                mp4 = encode_mp4(frames, fps or DEFAULT_FPS, lossless=self.video_lossless, crf=self.video_crf)
                media = [{"type": "video_url", "video_url": {"url": _data_url("video/mp4", mp4)}}]
            else:
                mime = f"image/{self.image_format}"
                media = [{"type": "image_url",
                          "image_url": {"url": _data_url(mime, encode_image(f, self.image_format, self.jpeg_quality))}}
                         for f in frames]
                if self._sends_video_metadata():
                    if fps is not None:
                        extra["video_fps"] = fps
                    if inp.timestamps is not None:
                        ts = np.asarray(inp.timestamps, dtype=float)
                        if ts.shape != (len(frames),):
                            raise ValueError(f"timestamps has shape {ts.shape}, frames have {len(frames)} frames")
                        extra["video_timestamps"] = [float(t) for t in ts]
            messages.append({"role": "user", "content": [*media, {"type": "text", "text": inp.query}]})
        kw: dict[str, Any] = {"model": self.model, "messages": messages,
                              "max_tokens": int(settings.max_new_tokens)}
        if settings.do_sample:
            kw.update(temperature=float(settings.temperature), top_p=float(settings.top_p),
                      seed=int(settings.seed))
        else:
            kw["temperature"] = 0.0
        if extra:
            kw["extra_body"] = extra
        return kw

    def _delay(self, retry: int, retry_after: float | None = None) -> float:
        """Wait before retry number ``retry`` (1-based): equal jitter on a capped exponential, or
        the server's Retry-After (capped at MAX_BACKOFF) when that is longer."""
        d = min(self.backoff * 2 ** (retry - 1), MAX_BACKOFF)
        wait = d / 2 + random.uniform(0, d / 2)
        if retry_after is not None:
            wait = max(wait, min(retry_after, MAX_BACKOFF))
        return wait

    async def _one(self, clients: Sequence[Any], sem: asyncio.Semaphore, row: int, inp: ModelInput,
                   settings: GenerationSettings, key: str, turn: int = 0) -> str | FailedResponse:
        import openai

        async with sem:
            try:
                kw = await asyncio.to_thread(self.build_request, inp, settings)
            except Exception as exc:  # noqa: BLE001 - a bad row must not stop the run
                return FailedResponse(self._scrub(f"could not encode the input: {type(exc).__name__}: {exc}", key))
            last = ""
            retry_after: float | None = None
            for attempt in range(self.max_retries + 1):
                if attempt:
                    await asyncio.sleep(self._delay(attempt, retry_after))
                retry_after = None
                client = clients[(turn + attempt) % len(clients)]  # replicas in turn; a retry tries the next
                try:
                    resp = await asyncio.wait_for(client.chat.completions.create(**kw), self.timeout)
                except (asyncio.TimeoutError, openai.APITimeoutError):
                    last = f"timed out after {self.timeout:g} s"
                except openai.APIStatusError as exc:
                    last = self._scrub(f"HTTP {exc.status_code}: {_status_message(exc)}", key)
                    if not (exc.status_code in _RETRY_STATUS or exc.status_code >= 500):
                        log.warning("%s: row %d failed, not retried: %s", self.name, row, last)
                        return FailedResponse(last)
                    retry_after = retry_after_seconds(exc)
                except openai.APIConnectionError as exc:
                    last = self._scrub(f"connection error: {exc}", key)
                except ValueError as exc:  # a 200 whose body is not JSON (cut short, a proxy's page)
                    last = self._scrub(f"malformed response: the body is not valid JSON ({exc})", key)
                except Exception as exc:  # noqa: BLE001
                    msg = self._scrub(f"{type(exc).__name__}: {exc}", key)
                    log.warning("%s: row %d failed: %s", self.name, row, msg)
                    return FailedResponse(msg)
                else:
                    return _content(resp)
                if attempt < self.max_retries:
                    log.info("%s: row %d attempt %d failed (%s); retrying", self.name, row, attempt + 1, last)
            msg = f"gave up after {self.max_retries + 1} attempts: {last}"
            log.warning("%s: row %d %s", self.name, row, msg)
            return FailedResponse(msg)

    async def agenerate(self, inputs: Sequence[ModelInput],
                        settings: GenerationSettings) -> list[str | FailedResponse]:
        """``generate`` for async callers."""
        inputs = list(inputs)
        if not inputs:
            return []
        key = self._api_key()
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(self._client(key, url)) for url in self.base_urls]
            if self.send_video_metadata is None and self.frames_as == "images":
                await self._probe(clients[0], key)
            sem = asyncio.Semaphore(self.max_concurrency)
            first, self._turn = self._turn, self._turn + len(inputs)
            return list(await asyncio.gather(
                *(self._one(clients, sem, i, inp, settings, key, first + i) for i, inp in enumerate(inputs))))

    def generate(self, inputs: Sequence[ModelInput], settings: GenerationSettings) -> list[str | FailedResponse]:
        """One response per input, in order; a FailedResponse where a row's request failed.

        Runs its own event loop (in a helper thread when the calling thread already runs one)."""
        inputs = list(inputs)
        if not inputs:
            return []
        return run_sync(lambda: self.agenerate(inputs, settings))


def _status_message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"][:500]
        if isinstance(err, str):
            return err[:500]
    return str(getattr(exc, "message", exc))[:500]


def retry_after_seconds(exc) -> float | None:
    """The Retry-After (or retry-after-ms) of an error response, in seconds; None when absent or
    not a number of seconds (an HTTP date is ignored: the backoff applies)."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


def _content(resp) -> str | FailedResponse:
    """The text of a completion, or why there is none (see the module docstring: a refusal
    field is not the model's text)."""
    try:
        message = resp.choices[0].message
    except (AttributeError, IndexError, TypeError):
        return FailedResponse("malformed response: no choices[0].message")
    if isinstance(getattr(message, "content", None), str):
        return message.content
    refusal = getattr(message, "refusal", None)
    if isinstance(refusal, str):
        return FailedResponse(f"the server answered with a refusal field and no content: {refusal[:200]!r}")
    return FailedResponse("the response has no text content")


__all__ = ["OpenAIVideoLLM", "encode_mp4", "encode_image", "input_fps", "NO_KEY", "OWNER"]

