"""Task rewards of the reference recipe's general-data problem types (spec §3.4).

General video QA is mixed into GRPO so that safety training does not erode ordinary
answering. Each function scores a completion against a solution in [0, 1]; both sides are
read with `extract_answer`, so a solution may be plain ("B") or tagged ("<answer>B</answer>").
A blank or unreadable solution raises ValueError: it is a data bug, and scoring it 0 would
quietly teach the model nothing from that prompt.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from typing import Final

from videosafety import tags
from videosafety.rewards.rouge import rouge, tokenize


def extract_answer(text: str) -> str:
    """The <answer> block's content (stripped) when there is one, else the whole text stripped."""
    if not isinstance(text, str):
        return ""
    answer = tags.parse_tagged(text).answer
    return answer if answer is not None else text.strip()


def _solution(solution: str, kind: str) -> str:
    ref = extract_answer(solution)
    if not ref:
        raise ValueError(f"{kind} solution is blank: {solution!r}")
    return ref


# "B", "(B)", "B." and "B)" all name option B; anything longer ("B. Paris") is compared as
# a whole string, since guessing which letter a sentence means is not exact matching.
_OPTION: Final = re.compile(r"\(?([A-Za-z])\)?\.?")


def _option(text: str) -> str:
    m = _OPTION.fullmatch(text)
    return m.group(1).upper() if m else text


def multiple_choice_reward(completion: str, solution: str) -> float:
    """1.0 when the answer names the solution's option (letter forms above), else exact match."""
    return 1.0 if _option(extract_answer(completion)) == _option(_solution(solution, "multiple-choice")) else 0.0


_NUMBER: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?", re.IGNORECASE)
_THOUSANDS: Final = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")


def parse_number(text: str) -> float | None:
    """A plain decimal number ("3", "-2.50", "1e3", "1,234.5", full-width digits), else None.

    Stricter than float(): no "nan"/"inf", no "1_000", no units or words around it, since a
    completion that needs guessing at is not a numerical answer."""
    s = unicodedata.normalize("NFKC", text).strip().replace("\u2212", "-")
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    if not _NUMBER.fullmatch(s):
        return None
    value = float(s)
    return value if math.isfinite(value) else None


def numerical_reward(completion: str, solution: str) -> float:
    """1.0 when the answer equals the solution after rounding both to 2 decimals; unparsable -> 0."""
    ref = parse_number(_solution(solution, "numerical"))
    if ref is None:
        raise ValueError(f"numerical solution is not a number: {solution!r}")
    pred = parse_number(extract_answer(completion))
    return 1.0 if pred is not None and round(pred, 2) == round(ref, 2) else 0.0


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance between two token sequences (unit insert/delete/substitute)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def ocr_reward(completion: str, solution: str) -> float:
    """1 − WER, clipped to [0, 1]; WER = word edit distance / reference words.

    Words are rouge.tokenize tokens, so Chinese/Japanese/Korean are compared per character
    (a whitespace split would make a whole CJK line one "word"), and case and punctuation
    do not count."""
    ref = tokenize(_solution(solution, "OCR"))
    if not ref:
        raise ValueError(f"OCR solution has no words: {solution!r}")
    wer = edit_distance(tokenize(extract_answer(completion)), ref) / len(ref)
    return min(1.0, max(0.0, 1.0 - wer))


def free_form_reward(completion: str, solution: str) -> float:
    """ROUGE (mean of ROUGE-1/2/L F-measures) of the answer against the solution."""
    return rouge(extract_answer(completion), _solution(solution, "free-form"))
