"""ROUGE for the safety task reward, in all ten benchmark languages (spec §3.4).

The usual ROUGE packages tokenize with an ASCII pattern such as ``[a-z0-9]+``: a Chinese,
Arabic, Hindi or Russian answer becomes zero tokens and scores 0 against anything, which
would silently remove the ROUGE term from the reward for most of the benchmark. Here text is
NFKC-normalised and case-folded, then
- Han ideographs, Hiragana, Katakana and Hangul are one token per character;
- every other script is split at Unicode word boundaries (letters, digits and combining
  marks), so punctuation and spaces separate tokens and are dropped.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Final

# One token per character for scripts written without spaces (Chinese, Japanese): a word
# segmenter would be a model-sized dependency, and character n-grams are the usual ROUGE
# unit for them. Korean does put spaces between words, but each spaced word (eojeol) fuses
# a stem with its particles and endings (학교에 / 학교는 / 학교를), so whole-word matching
# would give paraphrases that differ only in a particle no overlap at all; per-syllable
# tokens keep that partial credit without a morphological analyser, and ROUGE-2/L still
# reward the right order.
_CHAR_SCRIPTS: Final = (
    "\u3005\u3007"  # 々 iteration mark, 〇 ideographic zero
    "\u3040-\u309f"  # Hiragana
    "\u30a0-\u30ff"  # Katakana (NFKC has already widened half-width kana)
    "\u31f0-\u31ff"  # Katakana phonetic extensions
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\u1100-\u11ff"  # Hangul jamo (NFKC turns compatibility jamo into these)
    "\ua960-\ua97f"  # Hangul jamo extended A
    "\uac00-\ud7af"  # Hangul syllables
    "\ud7b0-\ud7ff"  # Hangul jamo extended B
    "\U00020000-\U0003134f"  # CJK extensions B-G and compatibility supplement
)


def _mark_class() -> str:
    # `re`'s \w is str.isalnum() plus "_", which leaves out combining marks: it splits
    # हिन्दी into ह / न / द and strips Arabic harakat out of words (checked on CPython 3.11).
    # Python's `re` has no \p{M}, and the `regex` module would be a new dependency, so the
    # mark class is read from unicodedata once. Planes 0, 1 and 14 hold every assigned mark
    # (2 and 3 are ideographs only), which keeps the scan to a few hundredths of a second.
    ranges: list[tuple[int, int]] = []
    for lo, hi in ((0, 0x1FFFF), (0xE0000, min(0xE0FFF, sys.maxunicode))):
        for cp in range(lo, hi + 1):
            if unicodedata.category(chr(cp)).startswith("M"):
                if ranges and ranges[-1][1] == cp - 1:
                    ranges[-1] = (ranges[-1][0], cp)
                else:
                    ranges.append((cp, cp))
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)


# A word is a run of word characters or marks, minus "_" (punctuation, in every language
# here) and minus the per-character scripts, which the first alternative takes one at a time.
_TOKEN: Final = re.compile(rf"[{_CHAR_SCRIPTS}]|(?:[^\W_{_CHAR_SCRIPTS}]|[{_mark_class()}])+")

# Joiners are invisible shaping hints (ZWJ/ZWNJ inside Devanagari conjuncts, BOM, word
# joiner): the same word typed with and without them must be one token, not two words.
_INVISIBLE: Final = dict.fromkeys(map(ord, "\u200c\u200d\u2060\ufeff"))


def tokenize(text: str) -> list[str]:
    """Language-independent ROUGE tokens of text (see the module docstring); [] for non-text."""
    if not isinstance(text, str):
        return []
    text = unicodedata.normalize("NFKC", text).casefold().translate(_INVISIBLE)
    return _TOKEN.findall(text)


_ASCII_WORD: Final = re.compile(r"[a-z]+")
_stemmer = None


def _english_stemmer():
    global _stemmer
    if _stemmer is None:
        try:
            import snowballstemmer
        except ImportError:
            raise ImportError("ROUGE stemming needs snowballstemmer: pip install 'videosafety[stem]'") from None
        _stemmer = snowballstemmer.stemmer("english")
    return _stemmer


def stem_english(tokens: Sequence[str]) -> list[str]:
    """tokens with each all-ASCII-letter word reduced to its English (Snowball/Porter2) stem, the
    stemming the common English ROUGE packages offer (rouge_score's use_stemmer); every other
    token (other scripts, digits, CJK characters) as it is."""
    st = _english_stemmer()
    return [st.stemWord(t) if _ASCII_WORD.fullmatch(t) else t for t in tokens]


def _f_measure(overlap: int, n_pred: int, n_ref: int) -> float:
    # 2PR/(P+R) with P = overlap/n_pred and R = overlap/n_ref simplifies to this, which has
    # no 0/0 case left once both counts are positive.
    return 2.0 * overlap / (n_pred + n_ref) if overlap else 0.0


def rouge_n(pred_tokens: Sequence[str], ref_tokens: Sequence[str], n: int) -> float:
    """ROUGE-N F-measure: clipped n-gram overlap; 0.0 when either side has no n-gram."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    pred = Counter(zip(*(pred_tokens[i:] for i in range(n))))
    ref = Counter(zip(*(ref_tokens[i:] for i in range(n))))
    if not pred or not ref:
        return 0.0
    return _f_measure(sum((pred & ref).values()), sum(pred.values()), sum(ref.values()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences."""
    # Bit-parallel LCS (Allison & Dix 1986; Hyyrö 2004): one big-int update per token of the
    # shorter side instead of the O(n·m) Python-level table. A 768-token Chinese completion
    # is ~1000 characters against a reference of similar size, and the reward runs for
    # every completion of every step, so the table's million interpreted steps would matter.
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    positions: dict[str, int] = {}
    for i, tok in enumerate(a):
        positions[tok] = positions.get(tok, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for tok in b:
        u = v & positions.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def rouge_l(pred_tokens: Sequence[str], ref_tokens: Sequence[str]) -> float:
    """ROUGE-L F-measure (LCS-based, sentence level); 0.0 when either side is empty."""
    if not pred_tokens or not ref_tokens:
        return 0.0
    return _f_measure(lcs_length(pred_tokens, ref_tokens), len(pred_tokens), len(ref_tokens))


def rouge(pred: str, ref: str, *, stem: bool = False) -> float:
    """The spec's ROUGE: mean of the ROUGE-1, ROUGE-2 and ROUGE-L F-measures of two texts.

    0.0 when either text has no tokens, including when both are empty: an empty answer
    never earns ROUGE credit. A one-token text has no bigram, so its ROUGE-2 is 0 and an
    exact one-token match scores 2/3, not 1 (as in the common ROUGE implementations).
    stem: English words are compared by stem (stem_english), an ablation switch; off by
    default, as in the spec."""
    p, r = tokenize(pred), tokenize(ref)
    if stem:
        p, r = stem_english(p), stem_english(r)
    if not p or not r:
        return 0.0
    return (rouge_n(p, r, 1) + rouge_n(p, r, 2) + rouge_l(p, r)) / 3.0
