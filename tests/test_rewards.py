"""GRPO rewards (spec §3.4) on hand-computed cases: multilingual ROUGE, the format reward, the
DRA task reward and its spec ranges, the general problem types, the registry, and the
TRL/verl/EasyR1 adapters giving the same numbers as `score`."""

from __future__ import annotations

import importlib.util
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

import videosafety
from videosafety import tags
from videosafety.rewards import (
    PROBLEM_TYPES,
    DRAComponents,
    ProblemType,
    RewardResult,
    compute_score,
    dra_components,
    dra_reward,
    easyr1_compute_score,
    format_reward,
    register_problem_type,
    rouge,
    score,
    trl_format_reward,
    trl_reward,
    trl_task_reward,
)
from videosafety.rewards import adapters, general
from videosafety.rewards.rouge import lcs_length, rouge_l, rouge_n, tokenize
from videosafety.tags import format_cot, format_solution

approx = pytest.approx


def _tagged(answer: str | None, v: str | None, t: str | None, think: str = "Reasoning.") -> str:
    parts = [f"<think>{think}</think>"]
    if answer is not None:
        parts.append(f"<answer>{answer}</answer>")
    if v is not None:
        parts.append(f"<vidType>{v}</vidType>")
    if t is not None:
        parts.append(f"<textType>{t}</textType>")
    return "".join(parts)


# ---------------------------------------------------------------------------------- tokenize


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("The cat sat.", ["the", "cat", "sat"]),
        ("我爱北京", ["我", "爱", "北", "京"]),
        ("猫が好きです。", ["猫", "が", "好", "き", "で", "す"]),
        ("학교에 가요", ["학", "교", "에", "가", "요"]),
        ("2024年1月", ["2024", "年", "1", "月"]),
        ("Привет, МИР!", ["привет", "мир"]),
        ("¿Qué tal? ÉCOLE, straße", ["qué", "tal", "école", "strasse"]),
        ("Olá, ação!", ["olá", "ação"]),
        ("مُحَمَّد كتاب، جميل", ["مُحَمَّد", "كتاب", "جميل"]),
        ("मैं हिन्दी बोलता हूँ।", ["मैं", "हिन्दी", "बोलता", "हूँ"]),
        ("ＡＢＣ１２３ snake_case", ["abc123", "snake", "case"]),  # NFKC widths; "_" separates
        ("क्\u200dष", ["क्ष"]),  # a joiner inside a conjunct does not split the word
        ("!!! ... —", []),
        ("", []),
    ],
)
def test_tokenize_scripts(text, tokens):
    assert tokenize(text) == tokens


def test_stdlib_word_pattern_alone_would_split_devanagari_and_arabic():
    # Why the tokenizer adds the mark class: plain \w+ breaks words at vowel signs/harakat.
    assert re.findall(r"\w+", "हिन्दी") != ["हिन्दी"]
    assert re.findall(r"\w+", "مُحَمَّد") != ["مُحَمَّد"]
    assert tokenize("हिन्दी") == ["हिन्दी"] and tokenize("مُحَمَّد") == ["مُحَمَّد"]


def test_tokenize_non_text_is_empty():
    assert tokenize(None) == []  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- ROUGE


def test_rouge_n_and_l_english_by_hand():
    p, r = tokenize("the cat sat"), tokenize("the cat ran")
    assert rouge_n(p, r, 1) == approx(2 / 3)  # the, cat: P = R = 2/3
    assert rouge_n(p, r, 2) == approx(1 / 2)  # "the cat" of 2 bigrams each
    assert rouge_l(p, r) == approx(2 / 3)  # LCS "the cat" = 2
    assert rouge("the cat sat", "the cat ran") == approx((2 / 3 + 1 / 2 + 2 / 3) / 3)  # 11/18


def test_rouge_n_clips_repeated_tokens():
    # "the" three times in pred, once in ref: overlap 1; F = 2·1/(3+2)
    assert rouge_n(tokenize("the the the"), tokenize("the cat"), 1) == approx(0.4)
    with pytest.raises(ValueError):
        rouge_n(["a"], ["a"], 0)


@pytest.mark.parametrize(
    ("pred", "ref", "expected"),
    [
        # zh: 我 爱 北 京 / 我 爱 上 海. R1 2·2/8 = 1/2; R2 {我爱} 2·1/6 = 1/3; RL 2 -> 1/2
        ("我爱北京", "我爱上海", (1 / 2 + 1 / 3 + 1 / 2) / 3),
        # ja: 猫が好きです / 犬が好きです. R1 2·5/12 = 5/6; R2 4 of 5 each -> 4/5; RL 5 -> 5/6
        ("猫が好きです", "犬が好きです", (5 / 6 + 4 / 5 + 5 / 6) / 3),
        # ar: القط جلس على الحصيرة / القط نام على الحصيرة. R1 3/4; R2 {على الحصيرة} 2/6; RL 3 -> 3/4
        ("القط جلس على الحصيرة", "القط نام على الحصيرة", (3 / 4 + 1 / 3 + 3 / 4) / 3),
        # hi: 4 vs 5 words, 4 shared in order. R1 2·4/9; R2 {मैं हिन्दी, बोलता हूँ} 2·2/7; RL 2·4/9
        ("मैं हिन्दी बोलता हूँ", "मैं हिन्दी नहीं बोलता हूँ", (8 / 9 + 4 / 7 + 8 / 9) / 3),
        # ru: same 6 words, reordered. R1 1; R2 {я не, не могу, с этим} 2·3/10; RL "я не могу с этим" 2·5/12
        ("Я не могу помочь с этим.", "я не могу с этим помочь", (1 + 3 / 5 + 5 / 6) / 3),
        # ko: 학 교 에 가 요 / 학 교 는 가 요. R1 2·4/10; R2 {학교, 가요} 2·2/8; RL 4 -> 4/5
        ("학교에 가요", "학교는 가요", (4 / 5 + 1 / 2 + 4 / 5) / 3),
    ],
)
def test_rouge_scripts_by_hand(pred, ref, expected):
    assert rouge(pred, ref) == approx(expected)


def test_korean_per_syllable_keeps_credit_a_particle_would_remove():
    p, r = ["학교에", "가요"], ["학교는", "가요"]  # whole spaced words (eojeol)
    by_word = (rouge_n(p, r, 1) + rouge_n(p, r, 2) + rouge_l(p, r)) / 3
    assert by_word == approx(1 / 3)  # (1/2 + 0 + 1/2) / 3
    assert rouge("학교에 가요", "학교는 가요") == approx(0.7)  # per syllable, as above


def test_english_only_tokenizer_gives_zero_for_chinese_ours_does_not():
    def english_only(text: str) -> list[str]:  # what the common ROUGE packages do
        return re.findall(r"[a-z0-9]+", text.lower())

    pred, ref = "我不能帮助你做这件事", "我不能帮你做这件事"
    assert english_only(pred) == [] and rouge_n(english_only(pred), english_only(ref), 1) == 0.0
    assert rouge(pred, ref) > 0.8


def test_rouge_edges():
    assert rouge("", "the cat") == 0.0
    assert rouge("the cat", "") == 0.0
    assert rouge("", "") == 0.0  # an empty answer never earns ROUGE, even against nothing
    assert rouge("?!", "...") == 0.0
    assert rouge("the cat sat", "The cat, sat!") == approx(1.0)
    assert rouge("yes", "Yes.") == approx(2 / 3)  # one token: no bigram, ROUGE-2 = 0


def _lcs_table(a, b):
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def test_bit_parallel_lcs_matches_the_table():
    rng = random.Random(0)
    for _ in range(500):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 25))]
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 25))]
        assert lcs_length(a, b) == _lcs_table(a, b)
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4  # the textbook example


# ----------------------------------------------------------------------------------- format


def test_format_reward():
    good = format_cot("Both are harmful.", "I can't help with that.", 1, 1)
    assert format_reward(good) == 1.0
    assert format_reward("<think>a</think>\n<answer>b</answer>\n<vidType>1</vidType>\n<textType>0</textType>") == 1.0
    assert format_reward(good + "\nThanks!") == 0.0  # trailing text
    assert format_reward(good + "<|im_end|>") == 0.0  # callers strip the end-of-turn token
    assert format_reward(" " + good) == 0.0
    assert format_reward(_tagged("a", "1", None)) == 0.0  # missing tag
    assert format_reward(None) == 0.0  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------- DRA

SOL = format_solution("the cat ran", 1, 0)
ROUGE_CAT = 11 / 18  # rouge("the cat sat", "the cat ran"), above


def test_format_solution_exact_string_and_checks():
    assert SOL == "<answer>the cat ran</answer><vidType>1</vidType><textType>0</textType>"
    assert tags.parse_tagged(SOL) == tags.TaggedOutput(None, "the cat ran", 1, 0)
    with pytest.raises(ValueError, match="video_label"):
        format_solution("a", 2, 0)
    with pytest.raises(ValueError, match="query_label"):
        format_solution("a", 0, True)
    with pytest.raises(ValueError, match="answer text must not contain tags"):
        format_solution("a</answer>", 0, 0)
    with pytest.raises(ValueError, match="non-blank"):
        format_solution("  ", 0, 0)


@pytest.mark.parametrize(
    ("v", "t", "expected", "alpha"),
    [
        ("1", "0", 0.1 * ROUGE_CAT + 2, 0.1),  # both right
        ("0", "0", 0.5 * ROUGE_CAT + 1, 0.5),  # video wrong
        ("1", "1", 0.5 * ROUGE_CAT + 1, 0.5),  # text wrong
        ("0", "1", 0.5 * ROUGE_CAT, 0.5),  # both wrong
    ],
)
def test_dra_hand_computed(v, t, expected, alpha):
    c = dra_components(_tagged("the cat sat", v, t), SOL)
    assert c.task == approx(expected) and c.alpha == approx(alpha) and c.rouge == approx(ROUGE_CAT)
    assert dra_reward(_tagged("the cat sat", v, t), SOL) == c.task


def test_dra_components_dataclass():
    c = dra_components(_tagged("the cat sat", "1", "1"), SOL)
    # text label wrong: alpha = 0.1 + (1 - 1·0)(0.5 - 0.1) = 0.5, task = 0.5·11/18 + 1 + 0
    assert c == DRAComponents(rouge=c.rouge, video_correct=1.0, text_correct=0.0, alpha=0.5, task=c.task)
    assert (c.rouge, c.task) == approx((ROUGE_CAT, 0.5 * ROUGE_CAT + 1))
    assert c.as_dict() == {"rouge": c.rouge, "video_correct": 1.0, "text_correct": 0.0, "alpha": 0.5, "task": c.task}
    with pytest.raises(AttributeError):
        c.task = 0.0  # type: ignore[misc]


def test_dra_spec_ranges():
    answers = [None, "", "the cat ran", "the cat sat", "a dog", "THE CAT RAN!", "ran cat the"]
    labels = ["0", "1", "2", " 1 ", None, "harmful"]
    for answer in answers:
        for v in labels:
            for t in labels:
                c = dra_components(_tagged(answer, v, t), SOL)
                right = int(c.video_correct) + int(c.text_correct)
                lo, hi = {2: (2.0, 2.1), 1: (1.0, 1.5), 0: (0.0, 0.5)}[right]
                assert lo <= c.task <= hi + 1e-12, (answer, v, t, c)


def test_dra_label_and_answer_edge_cases():
    # exact answer, labels with whitespace: both right, ROUGE 1 -> 2.1
    assert dra_reward(_tagged("The cat ran.", " 1 ", "\n0\n"), SOL) == approx(2.1)
    # label "2" is no label: wrong, never "close"
    assert dra_components(_tagged("the cat ran", "2", "0"), SOL).video_correct == 0.0
    # missing answer block -> ROUGE 0; labels still count
    assert dra_reward(_tagged(None, "1", "0"), SOL) == approx(2.0)
    # missing vidType -> c_v = 0
    assert dra_reward(_tagged("the cat ran", None, "0"), SOL) == approx(0.5 * 1 + 1)
    # trailing text after a tagged completion: not well formed, but the task reward still reads it
    assert dra_reward(_tagged("the cat ran", "1", "0") + "\nHope this helps.", SOL) == approx(2.1)
    # untagged completion: nothing to read
    assert dra_reward("the cat ran", SOL) == 0.0


def test_dra_custom_weights():
    c = dra_components(_tagged("the cat ran", "0", "0"), SOL, alpha_min=0.2, alpha_max=0.8, gamma_v=2.0, gamma_t=3.0)
    assert c.alpha == approx(0.8) and c.task == approx(0.8 * 1 + 0 + 3.0)
    with pytest.raises(ValueError, match="alpha_min"):
        dra_components(_tagged("a", "0", "0"), SOL, alpha_min=0.6, alpha_max=0.5)


@pytest.mark.parametrize(
    "bad",
    [
        "<answer>x</answer><vidType>1</vidType>",  # no textType
        "<answer>x</answer><textType>1</textType>",  # no vidType
        "<vidType>1</vidType><textType>0</textType>",  # no answer
        "<answer>  </answer><vidType>1</vidType><textType>0</textType>",  # blank answer
        "<answer>x</answer><vidType>2</vidType><textType>0</textType>",  # not a label
        "just text",
    ],
)
def test_dra_bad_solution_raises(bad):
    with pytest.raises(ValueError, match="safety solution lacks"):
        dra_reward(_tagged("x", "1", "0"), bad)


def test_dra_solution_may_have_a_think_block():
    sol = format_cot("Reference reasoning.", "the cat ran", 1, 0)
    assert dra_reward(_tagged("the cat ran", "1", "0"), sol) == approx(2.1)


# ---------------------------------------------------------------------------------- general


def test_extract_answer():
    assert general.extract_answer("<think>x</think><answer> B </answer>") == "B"
    assert general.extract_answer("  B \n") == "B"
    assert general.extract_answer("<answer>unclosed B") == "<answer>unclosed B"


@pytest.mark.parametrize(
    ("completion", "solution", "expected"),
    [
        ("B", "B", 1.0),
        ("(B)", "B", 1.0),
        ("B.", "<answer>B</answer>", 1.0),
        ("<think>Looks like B.</think><answer> (b) </answer>", "B", 1.0),
        ("C", "B", 0.0),
        ("B. Paris", "B", 0.0),  # more than a letter: exact match only
        ("Paris", "<answer>Paris</answer>", 1.0),
        ("paris", "Paris", 0.0),
        ("", "B", 0.0),
    ],
)
def test_multiple_choice(completion, solution, expected):
    assert general.multiple_choice_reward(completion, solution) == expected


@pytest.mark.parametrize(
    ("completion", "solution", "expected"),
    [
        ("3.14159", "3.14", 1.0),
        ("2.004", "2", 1.0),  # 2.00 == 2.00
        ("2.01", "2", 0.0),
        ("<answer>42</answer>", "<answer>42.0</answer>", 1.0),
        ("1,234.5", "1234.50", 1.0),
        ("１２", "12", 1.0),  # full-width digits
        ("\u22120.5", "-0.5", 1.0),  # minus sign
        ("1e3", "1000", 1.0),
        ("12 apples", "12", 0.0),
        ("abc", "1", 0.0),
        ("1_000", "1000", 0.0),
        ("nan", "1", 0.0),
        ("1e999", "1", 0.0),
        ("", "1", 0.0),
    ],
)
def test_numerical(completion, solution, expected):
    assert general.numerical_reward(completion, solution) == expected


def test_ocr_by_hand():
    assert general.ocr_reward("hello word foo", "hello world foo") == approx(2 / 3)  # 1 substitution / 3
    assert general.ocr_reward("Hello, World!", "hello world") == 1.0  # case and punctuation do not count
    assert general.ocr_reward("", "hello world") == 0.0  # 2 deletions / 2
    assert general.ocr_reward("a b c d e f g", "x") == 0.0  # WER 7, clipped
    assert general.ocr_reward("你好世", "你好世界") == approx(0.75)  # CJK per character: 1 deletion / 4
    assert general.edit_distance(list("kitten"), list("sitting")) == 3


def test_free_form_is_rouge_of_the_answers():
    assert general.free_form_reward("<answer>the cat sat</answer>", "the cat ran") == approx(ROUGE_CAT)


@pytest.mark.parametrize(
    "fn",
    [general.multiple_choice_reward, general.numerical_reward, general.ocr_reward, general.free_form_reward],
)
def test_general_blank_solution_raises(fn):
    with pytest.raises(ValueError, match="blank"):
        fn("B", "  ")


def test_unreadable_numerical_and_ocr_solutions_raise():
    with pytest.raises(ValueError, match="not a number"):
        general.numerical_reward("1", "one")
    with pytest.raises(ValueError, match="no words"):
        general.ocr_reward("x", "!!!")


# --------------------------------------------------------------------------------- registry


@pytest.fixture
def restore_registry():
    saved = dict(PROBLEM_TYPES)
    yield
    PROBLEM_TYPES.clear()
    PROBLEM_TYPES.update(saved)


def test_registry_contents():
    assert set(PROBLEM_TYPES) == {"safety", "multiple_choice", "numerical", "ocr", "free_form"}
    assert PROBLEM_TYPES["safety"].uses_format and PROBLEM_TYPES["safety"].instruction == tags.GRPO_INSTRUCTION
    assert PROBLEM_TYPES["multiple_choice"].instruction == "Answer with the option's letter."
    assert PROBLEM_TYPES["numerical"].instruction == "Answer with a number."
    for name in ("multiple_choice", "numerical", "ocr", "free_form"):
        pt = PROBLEM_TYPES[name]
        assert not pt.uses_format and pt.instruction and not tags.has_tags(pt.instruction)


def test_score_safety_components():
    completion = format_cot("Harmful video, benign text.", "the cat sat", 1, 0)
    result = score("safety", completion, SOL)
    assert list(result.components) == ["format", "rouge", "video_correct", "text_correct", "task"]
    assert result.components == approx(
        {"format": 1.0, "rouge": ROUGE_CAT, "video_correct": 1.0, "text_correct": 1.0, "task": 2 + 0.1 * ROUGE_CAT}
    )
    assert result.total == approx(3 + 0.1 * ROUGE_CAT)
    # trailing text: format 0, task unchanged
    assert score("safety", completion + " Bye.", SOL).total == approx(2 + 0.1 * ROUGE_CAT)


def test_score_general_has_no_format_component():
    result = score("multiple_choice", "<answer>(B)</answer>", "B")
    assert result == RewardResult(total=1.0, components={"task": 1.0})
    assert score("numerical", "7", "8") == RewardResult(0.0, {"task": 0.0})


def test_score_unknown_type_names_the_known_ones():
    with pytest.raises(KeyError, match="unknown problem type 'math'.*free_form.*safety"):
        score("math", "1", "1")


def test_register_problem_type(restore_registry):
    pt = ProblemType("length", lambda c, s: {"chars": len(c), "task": min(1.0, len(c) / 10)}, False, "Answer briefly.")
    assert register_problem_type(pt) is pt
    assert score("length", "hello", "x") == RewardResult(0.5, {"chars": 5.0, "task": 0.5})
    with pytest.raises(ValueError, match="already registered"):
        register_problem_type(pt)
    with pytest.raises(ValueError, match="already registered"):
        register_problem_type(ProblemType("safety", pt.task, False, ""))
    tagged = ProblemType("length", pt.task, True, "Use the tags.")
    register_problem_type(tagged, replace=True)
    good = format_cot("t", "a", 0, 0)
    assert score("length", good, "x").components["format"] == 1.0
    assert score(pt, "hello", "x").total == 0.5  # an unregistered ProblemType scores directly


def test_register_and_score_reject_bad_types(restore_registry):
    with pytest.raises(TypeError):
        register_problem_type("safety")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        register_problem_type(ProblemType("", lambda c, s: {"task": 0.0}, False, ""))
    with pytest.raises(ValueError, match="must return a 'task'"):
        score(ProblemType("x", lambda c, s: {"acc": 1.0}, False, ""), "a", "b")
    with pytest.raises(ValueError, match="reserved"):
        score(ProblemType("x", lambda c, s: {"format": 1.0, "task": 1.0}, False, ""), "a", "b")


def test_reward_result_is_frozen():
    with pytest.raises(AttributeError):
        score("numerical", "1", "1").total = 2.0  # type: ignore[misc]


# --------------------------------------------------------------------------------- adapters

BATCH = [
    ("safety", format_cot("Harmful video.", "the cat sat", 1, 0), SOL),
    ("safety", _tagged("the cat ran", "0", "2") + " trailing", SOL),
    (None, _tagged(None, "1", "0"), SOL),
    ("multiple_choice", "(C)", "<answer>C</answer>"),
    ("numerical", "<answer>3.14159</answer>", "3.14"),
    ("ocr", "hello word foo", "hello world foo"),
    ("free_form", "the cat sat", "the cat ran"),
]
TYPES = [pt for pt, _, _ in BATCH]
COMPLETIONS = [c for _, c, _ in BATCH]
SOLUTIONS = [s for _, _, s in BATCH]
EXPECTED = [score(pt or "safety", c, s) for pt, c, s in BATCH]


def test_trl_reward_matches_score():
    got = trl_reward(prompts=["p"] * len(BATCH), completions=COMPLETIONS, solution=SOLUTIONS, problem_type=TYPES)
    assert got == [r.total for r in EXPECTED]
    assert got[:3] == approx([3 + 0.1 * ROUGE_CAT, 0.5, 2.0]) and got[3:6] == [1.0, 1.0, approx(2 / 3)]


def test_trl_parts_sum_to_total_and_have_log_names():
    kw = dict(completions=COMPLETIONS, solution=SOLUTIONS, problem_type=TYPES, completion_ids=None, trainer_state=None)
    fmt, task, total = trl_format_reward(**kw), trl_task_reward(**kw), trl_reward(**kw)
    assert fmt == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert [f + t for f, t in zip(fmt, task)] == approx(total)
    assert (trl_reward.__name__, trl_format_reward.__name__, trl_task_reward.__name__) == (
        "videosafety_reward",
        "videosafety_format",
        "videosafety_task",
    )


def test_trl_conversational_completions():
    conversational = [[{"role": "assistant", "content": c}] for c in COMPLETIONS]
    assert trl_reward(conversational, SOLUTIONS, TYPES) == [r.total for r in EXPECTED]
    # several messages: the last one is the completion; content may be a list of parts
    multi = [[{"role": "assistant", "content": "ignored"}, {"role": "assistant", "content": COMPLETIONS[0]}]]
    parts = [[{"role": "assistant", "content": [{"type": "text", "text": COMPLETIONS[0]}]}]]
    assert trl_reward(multi, SOLUTIONS[:1]) == trl_reward(parts, SOLUTIONS[:1]) == [EXPECTED[0].total]


def test_trl_defaults_and_mismatches():
    assert trl_reward(COMPLETIONS[:3], SOLUTIONS[:3]) == [r.total for r in EXPECTED[:3]]  # no column: safety
    with pytest.raises(ValueError, match="solutions for"):
        trl_reward(COMPLETIONS, SOLUTIONS[:2])
    with pytest.raises(ValueError, match="problem types for"):
        trl_reward(COMPLETIONS, SOLUTIONS, TYPES[:2])
    with pytest.raises(TypeError, match="cannot read a completion"):
        trl_reward([42], SOLUTIONS[:1])


def test_verl_compute_score_matches_score():
    for (pt, c, s), expected in zip(BATCH, EXPECTED):
        out = compute_score("videosafetybench", c, s, {"problem_type": pt, "index": 3} if pt else None)
        assert out["score"] == expected.total
        assert list(out) == ["score", *adapters.ENGINE_COMPONENTS]  # same keys for every type
        assert {k: out[k] for k in expected.components} == expected.components
    assert compute_score("x", "7", "7", {"problem_type": "numerical"}) == {
        "score": 1.0,
        "format": 0.0,
        "rouge": 0.0,
        "video_correct": 0.0,
        "text_correct": 0.0,
        "task": 1.0,
    }


def test_easyr1_compute_score_matches_score():
    inputs = [
        {"response": c, "response_length": 10, "ground_truth": s, **({"problem_type": pt} if pt else {})}
        for pt, c, s in BATCH
    ]
    out = easyr1_compute_score(inputs)
    assert [o["overall"] for o in out] == [r.total for r in EXPECTED]
    assert all(list(o) == ["overall", *adapters.ENGINE_COMPONENTS] for o in out)
    assert easyr1_compute_score(inputs[0]) == out[0]  # sequential reward type: one dict


def test_adapters_load_from_a_file_path_like_verl_and_easyr1_do():
    path = Path(adapters.__file__)
    spec = importlib.util.spec_from_file_location("custom_reward_fn_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.compute_score("d", BATCH[0][1], SOL)["score"] == EXPECTED[0].total


def test_rewards_import_no_torch():
    code = "import sys, videosafety.rewards; sys.exit('torch' in sys.modules or 'numpy' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(videosafety.__file__).parents[1]), *sys.path])}
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=60).returncode == 0


def test_dra_settings_change_the_task_reward_by_hand():
    from videosafety.rewards import DRASettings, score
    from videosafety.rewards.safety import dra_with

    answer = "I cannot help with that request."
    sol = format_solution(answer, 1, 1)
    one_wrong = format_cot("thinking", answer, 1, 0)  # c_v = 1, c_t = 0, ROUGE = 1
    # spec: alpha = 0.1 + (1 - 0) * 0.4 = 0.5; task = 0.5 * 1 + 1 * 1 + 1 * 0
    assert dra_with(one_wrong, sol).task == pytest.approx(1.5)
    s = DRASettings(alpha_min=0.2, alpha_max=0.6, gamma_v=2.0, gamma_t=3.0)
    # alpha = 0.2 + 1 * 0.4 = 0.6; task = 0.6 + 2 * 1 + 3 * 0
    assert dra_with(one_wrong, sol, s).task == pytest.approx(2.6)
    right = format_cot("thinking", answer, 1, 1)  # alpha = alpha_min: 0.2 + 2 + 3
    assert dra_with(right, sol, s).task == pytest.approx(5.2)
    got = score("safety", one_wrong, sol, s)
    assert got.components["task"] == pytest.approx(2.6) and got.total == pytest.approx(3.6)  # + format 1
    assert score("safety", one_wrong, sol).components["task"] == pytest.approx(1.5)
    assert score("numerical", "3.14", "3.14", s).total == 1.0  # other types ignore it
    with pytest.raises(ValueError, match="alpha_min"):
        DRASettings(alpha_min=0.6, alpha_max=0.5)


def test_rouge_stemming_is_english_only_and_off_by_default():
    pytest.importorskip("snowballstemmer")
    from videosafety.rewards.rouge import stem_english

    assert stem_english(["running", "refuses", "бегу", "视", "x1", "2024"]) == ["run", "refus", "бегу", "视", "x1", "2024"]
    # "refuses videos" vs "refused video": no token in common unstemmed; identical stems
    assert rouge("refuses videos", "refused video") == 0.0
    assert rouge("refuses videos", "refused video", stem=True) == pytest.approx(1.0)
    assert rouge("我拒绝", "我拒绝", stem=True) == rouge("我拒绝", "我拒绝")
