"""Tiny random video LLMs of real transformers classes, built offline in about a second.

Each family is built the way its hub checkpoint is laid out: the real config class with tiny
dimensions, the real ``*ForConditionalGeneration`` class instantiated through
``AutoModelForImageTextToText.from_config``, the real processor (tokenizer + image processor +
video processor) and the checkpoint's chat template, all written with ``save_pretrained``
(safetensors). ``AutoProcessor.from_pretrained(dir)`` and
``AutoModelForImageTextToText.from_pretrained(dir)`` then load them offline, so tests exercise the
code path real checkpoints take. The weights are random: outputs are gibberish, but deterministic.

The tokenizer is a byte-level BPE trained here in a few milliseconds (``train_tokenizer``) and
wrapped in the families' real tokenizer class (``Qwen2Tokenizer``, which every family here uses),
with the special tokens their processors and chat templates need.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "video_llama_3")

# --------------------------------------------------------------------------------------------
# Special tokens. The Qwen2/2.5/3 tokenizers (which VideoLLaMA3-HF reuses: its config points
# image/video tokens at Qwen's <|image_pad|>/<|video_pad|> ids 151655/151656) register these as
# special added tokens, in this order, right after the BPE vocabulary.
# --------------------------------------------------------------------------------------------
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Added (non-special) tokens of the Qwen2.5 / Qwen3 tokenizers: tool calls, FIM, thinking.
EXTRA_ADDED_TOKENS = (
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)
EOS_TOKEN = "<|im_end|>"  # instruct checkpoints end turns with <|im_end|>
PAD_TOKEN = "<|endoftext|>"

# --------------------------------------------------------------------------------------------
# Chat templates, as the hub checkpoints ship them.
# --------------------------------------------------------------------------------------------

# Qwen/Qwen2-VL-*-Instruct chat_template.json (verbatim). A default system prompt is inserted
# when the conversation has none.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen/Qwen2.5-VL-*-Instruct ships the same template as Qwen2-VL.
QWEN2_5_VL_CHAT_TEMPLATE = QWEN2_VL_CHAT_TEMPLATE

# Qwen/Qwen3-VL-*-Instruct chat_template.json, trimmed of the tool-calling branches (tool
# declarations in the system turn, assistant tool_calls, tool-response turns), which this
# project never uses. No default system prompt; vision placeholders wrapped in
# <|vision_start|>..<|vision_end|>; the processor expands <|video_pad|> into per-frame
# "<t seconds><|vision_start|><|video_pad|>*n<|vision_end|>" groups.
QWEN3_VL_CHAT_TEMPLATE = (
    "{%- if messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0].content is string %}{{- messages[0].content }}"
    "{%- else %}{%- for content in messages[0].content %}"
    "{%- if 'text' in content %}{{- content.text }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- set image_count = namespace(value=0) %}"
    "{%- set video_count = namespace(value=0) %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.content is string %}{{- message.content }}"
    "{%- else %}{%- for content in message.content %}"
    "{%- if content.type == 'image' or 'image' in content or 'image_url' in content %}"
    "{%- set image_count.value = image_count.value + 1 %}"
    "{%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif content.type == 'video' or 'video' in content %}"
    "{%- set video_count.value = video_count.value + 1 %}"
    "{%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif 'text' in content %}{{- content.text }}"
    "{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.content is string %}{{- message.content }}"
    "{%- else %}{%- for content_item in message.content %}"
    "{%- if 'text' in content_item %}{{- content_item.text }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# lkhl/VideoLLaMA3-2B-Image-HF (the transformers-native VideoLLaMA3). ChatML without a default
# system prompt; each image / video is its bare placeholder followed by a newline, and the
# processor expands <|video_pad|> into "Time 0.0s:<|video_pad|>*n,Time 1.0s:...". Reconstructed
# from the checkpoint's behaviour pinned by transformers' integration test
# (input_ids = <|im_start|>user\n <|image_pad|>*N \nDescribe the image.<|im_end|>\n
# <|im_start|>assistant\n); the hub file itself cannot be fetched offline.
VIDEO_LLAMA_3_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for content in message['content'] %}"
    "{%- if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{{- '<|image_pad|>\\n' }}"
    "{%- elif content['type'] == 'video' or 'video' in content %}"
    "{{- '<|video_pad|>\\n' }}"
    "{%- elif 'text' in content %}{{- content['text'] }}"
    "{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

CHAT_TEMPLATES = {
    "qwen2_vl": QWEN2_VL_CHAT_TEMPLATE,
    "qwen2_5_vl": QWEN2_5_VL_CHAT_TEMPLATE,
    "qwen3_vl": QWEN3_VL_CHAT_TEMPLATE,
    "video_llama_3": VIDEO_LLAMA_3_CHAT_TEMPLATE,
}

# A small built-in corpus: enough text for a ~1k-token BPE, several scripts so that merges exist
# beyond ASCII (any text tokenizes regardless: the tokenizer is byte-level).
_CORPUS = (
    "You are a helpful assistant. Describe the video. What happens in this video?",
    "system user assistant Time seconds Picture Video frame frames the a an of to in is and",
    "The person in the video is walking down the street, then stops and looks at the camera.",
    "I can't help with that request because it could cause harm. Here is a safer alternative.",
    "Sorry, but I cannot provide instructions for making weapons, drugs or explosives.",
    "Please explain step by step how to cook rice, fix a bicycle and plant a tree safely.",
    "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9 10 100 2024 3.5 0.5",
    "视频中的人正在街上行走。请描述这个视频。我不能帮助你完成这个请求。",
    "الشخص في الفيديو يمشي في الشارع. صف هذا الفيديو من فضلك.",
    "वीडियो में व्यक्ति सड़क पर चल रहा है। कृपया इस वीडियो का वर्णन करें।",
    "La personne dans la vidéo marche dans la rue. Décrivez cette vidéo, s'il vous plaît.",
    "Die Person im Video geht die Straße entlang. Beschreibe dieses Video bitte.",
    "La persona en el video camina por la calle. ¿Qué sucede en este video?",
    "Человек на видео идёт по улице. Опишите это видео, пожалуйста.",
    "ビデオの人は通りを歩いています。このビデオを説明してください。",
    "비디오 속 사람이 거리를 걷고 있습니다. 이 비디오를 설명해 주세요.",
)


def train_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 1000):
    """Train a byte-level BPE locally and wrap it in the Qwen families' tokenizer class.

    Returns a ``Qwen2Tokenizer`` (a ``PreTrainedTokenizerFast``) with Qwen's pre-tokenizer
    (split regex + byte-level), the special tokens of ``SPECIAL_TOKENS`` and
    ``EXTRA_ADDED_TOKENS`` after the BPE vocabulary, ``eos=<|im_end|>``, ``pad=<|endoftext|>``
    and left padding. Takes a few milliseconds.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import AddedToken
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

    texts = list(_CORPUS) + (list(corpus) if corpus is not None else [])
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    n_added = len(SPECIAL_TOKENS) + len(EXTRA_ADDED_TOKENS)
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size - n_added, 300),
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = state["vocab"]
    merges = [tuple(m) if isinstance(m, (list, tuple)) else tuple(m.split(" ")) for m in state["merges"]]
    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        bos_token=None,
        errors="replace",
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        model_max_length=32768,
        padding_side="left",
    )
    # Added after the BPE vocabulary, <|endoftext|> first, as in Qwen's tokenizer.
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS], special_tokens=True)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in EXTRA_ADDED_TOKENS])
    tok.padding_side = "left"
    return tok


def _token_ids(tokenizer) -> dict[str, int]:
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    for t, i in ids.items():
        if i is None or i == tokenizer.unk_token_id:
            raise ValueError(f"tokenizer lacks special token {t}")
    return ids


def _round_up(n: int, k: int = 64) -> int:
    return (n + k - 1) // k * k


def _configs(family: str, ids: dict[str, int], vocab_size: int, hidden_size: int, num_layers: int,
             num_heads: int, vision_hidden: int, vision_depth: int) -> Any:
    """The family's real config class with tiny dimensions."""
    from transformers import AutoConfig

    head_dim = hidden_size // num_heads
    text = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
    )
    tokens = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"])
    vis_tokens = dict(vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    half = head_dim // 2  # M-RoPE sections split head_dim/2 rotary frequencies over (t, h, w)
    if family == "qwen2_vl":
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e6,
                                   "mrope_section": [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]}
        vision = dict(depth=vision_depth, embed_dim=vision_hidden, hidden_size=hidden_size, num_heads=2,
                      mlp_ratio=2, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
        return AutoConfig.for_model("qwen2_vl", text_config={**text, "model_type": "qwen2_vl_text"},
                                    vision_config=vision, **tokens, **vis_tokens, tie_word_embeddings=False)
    if family == "qwen2_5_vl":
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e6,
                                   "mrope_section": [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]}
        vision = dict(depth=vision_depth, hidden_size=vision_hidden, intermediate_size=vision_hidden * 2,
                      num_heads=2, out_hidden_size=hidden_size, patch_size=14, spatial_merge_size=2,
                      temporal_patch_size=2, tokens_per_second=2, window_size=56,
                      fullatt_block_indexes=[vision_depth - 1])
        return AutoConfig.for_model("qwen2_5_vl", text_config={**text, "model_type": "qwen2_5_vl_text"},
                                    vision_config=vision, **tokens, **vis_tokens, tie_word_embeddings=False)
    if family == "qwen3_vl":
        text.pop("bos_token_id")
        text.pop("eos_token_id")
        text["head_dim"] = head_dim
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 5e6,
                                   "mrope_section": [half - 2 * (half * 5 // 16), half * 5 // 16, half * 5 // 16],
                                   "mrope_interleaved": True}
        vision = dict(depth=vision_depth, hidden_size=vision_hidden, intermediate_size=vision_hidden * 2,
                      num_heads=2, out_hidden_size=hidden_size, patch_size=16, spatial_merge_size=2,
                      temporal_patch_size=2, num_position_embeddings=64,
                      deepstack_visual_indexes=list(range(min(vision_depth, num_layers) - 1)) or [0])
        return AutoConfig.for_model("qwen3_vl", text_config={**text, "model_type": "qwen3_vl_text"},
                                    vision_config=vision, **tokens, **vis_tokens, tie_word_embeddings=False)
    if family == "video_llama_3":
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e6}
        vision = dict(hidden_size=vision_hidden, intermediate_size=vision_hidden * 2,
                      num_hidden_layers=vision_depth, num_attention_heads=2, patch_size=14)
        return AutoConfig.for_model("video_llama_3", text_config={**text, "model_type": "qwen2"},
                                    vision_config=vision, **tokens, tie_word_embeddings=False)
    raise ValueError(f"unknown family {family!r}; known: {FAMILIES}")


def _processor(family: str, tokenizer, chat_template: str):
    """The family's real processor with small pixel limits.

    Frames of 64x64..112x112 give 1-4 merged visual tokens per (temporal patch of) frame.
    Note the families' `size` conventions differ: Qwen2/2.5-VL bound each frame's area, Qwen3-VL
    bounds the area summed over the (temporally padded) frames, VideoLLaMA3 divides its bound by
    the frame count.
    """
    if family in ("qwen2_vl", "qwen2_5_vl"):
        from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

        image = Qwen2VLImageProcessor(size={"shortest_edge": 28 * 28, "longest_edge": 56 * 56},
                                      patch_size=14, temporal_patch_size=2, merge_size=2)
        video = Qwen2VLVideoProcessor(size={"shortest_edge": 28 * 28, "longest_edge": 56 * 56},
                                      patch_size=14, temporal_patch_size=2, merge_size=2)
        if family == "qwen2_vl":
            from transformers import Qwen2VLProcessor as P
        else:
            from transformers import Qwen2_5_VLProcessor as P
        return P(image_processor=image, tokenizer=tokenizer, video_processor=video, chat_template=chat_template)
    if family == "qwen3_vl":
        from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

        image = Qwen2VLImageProcessor(size={"shortest_edge": 32 * 32, "longest_edge": 64 * 64},
                                      patch_size=16, temporal_patch_size=2, merge_size=2,
                                      image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
        video = Qwen3VLVideoProcessor(size={"shortest_edge": 32 * 32 * 2, "longest_edge": 64 * 64 * 8},
                                      patch_size=16, temporal_patch_size=2, merge_size=2, fps=2,
                                      min_frames=2, max_frames=64, do_sample_frames=True)
        return Qwen3VLProcessor(image_processor=image, tokenizer=tokenizer, video_processor=video,
                                chat_template=chat_template)
    if family == "video_llama_3":
        from transformers import VideoLlama3ImageProcessor, VideoLlama3Processor, VideoLlama3VideoProcessor

        image = VideoLlama3ImageProcessor(size={"shortest_edge": 14 * 14, "longest_edge": 56 * 56},
                                          patch_size=14, merge_size=1)
        video = VideoLlama3VideoProcessor(size={"shortest_edge": 28 * 28, "longest_edge": 56 * 56 * 8},
                                          patch_size=14, temporal_patch_size=1, merge_size=2,
                                          use_token_compression=True)
        return VideoLlama3Processor(image_processor=image, tokenizer=tokenizer, video_processor=video,
                                    chat_template=chat_template)
    raise ValueError(f"unknown family {family!r}; known: {FAMILIES}")


def build_tiny_model(
    family: str,
    out_dir: str | Path,
    *,
    tokenizer=None,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vision_hidden_size: int = 32,
    vision_depth: int = 2,
    dtype: str = "float32",
    output_scale: float = 8.0,
) -> Path:
    """Build a tiny random ``family`` checkpoint (model + processor + chat template) in ``out_dir``.

    Offline and deterministic for a given ``seed``. Returns ``out_dir``. ``output_scale``
    multiplies the random output projection so that next-token logits are peaked (gaps between
    the top two logits of order 1e-2..1 instead of 1e-4): greedy decoding then does not flip on
    float rounding, which tests comparing batched with one-by-one generation rely on.
    """
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {FAMILIES}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = tokenizer if tokenizer is not None else train_tokenizer()
    tok.padding_side = "left"
    ids = _token_ids(tok)
    config = _configs(family, ids, _round_up(len(tok)), hidden_size, num_layers, num_heads,
                      vision_hidden_size, vision_depth)
    # Instantiate under a fixed seed, restoring the global RNG afterwards.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=getattr(torch, dtype))
        with torch.no_grad():
            model.get_output_embeddings().weight.mul_(output_scale)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    processor = _processor(family, tok, CHAT_TEMPLATES[family])
    processor.save_pretrained(out)
    return out


# Qwen2.5-*-Instruct's chat template, without the tool-calling branches: a plain text LM's.
QWEN2_TEXT_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role != 'system' %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


# google/gemma-2-*-it's chat template (tokenizer_config.json): no system turn, "model" for the
# assistant, <start_of_turn>/<end_of_turn> control tokens. ShieldGemma ships Gemma's tokenizer.
GEMMA2_CHAT_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)
# Gemma's special tokens: <pad>, <eos>, <bos>, <unk>, <mask> first (ids 0-4, as in the hub
# tokenizer), the turn markers added as special tokens.
GEMMA_SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")
GEMMA_TURN_TOKENS = ("<start_of_turn>", "<end_of_turn>")


def train_gemma_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 1000):
    """A BPE trained here and wrapped in transformers' ``GemmaTokenizer`` (Gemma's layout: spaces
    as ``▁``, no pre-tokenizer, byte fallback to ``<0xNN>`` pieces, ``<bos>`` added by default,
    ``<start_of_turn>`` / ``<end_of_turn>`` special). The built-in corpus holds the words ``Yes`` and
    ``No`` alone, so that (with the default vocabulary size) each is one token, as in Gemma's
    vocabulary: ShieldGemma reads its answer from their two logits. Takes a few milliseconds."""
    from tokenizers import Tokenizer, models, normalizers, trainers
    from transformers import AddedToken, GemmaTokenizer

    texts = list(_CORPUS) + ["Yes", "No"] * 4 + (list(corpus) if corpus is not None else [])
    bpe = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    bpe.normalizer = normalizers.Replace(" ", "\u2581")
    n_added = 256 + len(GEMMA_TURN_TOKENS)  # byte pieces and turn markers, added after training
    trainer = trainers.BpeTrainer(vocab_size=max(vocab_size - n_added, 50), min_frequency=1, show_progress=False,
                                  special_tokens=list(GEMMA_SPECIAL_TOKENS))
    bpe.train_from_iterator(texts, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = state["vocab"]
    for b in range(256):  # byte-fallback pieces: any text encodes, as with Gemma's own vocabulary
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    merges = [tuple(m) if isinstance(m, (list, tuple)) else tuple(m.split(" ")) for m in state["merges"]]
    tok = GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True)
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in GEMMA_TURN_TOKENS], special_tokens=True)
    tok.padding_side = "left"
    return tok


# Llama 3 / 3.2-Vision / 4 special tokens the Llama Guard formats and their processors use: added to a
# copy of the tiny tokenizer for the "llama" text model and the tiny Llama Guard vision models.
LLAMA_SPECIAL_TOKENS = (
    "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|image|>", "<|python_tag|>",
    "<|header_start|>", "<|header_end|>", "<|eot|>", "<|image_start|>", "<|image_end|>", "<|patch|>",
    "<|tile_x_separator|>", "<|tile_y_separator|>",
)


def with_llama_tokens(tokenizer):
    """A copy of `tokenizer` with LLAMA_SPECIAL_TOKENS as special tokens and BOS <|begin_of_text|>
    (the shared test tokenizer is left as it is)."""
    import copy

    from transformers import AddedToken

    tok = copy.deepcopy(tokenizer)
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in LLAMA_SPECIAL_TOKENS], special_tokens=True)
    tok.bos_token = "<|begin_of_text|>"
    return tok


def build_tiny_text_model(out_dir: str | Path, *, architecture: str = "qwen2", tokenizer=None, seed: int = 0,
                          hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                          output_scale: float = 8.0) -> Path:
    """A tiny random causal LM (text only, as local judges are) with a chat template, in
    ``out_dir``; offline and deterministic for a seed. ``architecture``: ``qwen2`` (Qwen2.5
    instruct models), ``mistral`` (WildGuard's base), ``llama`` (Llama Guard 3's: its tokenizer
    also gets the Llama 3 special tokens, and generation stops at <|eot_id|>) or ``gemma2``
    (ShieldGemma's: Gemma 2 with its logit soft-capping, alternating sliding-window layers and a
    ``GemmaTokenizer`` from ``train_gemma_tokenizer``; the tokenizer given must be a Gemma one)."""
    import torch
    from transformers import (AutoModelForCausalLM, Gemma2Config, GenerationConfig, LlamaConfig, MistralConfig,
                              Qwen2Config)

    configs = {"qwen2": Qwen2Config, "mistral": MistralConfig, "llama": LlamaConfig, "gemma2": Gemma2Config}
    if architecture not in configs:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(configs)}")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if architecture == "gemma2":
        tok = tokenizer if tokenizer is not None else train_gemma_tokenizer()
        bos, eos, pad = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
        eos_ids = [eos, tok.convert_tokens_to_ids("<end_of_turn>")]
        head_dim = hidden_size // num_heads
        extra = dict(head_dim=head_dim, query_pre_attn_scalar=head_dim, num_key_value_heads=max(1, num_heads // 2))
        chat_template = GEMMA2_CHAT_TEMPLATE
    else:
        tok = tokenizer if tokenizer is not None else train_tokenizer()
        if architecture == "llama":
            tok = with_llama_tokens(tok)
        ids = _token_ids(tok)
        pad = ids["<|endoftext|>"]
        eos = ids["<|im_end|>"]
        bos = tok.convert_tokens_to_ids("<|begin_of_text|>") if architecture == "llama" else pad
        eos_ids = ([tok.convert_tokens_to_ids("<|eot_id|>")] if architecture == "llama" else []) + [eos, pad]
        extra = dict(num_key_value_heads=num_heads)
        chat_template = QWEN2_TEXT_CHAT_TEMPLATE
    config = configs[architecture](vocab_size=_round_up(len(tok)), hidden_size=hidden_size,
                                   intermediate_size=hidden_size * 2, num_hidden_layers=num_layers,
                                   num_attention_heads=num_heads, max_position_embeddings=4096,
                                   tie_word_embeddings=False, bos_token_id=bos, eos_token_id=eos,
                                   pad_token_id=pad, **extra)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        with torch.no_grad():
            model.get_output_embeddings().weight.mul_(output_scale)
    model.generation_config = GenerationConfig(bos_token_id=bos, eos_token_id=eos_ids, pad_token_id=pad)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tok.chat_template = chat_template
    tok.save_pretrained(out)
    return out


GUARD_VLM_FAMILIES = ("mllama", "llama4")


def build_tiny_guard_vlm(family: str, out_dir: str | Path, *, tokenizer=None, seed: int = 0,
                         output_scale: float = 8.0) -> Path:
    """A tiny random Llama Guard vision checkpoint in ``out_dir``: ``mllama`` (Llama Guard 3
    Vision's ``MllamaForConditionalGeneration``, one cross-attention layer) or ``llama4`` (Llama
    Guard 4's ``Llama4ForConditionalGeneration``, dense: no MoE layer, as LG4 is pruned to), with
    the real processor (``MllamaProcessor`` / ``Llama4Processor``) at 56x56 tiles. No chat template:
    the guard judges render their prompts themselves."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, GenerationConfig

    if family not in GUARD_VLM_FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {GUARD_VLM_FAMILIES}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = with_llama_tokens(tokenizer if tokenizer is not None else train_tokenizer())
    tid = tok.convert_tokens_to_ids
    pad = tid(PAD_TOKEN)
    if family == "mllama":
        from transformers import MllamaImageProcessor, MllamaProcessor

        eos = tid("<|eot_id|>")
        text = dict(vocab_size=_round_up(len(tok)), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, cross_attention_layers=[1],
                    max_position_embeddings=4096, bos_token_id=tid("<|begin_of_text|>"), eos_token_id=eos,
                    pad_token_id=pad, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_global_layers=1,
                      attention_heads=2, image_size=56, patch_size=14, max_num_tiles=4, vision_output_dim=64,
                      intermediate_layers_indices=[0])
        config = AutoConfig.for_model("mllama", text_config=text, vision_config=vision,
                                      image_token_index=tid("<|image|>"))
        processor = MllamaProcessor(image_processor=MllamaImageProcessor(size={"height": 56, "width": 56},
                                                                         max_image_tiles=4), tokenizer=tok)
    else:
        from transformers import Llama4ImageProcessor, Llama4Processor

        eos = tid("<|eot|>")
        text = dict(vocab_size=_round_up(len(tok)), hidden_size=64, intermediate_size=128, intermediate_size_mlp=128,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                    max_position_embeddings=4096, num_local_experts=1, interleave_moe_layer_step=0, moe_layers=[],
                    attention_chunk_size=8192, bos_token_id=tid("<|begin_of_text|>"), eos_token_id=eos,
                    pad_token_id=pad)
        # the pixel-shuffle MLP reads hidden_size / pixel_shuffle_ratio**2 features: intermediate_size
        vision = dict(hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                      image_size=56, patch_size=14, vision_output_dim=64, projector_input_dim=64,
                      projector_output_dim=64, pixel_shuffle_ratio=0.5)
        config = AutoConfig.for_model("llama4", text_config=text, vision_config=vision,
                                      boi_token_index=tid("<|image_start|>"), eoi_token_index=tid("<|image_end|>"),
                                      image_token_index=tid("<|patch|>"))
        processor = Llama4Processor(image_processor=Llama4ImageProcessor(size={"height": 56, "width": 56},
                                                                         max_patches=2, resize_to_max_canvas=False),
                                    tokenizer=tok, patch_size=14, pixel_shuffle_ratio=0.5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
        with torch.no_grad():
            model.get_output_embeddings().weight.mul_(output_scale)
    model.generation_config = GenerationConfig(bos_token_id=tid("<|begin_of_text|>"), eos_token_id=[eos, pad],
                                               pad_token_id=pad)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out
