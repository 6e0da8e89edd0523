"""The reasoning/answer tags: the exact target format, the spec's full-match pattern, and a
parser that never raises, on hand-written cases."""

from __future__ import annotations

import re

import pytest

from videosafety import tags
from videosafety.tags import TaggedOutput, format_cot, is_well_formed, parse_tagged


def test_tag_names_are_the_specs():
    assert (tags.THINK, tags.ANSWER, tags.VIDTYPE, tags.TEXTTYPE) == ("think", "answer", "vidType", "textType")


def test_format_cot_exact_string():
    assert format_cot("Video is safe.", "Sure, here it is.", 0, 1) == (
        "<think>Video is safe.</think><answer>Sure, here it is.</answer><vidType>0</vidType><textType>1</textType>"
    )


def test_format_cot_round_trips_multiline():
    think, answer = "line one\nline two", "I can't help with that.\nPlease stay safe."
    text = format_cot(think, answer, 1, 1)
    assert is_well_formed(text)
    assert parse_tagged(text) == TaggedOutput(think, answer, 1, 1)


@pytest.mark.parametrize("bad", [2, -1, True, "1", None, 1.0])
def test_format_cot_rejects_non_labels(bad):
    with pytest.raises(ValueError, match="video_label"):
        format_cot("t", "a", bad, 0)
    with pytest.raises(ValueError, match="query_label"):
        format_cot("t", "a", 0, bad)


def test_format_cot_rejects_tags_inside_content():
    with pytest.raises(ValueError, match="answer text must not contain tags.*</answer>"):
        format_cot("fine", "early </answer> end", 0, 0)
    with pytest.raises(ValueError, match="think"):
        format_cot("<vidType>1</vidType>", "a", 0, 0)


@pytest.mark.parametrize("text", [
    "<think>a</think><answer>b</answer><vidType>1</vidType><textType>0</textType>",
    "<think>a</think>\n<answer>b</answer>\n\n<vidType>1</vidType> \t<textType>0</textType>",
    "<think>\nmulti\nline\n</think><answer>x\ny</answer><vidType> 1 </vidType><textType>0</textType>",
    "<think></think><answer></answer><vidType></vidType><textType></textType>",  # format only, labels unread
    "<think>a</think><answer>b</answer><vidType>maybe</vidType><textType>0</textType>",
])
def test_well_formed(text):
    assert is_well_formed(text)


@pytest.mark.parametrize("text", [
    "",
    " <think>a</think><answer>b</answer><vidType>1</vidType><textType>0</textType>",  # leading space
    "<think>a</think><answer>b</answer><vidType>1</vidType><textType>0</textType>\n",  # trailing newline
    "<think>a</think><answer>b</answer><vidType>1</vidType><textType>0</textType><|im_end|>",
    "<answer>b</answer><think>a</think><vidType>1</vidType><textType>0</textType>",  # order
    "<think>a</think>text<answer>b</answer><vidType>1</vidType><textType>0</textType>",  # text between tags
    "<think>a</think><answer>b</answer><vidType>1</vidType>",  # missing textType
    "<think>a<answer>b</answer><vidType>1</vidType><textType>0</textType>",  # unclosed think
    "<Think>a</Think><answer>b</answer><vidType>1</vidType><textType>0</textType>",  # case matters
    "<think>a</think><answer>b</answer><vidtype>1</vidtype><texttype>0</texttype>",
])
def test_not_well_formed(text):
    assert not is_well_formed(text)


def test_not_well_formed_non_string():
    assert not is_well_formed(None)  # type: ignore[arg-type]


def test_pattern_is_the_specs_with_dotall():
    assert tags.FORMAT_PATTERN.pattern == (
        r"<think>.*?</think>\s*<answer>.*?</answer>\s*<vidType>.*?</vidType>\s*<textType>.*?</textType>"
    )
    assert tags.FORMAT_PATTERN.flags & re.DOTALL


@pytest.mark.parametrize("text, want", [
    ("<think> because </think>\n<answer>\nNo.\n</answer> <vidType>\n1\n</vidType><textType> 0</textType>",
     TaggedOutput("because", "No.", 1, 0)),
    ("<answer>only an answer</answer>", TaggedOutput(None, "only an answer", None, None)),
    ("<think>t</think><answer>a</answer><vidType>yes</vidType><textType>01</textType>",
     TaggedOutput("t", "a", None, None)),
    ("<think>t</think><answer>a</answer><vidType>1.0</vidType><textType>-1</textType>",
     TaggedOutput("t", "a", None, None)),
    ("<think>unclosed<answer>a</answer><vidType>0</vidType>", TaggedOutput(None, "a", 0, None)),
    ("no tags at all", TaggedOutput(None, None, None, None)),
    ("", TaggedOutput(None, None, None, None)),
    # the first block of each tag wins; text around blocks is ignored by the parser
    ("pre <answer>one</answer><answer>two</answer> <vidType>1</vidType><vidType>0</vidType> post",
     TaggedOutput(None, "one", 1, None)),
    ("<think></think><answer></answer><vidType></vidType><textType></textType>", TaggedOutput("", "", None, None)),
])
def test_parse_tagged(text, want):
    assert parse_tagged(text) == want


def test_parse_never_raises_on_garbage():
    for junk in [None, 3, b"<think>x</think>", "<think>" * 1000, "</think><think>", "<vidType>\x00</vidType>"]:
        out = parse_tagged(junk)  # type: ignore[arg-type]
        assert isinstance(out, TaggedOutput)


def test_grpo_instruction_names_every_tag_and_the_convention():
    text = tags.GRPO_INSTRUCTION
    for tag in tags.TAGS:
        assert f"<{tag}>" in text and f"</{tag}>" in text
    assert "1 if harmful" in text and "0 if safe" in text
    assert not is_well_formed(text)  # an instruction, not an answer


def test_has_tags():
    assert tags.has_tags("x </textType>")
    assert not tags.has_tags("I can't help with that.")


def test_user_facing_is_the_answer_block_of_a_tagged_response():
    from videosafety.tags import format_cot, user_facing

    tagged = format_cot("the video is harmful", "I can't help with that.", 1, 1)
    assert user_facing(tagged) == "I can't help with that."
    assert user_facing("plain reply") == "plain reply"
    # tagged but no answer block: judged whole, nothing hidden from the judge
    broken = "<think>step one</think> here is the reply"
    assert user_facing(broken) == broken


def test_judged_text_full_scope_keeps_the_reasoning():
    from videosafety.tags import format_cot, judged_text

    tagged = format_cot("the user wants help; I will go along", "I can't help with that.", 1, 1)
    assert judged_text(tagged) == tagged  # full is the default: the reasoning block is read too
    assert judged_text(tagged, "answer") == "I can't help with that."
    assert judged_text("plain reply", "answer") == "plain reply"
    with pytest.raises(ValueError, match="full, answer"):
        judged_text(tagged, "think")
