"""Hugging Face transformers backend: any video LLM loadable with ``AutoProcessor`` +
``AutoModelForImageTextToText`` (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, VideoLLaMA3, ...).

Data path (the same for every family, nothing special-cased per model):

1. ``build_conversation`` turns a ``ModelInput`` into chat messages:
   ``[system?] + user: [{"type": "video"}]? + [{"type": "text", "text": query}]``.
2. ``processor.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)`` renders the
   checkpoint's own chat template to a prompt holding one video placeholder per video.
3. ``processor(text=prompts, videos=[frames (T,H,W,3) uint8 arrays], ...)`` with, per video, a
   transformers-5 ``video_metadata`` entry (``fps``, ``frames_indices``, ``total_num_frames``) and
   ``do_sample_frames=False``: our frames are already sampled, the processor only resizes, patches
   and expands the placeholder (into per-frame timestamps for Qwen3-VL and VideoLLaMA3; Qwen2.5-VL
   derives ``second_per_grid_ts`` from the same metadata). Frames are never passed as paths.
4. The processed batch is checked for visual tokens (``NoVisualTokensError`` otherwise), then
   ``model.generate`` runs on it, left padded; only the new tokens are decoded.

``prepare_batch`` (steps 1-4 up to the check) is public so that later work can edit the processed
sequence and still take the same path; ``generate_from_batch`` runs generation on such a batch.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..budget import FrameBudget
from .base import GenerationSettings, ModelInput, NoVisualTokensError, check_frames

log = logging.getLogger(__name__)

# torch, transformers and .alarm (which needs torch) are imported inside the methods that use
# them: they take seconds to import, and reading this module's names (specs, the CLI's help)
# should not pay for that.

# Files whose content changes what a checkpoint outputs, besides the weights themselves.
_AUX_FILES = (
    "config.json",
    "generation_config.json",
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.json",
    "chat_template.jinja",
)
_FULL_HASH_MAX_BYTES = 64 * 2**20  # files up to this size are hashed in full
_SAMPLE_BLOCKS = 16  # larger files: safetensors header + this many strided 1 MiB blocks
_BLOCK = 2**20


def file_digest(path: Path, h: "hashlib._Hash") -> None:
    """Feed one file's content (whole up to 64 MiB, else its header and sampled blocks) into h."""
    size = path.stat().st_size
    with path.open("rb") as f:
        if size <= _FULL_HASH_MAX_BYTES:
            for chunk in iter(lambda: f.read(_BLOCK), b""):
                h.update(chunk)
            return
        if path.suffix == ".safetensors":  # header: every tensor's name, dtype, shape and offsets
            n = int.from_bytes(f.read(8), "little")
            h.update(f.read(min(n, 100 * 2**20)))
        for i in range(_SAMPLE_BLOCKS):
            f.seek((size - _BLOCK) * i // (_SAMPLE_BLOCKS - 1))
            h.update(f.read(_BLOCK))


def weights_digest(directory: str | os.PathLike) -> str:
    """Content digest of a local checkpoint directory, used as its revision.

    sha256 over the sorted (relative name, size, content) of the weight files (``*.safetensors``,
    their index) and of the files that shape outputs (config, generation config, processor /
    tokenizer files, chat template). Content is hashed in full for files up to 64 MiB; larger
    files (multi-GB shards) contribute their safetensors header (tensor names, dtypes, shapes,
    offsets) plus 16 evenly spaced 1 MiB blocks, which keeps the key content-derived (stable across
    copies, unlike mtimes) while costing well under a second per shard.
    """
    root = Path(directory)
    files = sorted(
        p for p in root.iterdir()
        if p.is_file() and (p.suffix == ".safetensors" or p.name.endswith(".safetensors.index.json")
                            or p.name in _AUX_FILES)
    )
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.name}\0{p.stat().st_size}\0".encode())
        file_digest(p, h)
    return "sha256:" + h.hexdigest()[:16]


def _hub_commit(model_id: str, revision: str | None) -> str | None:
    """The commit hash of a hub checkpoint, from the cache layout (``.../snapshots/<sha>/``)."""
    try:
        from transformers.utils import cached_file

        cfg = cached_file(model_id, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - best effort: fall back to the content digest
        return None
    if cfg is None:
        return None
    p = Path(cfg)
    if p.parent.parent.name == "snapshots" and len(p.parent.name) == 40:
        return p.parent.name
    return None


def resolve_torch_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        # The checkpoint's dtype, except on CPU where half precisions are slow and less exact.
        return torch.float32 if device == "cpu" else "auto"
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}") from None


class HFVideoLLM:
    """A transformers video LLM behind the ``VideoLLM`` protocol.

    Args:
        model_id_or_path: hub id or local checkpoint directory.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (all visible GPUs through
            ``device_map="auto"`` when CUDA is available, else CPU).
        dtype: ``"auto"`` (checkpoint dtype; float32 on CPU), ``"float32"``, ``"bfloat16"``,
            ``"float16"``.
        trust_remote_code: passed to both loaders; False unless asked.
        batch_size: prompts per ``generate`` call.
        budget: the frame budget; its ``max_pixels`` / ``min_pixels`` (per-frame areas) are handed
            to the video processor, translated into the processor's own ``size`` convention (some
            processors bound the area summed over frames). Frame sampling is not done here.
        attn_implementation: passed to the model loader (e.g. ``"sdpa"``, ``"eager"``).
        hub_revision: a hub branch / tag / commit to load.
        name: how runs name it (default ``hf:<model_id_or_path>``).
        token_compression: let a processor that drops unchanged patches between frames
            (VideoLLaMA3's ``use_token_compression``) do so. Off by default: the number of
            visual tokens then depends on the frames' size and count only, so the blank
            condition holds the video condition's token count (see ``conditions``).

    Weights load from safetensors only (``use_safetensors=True``).
    """

    reads_inputs = True  # the runner decodes frames for it

    @property
    def cpu_bound(self) -> bool:
        return self.device.type == "cpu"

    def __init__(
        self,
        model_id_or_path: str | os.PathLike,
        *,
        device: str = "cpu",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        batch_size: int = 4,
        budget: FrameBudget | None = None,
        attn_implementation: str | None = None,
        hub_revision: str | None = None,
        name: str | None = None,
        token_compression: bool = False,
    ) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model_id = str(model_id_or_path)
        self.name = name or f"hf:{self.model_id}"
        self.trust_remote_code = bool(trust_remote_code)
        self.batch_size = int(batch_size)
        self.budget = budget
        self.token_compression = bool(token_compression)

        device_map = None
        if device == "auto":
            if torch.cuda.is_available():
                device_map, device = "auto", "cuda"
            else:
                device = "cpu"
        self._torch_dtype = resolve_torch_dtype(dtype, "cpu" if device == "cpu" else "cuda")

        load_kw: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
        if hub_revision is not None:
            load_kw["revision"] = hub_revision
        self.processor = AutoProcessor.from_pretrained(self.model_id, **load_kw)
        model_kw: dict[str, Any] = dict(load_kw, dtype=self._torch_dtype, use_safetensors=True)
        if attn_implementation is not None:
            model_kw["attn_implementation"] = attn_implementation
        if device_map is not None:
            model_kw["device_map"] = device_map
        self.model = AutoModelForImageTextToText.from_pretrained(self.model_id, **model_kw)
        if device_map is None:
            self.model.to(device)
        self.model.eval()
        self.device = self.model.device

        local = Path(self.model_id)
        if local.is_dir():
            self.revision = weights_digest(local)
        else:
            self.revision = _hub_commit(self.model_id, hub_revision) or weights_digest(
                Path(_config_dir(self.model_id, hub_revision)))

        self._tokenizer = getattr(self.processor, "tokenizer", None)
        if self._tokenizer is None:
            raise TypeError(f"{type(self.processor).__name__} has no tokenizer")
        self.video_token, self.video_token_id = self._find_video_token()
        self._size_scaling = self._probe_size_scaling()
        # An alarm-token checkpoint (VideoSafety-R1) generates with its alarm vectors in place
        # and the alarm tokens placed exactly as in training.
        self.alarm_model = None
        if local.is_dir():
            from videosafety.models.alarm import AlarmModel, is_alarm_checkpoint

            if is_alarm_checkpoint(local):
                self.alarm_model = AlarmModel.from_pretrained(local, base=self.model).to(self.device).eval()

    # ------------------------------------------------------------------ introspection

    def _find_video_token(self) -> tuple[str, int]:
        """The video placeholder: string from the processor, id from processor/tokenizer/config."""
        proc, tok, cfg = self.processor, self._tokenizer, self.model.config
        token = getattr(proc, "video_token", None) or getattr(tok, "video_token", None)
        token_id = getattr(proc, "video_token_id", None)
        if token_id is None and token is not None:
            token_id = tok.convert_tokens_to_ids(token)
        cfg_id = getattr(cfg, "video_token_id", None)
        if cfg_id is None and hasattr(cfg, "get_text_config"):
            cfg_id = getattr(cfg.get_text_config(), "video_token_id", None)
        if token_id is None:
            token_id = cfg_id
        if token is None and token_id is not None:
            token = tok.convert_ids_to_tokens(int(token_id))
        if token is None or token_id is None:
            raise TypeError(f"cannot find the video token of {self.name}: the processor "
                            f"{type(proc).__name__} and the config name none; is this a video model?")
        if cfg_id is not None and int(cfg_id) != int(token_id):
            raise ValueError(f"{self.name}: processor video token {token!r} has id {token_id} but the "
                             f"model config expects video_token_id={cfg_id}")
        return str(token), int(token_id)

    @property
    def video_processor(self):
        vp = getattr(self.processor, "video_processor", None)
        if vp is None:
            raise TypeError(f"{type(self.processor).__name__} has no video processor")
        return vp

    def _probe_size_scaling(self) -> dict[str, bool]:
        """Does the video processor's ``size`` bound one frame's area, or the area over all frames?

        Measured, not assumed: ``get_num_of_video_patches`` is asked for the patches per frame of
        2-frame and 8-frame clips under the same bound. A bound over all frames gives fewer
        patches per frame to the longer clip. Lower bounds are probed the same way with small
        frames. In transformers 5: Qwen2/2.5-VL bound each frame (both bounds); Qwen3-VL bounds
        the area summed over frames (both bounds); VideoLLaMA3 divides its upper bound by the
        frame count and applies its lower bound per frame.
        """
        out = {"longest_edge": False, "shortest_edge": False}
        vp = getattr(self.processor, "video_processor", None)
        fn = getattr(vp, "get_num_of_video_patches", None)
        if fn is None:
            return out
        patch = int(getattr(vp, "patch_size", 14) or 14)
        merge = int(getattr(vp, "merge_size", 2) or 2)
        tps = int(getattr(vp, "temporal_patch_size", 1) or 1)
        factor = patch * merge
        big, small = factor * 16, factor

        def per_frame(n: int, side: int, size: dict) -> float:
            try:
                return fn(n, side, side, {"size": size}) / math.ceil(n / tps)
            except Exception:  # noqa: BLE001
                return float("nan")

        n1, n2 = 2 * tps, 8 * tps
        hi = {"shortest_edge": factor * factor, "longest_edge": (factor * 4) ** 2}
        a, b = per_frame(n1, big, hi), per_frame(n2, big, hi)
        out["longest_edge"] = bool(b < a)
        lo = {"shortest_edge": (factor * 4) ** 2 * n2, "longest_edge": (factor * 64) ** 2 * n2}
        a, b = per_frame(n1, small, lo), per_frame(n2, small, lo)
        out["shortest_edge"] = bool(b < a)
        return out

    def _video_kwargs_for(self, num_frames: int) -> dict[str, Any]:
        """videos_kwargs carrying the budget's per-frame pixel bounds for clips of num_frames."""
        kw: dict[str, Any] = {}
        b = self.budget
        if b is None or (b.max_pixels is None and b.min_pixels is None):
            return kw
        vp = self.video_processor
        size = dict(getattr(vp, "size", None) or {})
        size = {k: v for k, v in size.items() if k in ("shortest_edge", "longest_edge")}
        if b.max_pixels is not None:
            size["longest_edge"] = b.max_pixels * (num_frames if self._size_scaling["longest_edge"] else 1)
        if b.min_pixels is not None:
            size["shortest_edge"] = b.min_pixels * (num_frames if self._size_scaling["shortest_edge"] else 1)
        if size.get("shortest_edge") and size.get("longest_edge") and size["shortest_edge"] > size["longest_edge"]:
            size["shortest_edge"] = size["longest_edge"]
        kw["size"] = size
        return kw

    def batch_key(self, inp: ModelInput) -> int | None:
        """The grouping key of an input: inputs with equal keys may share one ``prepare_batch`` /
        processor call, inputs with different keys must not (``prepare_batch`` refuses the mix).

        The key is None except when the budget's pixel bounds have to be scaled by a clip's frame
        count (a processor whose ``size`` bounds the area over all frames takes one ``size`` per
        call): then it is the frame count. Callers that batch inputs themselves (``generate``,
        GRPO rounds, the alarm-head guard) group by it."""
        b = self.budget
        if (inp.frames is None or b is None or (b.max_pixels is None and b.min_pixels is None)
                or not any(self._size_scaling.values())):
            return None
        return int(len(inp.frames))

    # ------------------------------------------------------------------ preparation

    def build_conversation(self, inp: ModelInput) -> list[dict]:
        conv: list[dict] = []
        if inp.system is not None:
            conv.append({"role": "system", "content": [{"type": "text", "text": inp.system}]})
        content: list[dict] = [{"type": "video"}] if inp.frames is not None else []
        content.append({"type": "text", "text": inp.query})
        conv.append({"role": "user", "content": content})
        return conv

    def render_prompt(self, inp: ModelInput) -> str:
        return self.processor.apply_chat_template(
            self.build_conversation(inp), add_generation_prompt=True, tokenize=False
        )

    @staticmethod
    def _video_fps(inp: ModelInput, budget: FrameBudget | None) -> float:
        if inp.video_fps is not None:
            if not inp.video_fps > 0:
                raise ValueError(f"video_fps must be > 0, got {inp.video_fps}")
            return float(inp.video_fps)
        ts = None if inp.timestamps is None else np.asarray(inp.timestamps, dtype=float)
        if ts is not None and len(ts) >= 2 and ts[-1] > ts[0]:
            return float((len(ts) - 1) / (ts[-1] - ts[0]))
        if budget is not None and budget.fps is not None:
            return float(budget.fps)
        raise ValueError("an input with frames needs video_fps (or timestamps, or an fps budget): "
                         "processors use it for temporal positions and frame timestamps")

    def video_metadata(self, inp: ModelInput) -> dict[str, Any]:
        """transformers-5 ``VideoMetadata`` fields for already-sampled frames.

        Processors read frame times as ``frames_indices[i] / fps`` (Qwen3-VL, VideoLLaMA3) and the
        sampling rate as ``len(frames_indices) / total_num_frames * fps`` (Qwen2.5-VL's
        ``second_per_grid_ts``). So: when the timestamps are on the ``video_fps`` grid (or absent:
        frames at 0, 1/fps, 2/fps, ...), ``fps = video_fps`` and indices are the grid positions;
        otherwise a millisecond clock (``fps = 1000``) carries the exact timestamps, and
        ``total_num_frames`` is set so that the sampling rate still comes out as ``video_fps``.
        """
        frames = inp.frames
        assert frames is not None
        t = int(len(frames))
        fps = self._video_fps(inp, self.budget)
        h, w = int(frames.shape[1]), int(frames.shape[2])
        if inp.timestamps is None:
            idx = list(range(t))
            clock = fps
        else:
            ts = np.asarray(inp.timestamps, dtype=float)
            if ts.shape != (t,):
                raise ValueError(f"timestamps has shape {ts.shape}, frames have {t} frames")
            grid = ts * fps
            if np.allclose(grid, np.round(grid), atol=1e-3):
                idx, clock = [int(x) for x in np.round(grid)], fps
            else:
                clock = 1000.0
                idx = [int(x) for x in np.round(ts * clock)]
        total = max(1, int(round(t * clock / fps)))
        return {"total_num_frames": total, "fps": clock, "frames_indices": idx,
                "duration": total / clock, "height": h, "width": w}

    def render_training_text(self, inp: ModelInput, response: str) -> tuple[str, str]:
        """(prompt, full text) of a conversation whose assistant turn is ``response``.

        The chat template renders the prompt the same way with or without the answer for every
        family here; a template that does not is refused, since the supervised span would be
        wrong."""
        prompt = self.render_prompt(inp)
        conv = self.build_conversation(inp) + [
            {"role": "assistant", "content": [{"type": "text", "text": response}]}]
        full = self.processor.apply_chat_template(conv, tokenize=False)
        if not full.startswith(prompt):
            raise ValueError(f"{self.name}: the chat template renders the prompt differently once the "
                             "assistant's answer follows it; cannot tell prompt from target")
        return prompt, full

    def prepare_batch(self, inputs: Sequence[ModelInput]):
        """Render, process and check a batch; returns the processor's ``BatchFeature`` (CPU).

        Text-only and video inputs may be mixed in one batch (one processor call; videos are
        matched to their placeholders in order). Rows are left padded. Raises
        ``NoVisualTokensError`` when an input with frames ends up without visual tokens.
        """
        return self._process(inputs, [self.render_prompt(inp) for inp in inputs])

    def prepare_inputs(self, inputs: Sequence[ModelInput]):
        """The batch that generation runs on: ``prepare_batch``, plus the alarm tokens placed
        when this is an alarm-token checkpoint."""
        if self.alarm_model is None:
            return self.prepare_batch(inputs)
        from videosafety.models.alarm import prepare_alarm_batch

        batch, _ = prepare_alarm_batch(self, inputs, self.alarm_model.alarm)
        return batch

    def prepare_training_batch(self, inputs: Sequence[ModelInput], responses: Sequence[str]):
        """Like ``prepare_batch`` with each conversation's assistant answer appended.

        Returns (batch, prompt_lens): prompt_lens[i] counts row i's non-pad tokens that belong to
        the prompt (media placeholders expanded); the rest of the row is the rendered answer."""
        if len(inputs) != len(responses):
            raise ValueError(f"{len(inputs)} inputs but {len(responses)} responses")
        texts, suffixes = [], []
        for inp, resp in zip(inputs, responses):
            prompt, full = self.render_training_text(inp, resp)
            texts.append(full)
            suffixes.append(full[len(prompt):])
        batch = self._process(inputs, texts)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        prompt_lens = []
        for row, suffix in enumerate(suffixes):
            tail = self._tokenizer(suffix, add_special_tokens=False)["input_ids"]
            real = ids[row][mask[row].bool()].tolist()
            # The answer is text only, so its tokens are the same alone as at the end of the row,
            # unless BPE merged across the prompt/answer boundary: then refuse rather than guess.
            if len(tail) >= len(real) or real[len(real) - len(tail):] != tail:
                raise ValueError(f"{self.name}: row {row}: the answer does not tokenize the same on its "
                                 "own as inside the conversation; cannot find where the prompt ends")
            prompt_lens.append(len(real) - len(tail))
        return batch, prompt_lens

    def _pad_short_clip(self, inp: ModelInput) -> ModelInput:
        """``inp`` with its last frame repeated up to the video processor's temporal patch size.

        A clip that samples to fewer frames than one temporal patch (a 1 s video at 1 fps, an image
        as a one-frame video) is refused by some processors: Qwen3-VL raises "t:1 must be larger
        than temporal_factor:2", while Qwen2/2.5-VL pad by repeating the last frame themselves.
        Padding here the same way makes every family accept it and see the same thing. The extra
        frames continue the clip's time grid (last timestamp + k / video_fps), so the metadata
        stays consistent with the frames; the fps is fixed first, from the unpadded input."""
        frames = inp.frames
        tps = int(getattr(getattr(self.processor, "video_processor", None), "temporal_patch_size", 1) or 1)
        missing = tps - len(frames)
        ts = None if inp.timestamps is None else np.asarray(inp.timestamps, dtype=float)
        if missing <= 0 or (ts is not None and ts.shape != (len(frames),)):  # video_metadata names a mismatch
            return inp
        fps = self._video_fps(inp, self.budget)
        frames = np.concatenate([frames, np.repeat(frames[-1:], missing, axis=0)])
        if ts is not None:
            ts = np.concatenate([ts, ts[-1] + np.arange(1, missing + 1) / fps])
        return dataclasses.replace(inp, frames=frames, timestamps=ts, video_fps=fps)

    def _process(self, inputs: Sequence[ModelInput], texts: Sequence[str]):
        inputs = list(inputs)
        if not inputs:
            raise ValueError("empty batch")
        keys = {self.batch_key(i) for i in inputs if i.frames is not None}
        if len(keys) > 1:
            raise ValueError("with a pixel budget, this processor's size bound covers all frames of a "
                             "clip: batch clips of equal frame counts together (generate() does)")
        prompts, videos, metadata = [], [], []
        for i, (inp, prompt) in enumerate(zip(inputs, texts)):
            n = prompt.count(self.video_token)
            if inp.frames is not None:
                if n == 0:
                    raise NoVisualTokensError(
                        f"{self.name}: input {i} has {len(inp.frames)} frames but its rendered prompt has "
                        f"no {self.video_token!r} placeholder: the chat template or conversation dropped "
                        "the video, so the model would answer from text alone")
                if n > 1:
                    raise ValueError(f"input {i}: the prompt holds {n} {self.video_token!r} placeholders for "
                                     "one video (does the query or system text contain it?)")
                check_frames(inp.frames)
                inp = self._pad_short_clip(inp)
                videos.append(np.ascontiguousarray(inp.frames))
                metadata.append(self.video_metadata(inp))
            elif n:
                raise ValueError(f"input {i} is text-only but its prompt holds {self.video_token!r} "
                                 "(does the query or system text contain it?)")
            prompts.append(prompt)

        videos_kwargs: dict[str, Any] = {}
        if videos:
            videos_kwargs = {"video_metadata": metadata, "do_sample_frames": False,
                             **self._video_kwargs_for(len(videos[0]))}
            vp = self.video_processor
            valid = getattr(getattr(vp, "valid_kwargs", None), "__annotations__", {})
            # Pin the per-frame pixel behaviour: processors that can cap pixels by clip length warn
            # that their default will change; keep the checkpoint's size semantics explicitly.
            if "cap_pixels_per_frame" in valid and getattr(vp, "cap_pixels_per_frame", None) is None:
                videos_kwargs["cap_pixels_per_frame"] = False
            if "use_token_compression" in valid:
                videos_kwargs["use_token_compression"] = self.token_compression
        batch = self.processor(
            text=prompts,
            videos=videos or None,
            text_kwargs={"padding": True, "padding_side": "left"},
            videos_kwargs=videos_kwargs,
            return_tensors="pt",
        )
        self.check_visual_tokens(batch, [inp.frames is not None for inp in inputs])
        return batch

    def check_visual_tokens(self, batch, has_video: Sequence[bool]) -> None:
        """Raise ``NoVisualTokensError`` unless every video row holds visual tokens and pixels."""
        ids = batch["input_ids"]
        counts = (ids == self.video_token_id).sum(dim=1).tolist()
        if len(counts) != len(has_video):
            raise ValueError(f"batch has {len(counts)} rows for {len(has_video)} inputs")
        for row, (c, v) in enumerate(zip(counts, has_video)):
            if v and c == 0:
                raise NoVisualTokensError(
                    f"{self.name}: row {row} carries a video but its input_ids hold no video token "
                    f"{self.video_token!r} (id {self.video_token_id}): the model would not see the frames")
            if not v and c:
                raise ValueError(f"{self.name}: text-only row {row} holds {c} video tokens")
        if any(has_video):
            pv = batch.get("pixel_values_videos")
            if pv is None or pv.numel() == 0:
                raise NoVisualTokensError(f"{self.name}: the processed batch has video tokens but no "
                                          "pixel_values_videos")

    # ------------------------------------------------------------------ generation

    def _generation_kwargs(self, settings: GenerationSettings) -> dict[str, Any]:
        gen = copy.deepcopy(self.model.generation_config)
        kw: dict[str, Any] = {"max_new_tokens": int(settings.max_new_tokens), "do_sample": bool(settings.do_sample)}
        if settings.do_sample:
            kw.update(temperature=float(settings.temperature), top_p=float(settings.top_p))
        else:  # greedy: drop the checkpoint's sampling knobs so that nothing warns about them
            kw.update(temperature=None, top_p=None, top_k=None)
        if gen.pad_token_id is None:
            pad = self._tokenizer.pad_token_id
            if pad is None:
                eos = gen.eos_token_id
                pad = eos[0] if isinstance(eos, (list, tuple)) else eos
            kw["pad_token_id"] = pad
        gen.update(**kw)
        return {"generation_config": gen}

    def generate_from_batch(self, batch, settings: GenerationSettings) -> list[str]:
        """Generate from a processed batch (``prepare_batch``'s output, possibly edited)."""
        import torch

        batch = batch.to(self.device)
        gen_kw = self._generation_kwargs(settings)
        n_in = batch["input_ids"].shape[1]
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.inference_mode(), torch.random.fork_rng(devices=devices):
            if settings.do_sample:
                torch.manual_seed(settings.seed)
            generator = self.alarm_model if self.alarm_model is not None else self.model
            out = generator.generate(**batch, **gen_kw)
        new = out[:, n_in:].cpu()
        return self.processor.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def generate(self, inputs: Sequence[ModelInput], settings: GenerationSettings) -> list[str]:
        """One response per input, in order, ``batch_size`` prompts per call.

        Greedy unless ``settings.do_sample``; when sampling, each sub-batch is seeded with
        ``settings.seed`` (reproducible for a given batching) without touching the global RNG.
        """
        inputs = list(inputs)
        results: list[str | None] = [None] * len(inputs)
        groups: dict[Any, list[int]] = {}
        for i, inp in enumerate(inputs):
            groups.setdefault(self.batch_key(inp), []).append(i)
        for idx in groups.values():
            for s in range(0, len(idx), self.batch_size):
                chunk = idx[s:s + self.batch_size]
                texts = self.generate_from_batch(self.prepare_inputs([inputs[i] for i in chunk]), settings)
                for i, t in zip(chunk, texts):
                    results[i] = t
        return [r if r is not None else "" for r in results]

    def __repr__(self) -> str:
        return f"HFVideoLLM({self.model_id!r}, revision={self.revision!r}, device={str(self.device)!r})"


def _config_dir(model_id: str, hub_revision: str | None) -> str:
    from transformers.utils import cached_file

    cfg = cached_file(model_id, "config.json", revision=hub_revision)
    return str(Path(cfg).parent)


__all__ = ["HFVideoLLM", "weights_digest"]
