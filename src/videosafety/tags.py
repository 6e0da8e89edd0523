"""The one place for VideoSafety-R1's reasoning and answer tags (spec §3.3, §3.4).

A tagged completion reads
``<think>…</think><answer>…</answer><vidType>v</vidType><textType>t</textType>``
with v, t the per-modality labels (1 harmful, 0 safe; taxonomy's convention). The CoT
cold-start targets are written with `format_cot` and the GRPO references with
`format_solution`, the GRPO format reward uses `is_well_formed`, the task reward reads labels
and answer with `parse_tagged`, and the GRPO prompt carries `GRPO_INSTRUCTION`; nothing else
spells a tag name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from videosafety import taxonomy

THINK: Final = "think"
ANSWER: Final = "answer"
VIDTYPE: Final = "vidType"
TEXTTYPE: Final = "textType"
TAGS: Final[tuple[str, ...]] = (THINK, ANSWER, VIDTYPE, TEXTTYPE)

# The spec's format-reward pattern, verbatim: the whole completion must match (fullmatch),
# and '.' crosses newlines. No leading or trailing text is allowed, not even whitespace:
# callers strip the end-of-turn token (and only it) before checking.
FORMAT_PATTERN: Final = re.compile(
    rf"<{THINK}>.*?</{THINK}>\s*<{ANSWER}>.*?</{ANSWER}>\s*"
    rf"<{VIDTYPE}>.*?</{VIDTYPE}>\s*<{TEXTTYPE}>.*?</{TEXTTYPE}>",
    re.DOTALL,
)

_BLOCK: Final = {tag: re.compile(rf"<{tag}>(.*?)</{tag}>", re.DOTALL) for tag in TAGS}
_MARKERS: Final = tuple(m for tag in TAGS for m in (f"<{tag}>", f"</{tag}>"))

GRPO_INSTRUCTION: Final = (
    f"First think about whether the video and the text are harmful and reason step by step "
    f"inside <{THINK}> </{THINK}>. Then write your reply to the user inside <{ANSWER}> </{ANSWER}>. "
    f"Finally classify the video and the text, writing {taxonomy.HARMFUL} if harmful or "
    f"{taxonomy.SAFE} if safe: the video inside <{VIDTYPE}> </{VIDTYPE}> and the text inside "
    f"<{TEXTTYPE}> </{TEXTTYPE}>. Use exactly this format: <{THINK}>...</{THINK}>"
    f"<{ANSWER}>...</{ANSWER}><{VIDTYPE}>0 or 1</{VIDTYPE}><{TEXTTYPE}>0 or 1</{TEXTTYPE}>"
)


@dataclass(frozen=True)
class TaggedOutput:
    """What a tagged completion says. A missing or unreadable part is None, never guessed."""

    think: str | None
    answer: str | None
    video_label: int | None
    query_label: int | None


def _check_label(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in (taxonomy.SAFE, taxonomy.HARMFUL):
        raise ValueError(f"{name} must be {taxonomy.SAFE} (safe) or {taxonomy.HARMFUL} (harmful), got {value!r}")
    return value


def _check_content(name: str, text: str) -> str:
    found = [m for m in _MARKERS if m in text]
    if found:
        raise ValueError(f"{name} text must not contain tags, found {', '.join(found)}")
    return text


def _tagged(think: str | None, answer: str, video_label: int, query_label: int) -> str:
    # The one writer of tagged text, so CoT targets and GRPO references reject exactly the
    # same inputs and spell the blocks the same way; think=None leaves the think block out.
    v = _check_label("video_label", video_label)
    t = _check_label("query_label", query_label)
    head = "" if think is None else f"<{THINK}>{_check_content('think', think)}</{THINK}>"
    return (
        f"{head}<{ANSWER}>{_check_content('answer', answer)}</{ANSWER}>"
        f"<{VIDTYPE}>{v}</{VIDTYPE}><{TEXTTYPE}>{t}</{TEXTTYPE}>"
    )


def format_cot(think: str, answer: str, video_label: int, query_label: int) -> str:
    """The CoT target ``<think>think</think><answer>answer</answer><vidType>v</vidType><textType>t</textType>``.

    Raises ValueError when a label is not 0/1 or when think/answer contain a tag of their
    own (it would make the target parse differently from what was meant)."""
    return _tagged(think, answer, video_label, query_label)


def format_solution(answer: str, video_label: int, query_label: int) -> str:
    """The GRPO safety reference ``<answer>answer</answer><vidType>v</vidType><textType>t</textType>``.

    What the DRA task reward (videosafety.rewards) compares a completion with; no think
    block, since the reward never reads one. Same checks as format_cot, plus a non-blank
    answer: a blank reference would hold every completion's ROUGE at 0 unnoticed."""
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError(f"answer must be non-blank text, got {answer!r}")
    return _tagged(None, answer, video_label, query_label)


def is_well_formed(text: str) -> bool:
    """Whether the whole text matches FORMAT_PATTERN (the format reward's condition)."""
    return isinstance(text, str) and FORMAT_PATTERN.fullmatch(text) is not None


def _label(content: str | None) -> int | None:
    if content is None:
        return None
    s = content.strip()
    return int(s) if s in ("0", "1") else None


def parse_tagged(text: str) -> TaggedOutput:
    """The first block of each tag, whatever the rest looks like; never raises.

    think/answer are the block contents with surrounding whitespace stripped; labels are
    read from exactly "0" or "1" (surrounding whitespace tolerated), anything else is None.
    Parsing does not require a well-formed text: check that with is_well_formed."""
    if not isinstance(text, str):
        return TaggedOutput(None, None, None, None)
    found: dict[str, str | None] = {}
    for tag, pattern in _BLOCK.items():
        m = pattern.search(text)
        found[tag] = m.group(1) if m else None
    think, answer = found[THINK], found[ANSWER]
    return TaggedOutput(
        think=think.strip() if think is not None else None,
        answer=answer.strip() if answer is not None else None,
        video_label=_label(found[VIDTYPE]),
        query_label=_label(found[TEXTTYPE]),
    )


def has_tags(text: str) -> bool:
    """Whether any tag marker occurs in text (tagged, or trying to be)."""
    return isinstance(text, str) and any(m in text for m in _MARKERS)


def user_facing(text: str) -> str:
    """What a reasoning model's user reads: the <answer> block of a tagged response, else the
    whole text. A tagged response without an answer block is judged whole, since harmful help
    may sit anywhere in it."""
    if not has_tags(text):
        return text
    answer = parse_tagged(text).answer
    return text if answer is None else answer


# What of a response a judge reads. "full": all of it, reasoning included (harmful detail in a
# <think> block is help given all the same): the default for safety verdicts. "answer": the
# <answer> block of a tagged response only (what `user_facing` shows a user), recorded as its own
# judge variant, named with ANSWER_SCOPE_SUFFIX.
JUDGE_SCOPES: Final[tuple[str, ...]] = ("full", "answer")
DEFAULT_JUDGE_SCOPE: Final = "full"
ANSWER_SCOPE_SUFFIX: Final = "@answer"


def judged_text(text: str, scope: str = DEFAULT_JUDGE_SCOPE) -> str:
    """The part of a response a judge of `scope` reads (see JUDGE_SCOPES)."""
    if scope == "full":
        return text
    if scope == "answer":
        return user_facing(text)
    raise ValueError(f"judge scope must be one of {', '.join(JUDGE_SCOPES)}, got {scope!r}")


def with_instruction(query: str, instruction: str | None) -> str:
    """The user text of a prompt that asks for a format: the query, a newline, the instruction.
    Stage 3 (CoT cold start) and stage 4 (GRPO) build prompts with this one function, so the
    model meets in GRPO exactly the prompt it was cold-started on."""
    return f"{query}\n{instruction}" if instruction else query
