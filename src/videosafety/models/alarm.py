"""Alarm tokens (VideoSafety-R1, AT-SFT; spec 3.1-3.2) for any video LLM that
``AutoModelForImageTextToText`` loads.

Four pieces, each usable alone:

1. ``register_alarm_tokens`` adds ``<|visual_alarm|>`` / ``<|textual_alarm|>`` to the tokenizer as
   special tokens (ids looked up, never hard-coded), grows the model's embeddings when they do not
   fit (never shrinks a padded vocabulary) and stops the model from ever generating them.
2. ``place_alarms`` is the one placement rule, a pure function on the final token sequence (media
   placeholders already expanded by the processor), shared by training and inference;
   ``insert_alarm_tokens`` applies it to every row of a left-padded processed batch.
3. ``AlarmModel`` wraps the loaded model: two learnable vectors replace the input embeddings of the
   alarm tokens (a forward hook on the input embedding module, so ``generate`` works unchanged) and
   two ``Linear(H, 1)`` heads read the final hidden state at the alarm positions.
4. ``AlarmModel.save_pretrained`` / ``from_pretrained`` store it next to the base checkpoint.

Where the alarm tokens sit, per family (transformers 5; from the tiny real-class models):
Qwen2-VL / Qwen2.5-VL ``<|vision_start|><|video_pad|>*n <V> <|vision_end|> query <T> <|im_end|>``;
Qwen3-VL (per-frame groups) ``... <|video_pad|>*n <V> <|vision_end|><|vision_end|> query <T> <|im_end|>``;
VideoLLaMA3 ``Time ...s:<|video_pad|>*n <V> \\n query <T> <|im_end|>``. The Qwen M-RoPE index is
computed from ``mm_token_type_ids`` (0 = text), so an alarm inserted with type 0 is a plain text
token for the 3D positions: the visual grid is untouched, each later token shifts by one per
alarm before it.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

# transformers and safetensors are imported inside the functions that use them: importing
# transformers takes seconds, and the placement rule (place_alarms) and the tests of it do not
# need it.

VISUAL_ALARM = "<|visual_alarm|>"
TEXTUAL_ALARM = "<|textual_alarm|>"

ALARM_WEIGHTS_FILE = "alarm.safetensors"
ALARM_CONFIG_FILE = "alarm_config.json"
FORMAT_VERSION = 1

IGNORE_INDEX = -100  # labels value the loss skips (transformers' convention)
_NON_PER_TOKEN_PREFIXES = ("pixel_values",)  # never edited, whatever their shape happens to be


@dataclass(frozen=True)
class AlarmTokenIds:
    visual: int
    textual: int

    def __post_init__(self) -> None:
        if self.visual == self.textual:
            raise ValueError(f"visual and textual alarm ids must differ, both are {self.visual}")


# ============================================================================ registration


def tokenizer_of(processor):
    """The tokenizer inside a processor (a bare tokenizer is its own)."""
    return getattr(processor, "tokenizer", None) or processor


def alarm_ids_of(processor) -> AlarmTokenIds:
    """The alarm ids in ``processor``'s tokenizer; ValueError if they are not registered."""
    tok = tokenizer_of(processor)
    ids = []
    for t in (VISUAL_ALARM, TEXTUAL_ALARM):
        i = tok.convert_tokens_to_ids(t)
        if i is None or (tok.unk_token_id is not None and i == tok.unk_token_id) \
                or tok.convert_ids_to_tokens(int(i)) != t:
            raise ValueError(f"the tokenizer has no {t!r}: call register_alarm_tokens first")
        ids.append(int(i))
    return AlarmTokenIds(*ids)


def suppress_alarm_generation(model, alarm: AlarmTokenIds) -> None:
    """Make ``model.generate`` never emit an alarm token.

    ``generation_config.suppress_tokens`` (``SuppressTokensLogitsProcessor``: logit -inf at every
    step) applies to greedy decoding, sampling and beam search alike, and is saved with the
    model's ``generation_config.json``. Existing suppressed ids are kept."""
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        _add_suppressed(gen, alarm)


def _add_suppressed(gen, alarm: AlarmTokenIds) -> None:
    current = list(gen.suppress_tokens or [])
    for i in (alarm.visual, alarm.textual):
        if i not in current:
            current.append(int(i))
    gen.suppress_tokens = current


def register_alarm_tokens(processor, model=None) -> AlarmTokenIds:
    """Add both alarm tokens to ``processor.tokenizer`` and, given ``model``, make room for them.

    Tokenizer: added as extra special tokens (never split, skipped by
    ``decode(skip_special_tokens=True)``); idempotent: tokens already present keep their ids.

    Model: the input embedding matrix grows to ``max(current rows, len(tokenizer))``; a padded
    matrix already larger than the tokenizer (Qwen: 151936 rows for ~151.6k tokens) is left as
    is, the alarm ids then land in padding rows. Rows created by growing are set to the mean of
    the rows that existed before (explicitly: transformers' ``mean_resizing`` samples from a
    normal around that mean using the global RNG). Output embeddings: untied, the lm_head grows
    the same way with its own mean; tied (``tie_word_embeddings`` / the lm_head weight *is* the
    embedding weight), the tie is kept and the new output rows are the same mean rows. The
    alarm tokens' output rows never matter for generation: they are suppressed
    (``suppress_alarm_generation``); in training they only appear as softmax negatives (their
    labels are -100). Their input rows are what a plain model sees; ``AlarmModel`` replaces them.
    """
    tok = tokenizer_of(processor)
    extra = set(getattr(tok, "extra_special_tokens", None) or [])
    missing = [t for t in (VISUAL_ALARM, TEXTUAL_ALARM)
               if t not in extra or tok.convert_tokens_to_ids(t) in (None, tok.unk_token_id)]
    if missing:  # present ids are kept: add_tokens skips tokens already in the vocabulary
        tok.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
    alarm = alarm_ids_of(tok)
    if model is not None:
        _grow_embeddings(model, max(len(tok), alarm.visual + 1, alarm.textual + 1))
        suppress_alarm_generation(model, alarm)
    return alarm


def embeddings_tied(model) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


def _grow_embeddings(model, needed: int) -> None:
    emb = model.get_input_embeddings()
    old_in = emb.weight.shape[0]
    if needed <= old_in:
        return
    out = model.get_output_embeddings()
    tied = embeddings_tied(model)
    old_out = out.weight.shape[0] if out is not None else 0
    devices = [emb.weight.device] if emb.weight.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # resize initialises new rows randomly; we overwrite them
        model.resize_token_embeddings(needed, mean_resizing=False)
    with torch.no_grad():
        w = model.get_input_embeddings().weight
        w[old_in:] = w[:old_in].mean(dim=0, keepdim=True).to(w.dtype)
        out = model.get_output_embeddings()
        if out is not None and not tied and out.weight is not w:
            ow = out.weight
            ow[old_out:] = ow[:old_out].mean(dim=0, keepdim=True).to(ow.dtype)
            if getattr(out, "bias", None) is not None:
                out.bias[old_out:] = out.bias[:old_out].mean()
    if tied and not embeddings_tied(model):
        raise RuntimeError("resizing untied the input and output embeddings of a tied model")


# ============================================================================ placement


def place_alarms(
    ids: Sequence[int],
    *,
    prompt_len: int,
    visual_token_ids: Collection[int],
    end_of_turn_id: int,
    alarm: AlarmTokenIds,
    has_video: bool,
) -> tuple[list[int], int, int]:
    """Insert both alarm tokens into one token sequence; returns (new ids, visual idx, textual idx).

    ``ids`` is the final sequence (media placeholders expanded), without padding; its first
    ``prompt_len`` tokens are the prompt (user turn + generation prompt), the rest, if any, the
    response. With video, the visual alarm goes right after the last visual token of the prompt
    and the textual alarm right before the prompt's last end-of-turn token (the end of the user
    content). Text-only, both go before that end-of-turn token, visual first.
    """
    ids = [int(i) for i in ids]
    if not 0 <= prompt_len <= len(ids):
        raise ValueError(f"prompt_len {prompt_len} outside 0..{len(ids)}")
    if alarm.visual in ids or alarm.textual in ids:
        raise ValueError("the sequence already holds an alarm token: placing alarms twice (or a query "
                         "that contains an alarm token string)")
    visual = set(int(v) for v in visual_token_ids)
    eot = next((i for i in range(prompt_len - 1, -1, -1) if ids[i] == end_of_turn_id), None)
    if eot is None:
        raise ValueError(f"no end-of-turn token (id {end_of_turn_id}) in the prompt "
                         f"({prompt_len} tokens): cannot find the end of the user content")
    vis_pos = [i for i, t in enumerate(ids) if t in visual]
    late = [i for i in vis_pos if i > eot]
    if late:
        raise ValueError(f"visual tokens after the user turn's end-of-turn token (first at {late[0]}, "
                         f"end of turn at {eot}): malformed sequence")
    if has_video:
        if not vis_pos:
            raise ValueError("has_video but the prompt holds no visual token: the processor did not "
                             "expand the video placeholder")
        v = vis_pos[-1] + 1
        new = ids[:v] + [alarm.visual] + ids[v:eot] + [alarm.textual] + ids[eot:]
        return new, v, eot + 1
    if vis_pos:
        raise ValueError(f"text-only input but {len(vis_pos)} visual tokens in the sequence")
    new = ids[:eot] + [alarm.visual, alarm.textual] + ids[eot:]
    return new, eot, eot + 1


def visual_token_ids_of(processor, config=None) -> set[int]:
    """Ids of the image and video placeholder tokens, from the processor, tokenizer and config."""
    tok = tokenizer_of(processor)
    found: set[int] = set()

    def add(v) -> None:
        if isinstance(v, bool) or v is None:
            return
        if isinstance(v, int) and v >= 0 and (tok.unk_token_id is None or v != tok.unk_token_id):
            found.add(v)

    for obj in {id(o): o for o in (processor, tok)}.values():
        for attr in ("image_token_id", "video_token_id"):
            add(getattr(obj, attr, None))
        for attr in ("image_token_ids", "video_token_ids"):
            for v in getattr(obj, attr, None) or []:
                add(v)
        for attr in ("image_token", "video_token"):
            s = getattr(obj, attr, None)
            if isinstance(s, str):
                i = tok.convert_tokens_to_ids(s)
                if i is not None and tok.convert_ids_to_tokens(int(i)) == s:
                    add(int(i))
    if config is not None:
        cfgs = [config]
        if hasattr(config, "get_text_config"):
            cfgs.append(config.get_text_config())
        for c in cfgs:
            for attr in ("image_token_id", "video_token_id", "image_token_index", "video_token_index"):
                add(getattr(c, attr, None))
    if not found:
        raise ValueError(f"cannot find image/video placeholder tokens of {type(processor).__name__}")
    return found


_PROBE_TEXT = "Zq7Probe"


def end_of_turn_id_of(processor) -> int:
    """The special token the chat template closes a user turn with (e.g. ``<|im_end|>``).

    Found by rendering a one-message conversation and taking the first special token after the
    user's text (only whitespace may come between)."""
    tok = tokenizer_of(processor)
    rendered = None
    for content in ([{"type": "text", "text": _PROBE_TEXT}], _PROBE_TEXT):
        try:
            r = processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False)
        except Exception:  # noqa: BLE001 - some templates accept only one content form
            continue
        if isinstance(r, list):
            r = r[0]
        if isinstance(r, str) and _PROBE_TEXT in r:
            rendered = r
            break
    if rendered is None:
        raise ValueError(f"{type(processor).__name__}: the chat template does not render a user message")
    tail = rendered[rendered.rindex(_PROBE_TEXT) + len(_PROBE_TEXT):]
    special = set(int(i) for i in getattr(tok, "all_special_ids", []) or [])
    special |= {int(i) for i, t in (getattr(tok, "added_tokens_decoder", {}) or {}).items()
                if getattr(t, "special", False)}
    for i in tok(tail, add_special_tokens=False)["input_ids"]:
        if int(i) in special:
            return int(i)
        if tok.decode([i]).strip():
            break
    raise ValueError(f"{type(processor).__name__}: no special token closes the user turn in the chat "
                     f"template (text after the user message: {tail[:40]!r}); pass end_of_turn_id explicitly")


def pad_id_of(processor, model=None) -> int:
    """The id rows are padded with: the tokenizer's pad token, else the model's generation pad
    token, else the (first) end-of-sequence token."""
    tok = tokenizer_of(processor)
    pad = tok.pad_token_id
    if pad is None and model is not None:
        pad = getattr(model.generation_config, "pad_token_id", None)
    if pad is None:
        eos = tok.eos_token_id
        pad = eos[0] if isinstance(eos, (list, tuple)) else eos
    if pad is None:
        raise ValueError("no pad token id (tokenizer pad / generation config pad / eos)")
    return int(pad)


def insert_alarm_tokens(
    batch,
    *,
    has_video: Sequence[bool],
    visual_token_ids: Collection[int],
    end_of_turn_id: int,
    alarm: AlarmTokenIds,
    pad_token_id: int,
    prompt_lens: Sequence[int] | None = None,
):
    """Apply ``place_alarms`` to each row of a processed batch; returns (new batch, positions (B, 2)).

    Rows are taken without padding (``attention_mask``), alarm tokens inserted, and the batch is
    re-padded on the left. ``prompt_lens`` counts each row's non-pad prompt tokens (None: the whole
    row is prompt). Every per-token tensor (first two dims equal ``input_ids``' shape, except
    ``pixel_values*``) gets the same insertion: ``input_ids`` the alarm ids, ``attention_mask`` 1,
    ``labels`` -100, any other (``mm_token_type_ids``, ``token_type_ids``, ...) 0 = text. Other
    entries (pixel values, grids, ...) pass through unchanged. Positions are column indices of
    the visual and textual alarm in the returned (padded) batch.
    """
    from transformers import BatchFeature

    input_ids = batch["input_ids"]
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (B, L), got {tuple(input_ids.shape)}")
    if "position_ids" in batch:
        raise ValueError("the batch holds position_ids, which cannot be edited generically: "
                         "insert alarms before computing positions")
    b, length = input_ids.shape
    has_video = [bool(h) for h in has_video]
    if len(has_video) != b:
        raise ValueError(f"has_video has {len(has_video)} entries for {b} rows")
    if prompt_lens is not None and len(prompt_lens) != b:
        raise ValueError(f"prompt_lens has {len(prompt_lens)} entries for {b} rows")
    mask = batch.get("attention_mask")
    keep = mask.bool() if mask is not None else torch.ones_like(input_ids, dtype=torch.bool)

    rows: list[list[int]] = []  # per row: old column of each new token, -1 visual / -2 textual alarm
    positions: list[tuple[int, int]] = []
    for r in range(b):
        cols = keep[r].nonzero().flatten().tolist()
        ids = input_ids[r, cols].tolist()
        plen = len(ids) if prompt_lens is None else int(prompt_lens[r])
        try:
            new, v, t = place_alarms(ids, prompt_len=plen, visual_token_ids=visual_token_ids,
                                     end_of_turn_id=end_of_turn_id, alarm=alarm, has_video=has_video[r])
        except ValueError as e:
            raise ValueError(f"row {r}: {e}") from None
        src: list[int] = []
        k = 0
        for j in range(len(new)):
            if j == v:
                src.append(-1)
            elif j == t:
                src.append(-2)
            else:
                src.append(cols[k])
                k += 1
        rows.append(src)
        positions.append((v, t))

    new_len = max(len(s) for s in rows)
    src = torch.full((b, new_len), -3, dtype=torch.long)  # -3: left padding
    for r, s in enumerate(rows):
        src[r, new_len - len(s):] = torch.tensor(s, dtype=torch.long)
    pos = torch.tensor([[new_len - len(s) + v, new_len - len(s) + t] for s, (v, t) in zip(rows, positions)],
                       dtype=torch.long)
    src = src.to(input_ids.device)
    gather = src.clamp(min=0)
    row_idx = torch.arange(b, device=input_ids.device)[:, None]
    is_v, is_t, is_pad = src == -1, src == -2, src == -3

    def edit(key: str, x: torch.Tensor) -> torch.Tensor:
        y = x[row_idx, gather].clone()
        if key == "input_ids":
            vals = (alarm.visual, alarm.textual, pad_token_id)
        elif key == "attention_mask":
            vals = (1, 1, 0)
        elif key == "labels":
            vals = (IGNORE_INDEX,) * 3
        else:
            vals = (0, 0, 0)
        for m, val in zip((is_v, is_t, is_pad), vals):
            y[m] = val
        return y

    out: dict[str, Any] = {}
    for key, value in batch.items():
        per_token = (isinstance(value, torch.Tensor) and value.dim() >= 2
                     and tuple(value.shape[:2]) == (b, length) and not key.startswith(_NON_PER_TOKEN_PREFIXES))
        out[key] = edit(key, value) if per_token else value
    if mask is None and bool(is_pad.any()):
        out["attention_mask"] = (~is_pad).long()
    # Sanity: what the gather produced is what the placement rule returned.
    new_ids = out["input_ids"]
    for r, s in enumerate(rows):
        assert int(new_ids[r, pos[r, 0]]) == alarm.visual and int(new_ids[r, pos[r, 1]]) == alarm.textual
    return BatchFeature(data=out), pos.to(input_ids.device)


def prepare_alarm_batch(llm, inputs, alarm: AlarmTokenIds | None = None, *,
                        responses: Sequence[str] | None = None):
    """``llm.prepare_batch(inputs)`` (an ``HFVideoLLM``) followed by ``insert_alarm_tokens``.

    With ``responses`` (training), each row holds its prompt followed by the rendered answer
    (``llm.prepare_training_batch``) and only the prompt part is searched for the placement.
    ``alarm`` defaults to the ids registered in ``llm.processor``; if given, it must match them."""
    registered = alarm_ids_of(llm.processor)
    if alarm is not None and alarm != registered:
        raise ValueError(f"alarm ids {alarm} differ from the processor's {registered}")
    inputs = list(inputs)
    if responses is None:
        batch, prompt_lens = llm.prepare_batch(inputs), None
    else:
        batch, prompt_lens = llm.prepare_training_batch(inputs, list(responses))
    return insert_alarm_tokens(
        batch,
        has_video=[inp.frames is not None for inp in inputs],
        visual_token_ids=visual_token_ids_of(llm.processor, llm.model.config),
        end_of_turn_id=end_of_turn_id_of(llm.processor),
        alarm=registered,
        pad_token_id=pad_id_of(llm.processor, llm.model),
        prompt_lens=prompt_lens,
    )


def alarm_positions_of(input_ids: torch.Tensor, alarm: AlarmTokenIds) -> torch.Tensor:
    """(B, 2) columns of the visual and textual alarm in each row; each must occur exactly once."""
    cols = []
    for a in (alarm.visual, alarm.textual):
        hit = input_ids == a
        counts = hit.sum(dim=1)
        if not bool((counts == 1).all()):
            raise ValueError(f"every row must hold alarm id {a} exactly once, counts {counts.tolist()}")
        cols.append(hit.long().argmax(dim=1))
    return torch.stack(cols, dim=1)


# ============================================================================ the model


@dataclass
class AlarmOutput:
    logits: torch.Tensor  # (B, L, V) from the base model
    video_logit: torch.Tensor  # (B,) visual head at the visual alarm
    query_logit: torch.Tensor  # (B,) textual head at the textual alarm
    lm_loss: torch.Tensor | None = None  # the base model's CE when the batch holds labels


def language_model_of(base) -> nn.Module:
    """The language-model (decoder) module inside an HF video LLM."""
    dec = base.get_decoder() if hasattr(base, "get_decoder") else None
    if dec is None:
        inner = getattr(base, "model", None)
        dec = getattr(inner, "language_model", None) or getattr(base, "language_model", None)
    if dec is None or dec is base:
        raise TypeError(f"cannot find the language model inside {type(base).__name__}")
    return dec


def language_parameters(model) -> list[nn.Parameter]:
    """The language model's parameters plus the output embeddings (lm_head) of an HF video LLM,
    each once (tied embeddings appear once): what trains in every stage but the vision side."""
    seen: dict[int, nn.Parameter] = {}
    for p in language_model_of(model).parameters():
        seen[id(p)] = p
    out_emb = model.get_output_embeddings()
    if out_emb is not None:
        for p in out_emb.parameters():
            seen[id(p)] = p
    return list(seen.values())


def vision_parameters(model) -> list[nn.Parameter]:
    """Every parameter outside the language model and lm_head: vision encoder, projector, ..."""
    return _parameters_outside(model, language_parameters(model))


def _parameters_outside(model, llm: list[nn.Parameter]) -> list[nn.Parameter]:
    ids = {id(p) for p in llm}
    return [p for p in model.parameters() if id(p) not in ids]


class AlarmModel(nn.Module):
    """A video LLM with alarm tokens: learnable input vectors and two harm heads.

    ``alarm_vectors`` (2, H): row 0 visual, row 1 textual; they replace the input embeddings at
    the alarm positions through a forward hook on ``base.get_input_embeddings()`` that is active
    inside ``forward`` / ``generate`` / ``harm_probs`` / ``active()``. Init ``"zeros"`` (the
    reference) or ``"copy"``: a copy of embedding rows, ``copy_from`` None (mean embedding), a
    token id (both rows) or a pair of ids. The heads read ``hidden_states[-1]``, which for these
    families is the state after the final norm that the lm_head reads. Alarm parameters are kept
    in float32 (``param_dtype``) and cast to the model's dtype where used.
    """

    def __init__(self, base, alarm: AlarmTokenIds, *, init: str = "zeros",
                 copy_from: int | Sequence[int] | None = None, param_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.base = base
        self.alarm = alarm
        self.init = init
        emb = base.get_input_embeddings()
        rows = emb.weight.shape[0]
        if max(alarm.visual, alarm.textual) >= rows:
            raise ValueError(f"alarm ids {alarm} do not fit the {rows}-row embedding matrix: "
                             "call register_alarm_tokens(processor, model) first")
        self.hidden_size = int(base.config.get_text_config().hidden_size)
        if emb.weight.shape[1] != self.hidden_size:
            raise ValueError(f"embedding width {emb.weight.shape[1]} != text hidden size {self.hidden_size}")
        dev = emb.weight.device
        self.alarm_vectors = nn.Parameter(self._initial_vectors(init, copy_from, param_dtype))
        self.visual_head = nn.Linear(self.hidden_size, 1, device=dev, dtype=param_dtype)
        self.textual_head = nn.Linear(self.hidden_size, 1, device=dev, dtype=param_dtype)
        self._hook_handle = None
        suppress_alarm_generation(base, alarm)

    def _initial_vectors(self, init: str, copy_from, dtype) -> torch.Tensor:
        w = self.base.get_input_embeddings().weight.detach()
        if init == "zeros":
            return torch.zeros(2, self.hidden_size, device=w.device, dtype=dtype)
        if init != "copy":
            raise ValueError(f"init must be 'zeros' or 'copy', got {init!r}")
        if copy_from is None:
            others = torch.ones(w.shape[0], dtype=torch.bool, device=w.device)
            others[[self.alarm.visual, self.alarm.textual]] = False
            v = w[others].float().mean(dim=0, keepdim=True).expand(2, -1)
        else:
            ids = [int(copy_from)] * 2 if isinstance(copy_from, int) else [int(i) for i in copy_from]
            if len(ids) != 2:
                raise ValueError("copy_from must be a token id or a pair of ids")
            v = w[ids]
        return v.to(dtype).clone()

    # ------------------------------------------------------------------ the embedding hook

    def _substitute(self, module, args, kwargs, output):
        ids = args[0] if args else kwargs.get("input", kwargs.get("input_ids"))
        if not isinstance(ids, torch.Tensor):
            return None
        is_v = ids == self.alarm.visual
        is_t = ids == self.alarm.textual
        hit = is_v | is_t
        if not bool(hit.any()):  # decoding steps and the model's own placeholder probes
            return None
        vec = self.alarm_vectors.to(device=output.device, dtype=output.dtype)
        rows = torch.where(is_t.unsqueeze(-1), vec[1], vec[0])
        return torch.where(hit.unsqueeze(-1), rows, output)

    @contextmanager
    def active(self) -> Iterator[AlarmModel]:
        """Alarm vectors in place of the alarm tokens' embeddings, e.g. around a plain
        ``base.generate`` / ``HFVideoLLM.generate_from_batch`` call. Reentrant."""
        if self._hook_handle is not None:
            yield self
            return
        self._hook_handle = self.base.get_input_embeddings().register_forward_hook(
            self._substitute, with_kwargs=True)
        try:
            yield self
        finally:
            self._hook_handle.remove()
            self._hook_handle = None

    # ------------------------------------------------------------------ forward / generate

    def _check_positions(self, alarm_positions, input_ids) -> torch.Tensor:
        if alarm_positions is None:
            return alarm_positions_of(input_ids, self.alarm)
        pos = alarm_positions.to(input_ids.device).long()
        if pos.shape != (input_ids.shape[0], 2):
            raise ValueError(f"alarm_positions must be (B, 2), got {tuple(pos.shape)}")
        got = input_ids.gather(1, pos)
        want = torch.tensor([self.alarm.visual, self.alarm.textual], device=input_ids.device)
        if not bool((got == want).all()):
            raise ValueError("alarm_positions do not point at the alarm tokens of input_ids")
        return pos

    def _heads(self, hidden: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        pos = pos.to(hidden.device)
        dt = self.visual_head.weight.dtype
        hv = hidden[rows, pos[:, 0]].to(dt)
        ht = hidden[rows, pos[:, 1]].to(dt)
        return self.visual_head(hv).squeeze(-1), self.textual_head(ht).squeeze(-1)

    def forward(self, alarm_positions: torch.Tensor | None = None, *, heads: bool = True, **batch) -> AlarmOutput:
        """One pass of the base model on ``batch`` (all multimodal entries passed through) with the
        alarm vectors in place; heads read the final hidden state at ``alarm_positions`` (B, 2)
        (None: located from ``input_ids``). With ``labels`` in the batch, ``lm_loss`` is the base
        model's mean CE over supervised tokens. ``heads=False`` skips the heads (their logits are
        None) and keeps no hidden states: GRPO needs only the logits."""
        pos = self._check_positions(alarm_positions, batch["input_ids"])
        batch.pop("output_hidden_states", None)
        batch.pop("return_dict", None)
        batch.setdefault("use_cache", False)  # one pass, no decoding: a KV cache is only memory
        with self.active():
            out = self.base(**batch, output_hidden_states=heads, return_dict=True)
        if not heads:
            return AlarmOutput(logits=out.logits, video_logit=None, query_logit=None,
                               lm_loss=getattr(out, "loss", None))
        video_logit, query_logit = self._heads(out.hidden_states[-1], pos)
        return AlarmOutput(logits=out.logits, video_logit=video_logit, query_logit=query_logit,
                           lm_loss=getattr(out, "loss", None))

    @torch.no_grad()
    def harm_probs(self, alarm_positions: torch.Tensor | None = None, **batch) -> torch.Tensor:
        """(B, 2) probabilities [video harmful, query harmful] from one forward pass, no generation."""
        pos = self._check_positions(alarm_positions, batch["input_ids"])
        batch.pop("labels", None)
        batch.setdefault("use_cache", False)
        if "logits_to_keep" in inspect.signature(self.base.forward).parameters:
            batch["logits_to_keep"] = 1  # the heads need hidden states, not the (B, L, V) logits
        with self.active():
            out = self.base(**batch, output_hidden_states=True, return_dict=True)
        v, t = self._heads(out.hidden_states[-1], pos)
        return torch.sigmoid(torch.stack([v, t], dim=1).float())

    def generate(self, **kw):
        """``base.generate`` with the alarm vectors in place; alarm tokens are never generated."""
        gen = kw.get("generation_config")
        if gen is not None:
            gen = copy.deepcopy(gen)
            _add_suppressed(gen, self.alarm)
            kw["generation_config"] = gen
        with self.active():
            return self.base.generate(**kw)

    # ------------------------------------------------------------------ parameters

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """``llm`` (language model + lm_head), ``alarm``, ``heads``, ``vision`` (every other base
        parameter: vision encoder, projector, ...). Each parameter is in exactly one group."""
        llm = language_parameters(self.base)
        return {
            "llm": llm,
            "alarm": [self.alarm_vectors],
            "heads": [*self.visual_head.parameters(), *self.textual_head.parameters()],
            "vision": _parameters_outside(self.base, llm),
        }

    def freeze_vision(self) -> int:
        """Freeze the vision encoder and projector (spec 3.1: frozen in every stage); returns the
        number of parameters frozen."""
        n = 0
        for p in self.param_groups()["vision"]:
            p.requires_grad_(False)
            n += p.numel()
        return n

    # ------------------------------------------------------------------ save / load

    def _alarm_state(self) -> dict[str, torch.Tensor]:
        state = {"alarm_vectors": self.alarm_vectors}
        for name in ("visual_head", "textual_head"):
            for k, v in getattr(self, name).state_dict().items():
                state[f"{name}.{k}"] = v
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}

    def save_pretrained(self, directory: str | os.PathLike, processor=None) -> Path:
        """Base model (``save_pretrained``, safetensors), the processor if given,
        ``alarm.safetensors`` (vectors + heads) and ``alarm_config.json``."""
        from safetensors.torch import save_file

        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        self.base.save_pretrained(folder)
        if processor is not None:
            registered = alarm_ids_of(processor)
            if registered != self.alarm:
                raise ValueError(f"processor alarm ids {registered} differ from the model's {self.alarm}")
            processor.save_pretrained(folder)
        save_file(self._alarm_state(), str(folder / ALARM_WEIGHTS_FILE), metadata={"format": "pt"})
        cfg = {
            "format_version": FORMAT_VERSION,
            "visual_token": VISUAL_ALARM,
            "textual_token": TEXTUAL_ALARM,
            "visual_token_id": self.alarm.visual,
            "textual_token_id": self.alarm.textual,
            "hidden_size": self.hidden_size,
            "init": self.init,
            "param_dtype": str(self.alarm_vectors.dtype).removeprefix("torch."),
        }
        (folder / ALARM_CONFIG_FILE).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, *, base=None, **loader_kwargs) -> AlarmModel:
        """Load the base through ``AutoModelForImageTextToText`` (safetensors only,
        ``trust_remote_code`` False unless given) and restore the alarm vectors and heads.

        ``base``: a model already loaded from ``directory`` (e.g. ``HFVideoLLM(directory).model``)
        to wrap instead of loading a second copy; then no loader kwargs."""
        from safetensors.torch import load_file
        from transformers import AutoModelForImageTextToText

        folder = Path(directory)
        if not is_alarm_checkpoint(folder):
            raise ValueError(f"{folder} is not an alarm checkpoint (needs {ALARM_CONFIG_FILE} and {ALARM_WEIGHTS_FILE})")
        cfg = json.loads((folder / ALARM_CONFIG_FILE).read_text(encoding="utf-8"))
        if cfg.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{folder / ALARM_CONFIG_FILE}: format_version {cfg.get('format_version')!r}, "
                             f"this code reads {FORMAT_VERSION}")
        if (cfg.get("visual_token"), cfg.get("textual_token")) != (VISUAL_ALARM, TEXTUAL_ALARM):
            raise ValueError(f"{folder / ALARM_CONFIG_FILE}: unexpected alarm token strings")
        if base is None:
            loader_kwargs.setdefault("trust_remote_code", False)
            loader_kwargs["use_safetensors"] = True
            base = AutoModelForImageTextToText.from_pretrained(str(folder), **loader_kwargs)
        elif loader_kwargs:
            raise ValueError(f"loader kwargs {sorted(loader_kwargs)} given with an already loaded base")
        alarm = AlarmTokenIds(int(cfg["visual_token_id"]), int(cfg["textual_token_id"]))
        dtype = getattr(torch, cfg.get("param_dtype", "float32"))
        model = cls(base, alarm, init=cfg.get("init", "zeros"), param_dtype=dtype)
        if model.hidden_size != int(cfg["hidden_size"]):
            raise ValueError(f"{folder}: hidden size {model.hidden_size} != saved {cfg['hidden_size']}")
        state = load_file(str(folder / ALARM_WEIGHTS_FILE))
        expected = set(model._alarm_state())
        if set(state) != expected:
            raise ValueError(f"{folder / ALARM_WEIGHTS_FILE}: tensors {sorted(state)}, expected {sorted(expected)}")
        with torch.no_grad():
            model.alarm_vectors.copy_(state["alarm_vectors"])
            for name in ("visual_head", "textual_head"):
                getattr(model, name).load_state_dict(
                    {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(name + ".")})
        model.train(base.training)
        return model


def is_alarm_checkpoint(directory: str | os.PathLike) -> bool:
    folder = Path(directory)
    if not ((folder / ALARM_CONFIG_FILE).is_file() and (folder / ALARM_WEIGHTS_FILE).is_file()):
        return False
    try:
        return "format_version" in json.loads((folder / ALARM_CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


__all__ = [
    "ALARM_CONFIG_FILE", "ALARM_WEIGHTS_FILE", "AlarmModel", "AlarmOutput", "AlarmTokenIds", "IGNORE_INDEX",
    "TEXTUAL_ALARM", "VISUAL_ALARM", "alarm_ids_of", "alarm_positions_of", "embeddings_tied",
    "end_of_turn_id_of", "insert_alarm_tokens", "is_alarm_checkpoint", "language_parameters", "place_alarms",
    "prepare_alarm_batch", "register_alarm_tokens", "suppress_alarm_generation", "vision_parameters",
    "visual_token_ids_of",
]
