import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.edfl.skeletons import (
    SkeletonConfig,
    build_skeletons,
    erase_field_blocks,
    erase_json_fields,
    find_maskable_spans,
    message_text,
    permute_blocks,
)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


SANTANA = 'When did Carlos Santana meet Miles Davis in New York? He said "it was cold" in 1985.'


# --------------------------------------------------------------------------- evidence-erase


def test_evidence_block_is_erased_to_the_next_field_not_just_its_first_line():
    text = (
        "Evidence: Paris is the capital of France.\n"
        "It has 2.1 million inhabitants.\n"
        "The Seine flows through it.\n"
        "\n"
        "Question: How many people live in Paris?"
    )
    erased, count = erase_field_blocks(text)
    assert count == 1
    assert "2.1 million" not in erased and "Seine" not in erased
    assert erased.startswith("Evidence: [MASK]")
    assert erased.endswith("Question: How many people live in Paris?")


@pytest.mark.parametrize(
    "header",
    ["Context:", "References:", "Citations:", "Passage:", "Snippet:", "Notes:", "**Context:**",
     "- Evidence:", "context:", "Passage 2:", "## References:"],
)  # fmt: skip
def test_every_field_name_and_header_shape_is_erased(header):
    text = f"Task: answer briefly.\n{header}\nalpha secret one\nbeta secret two\nQuestion: what?"
    erased, count = erase_field_blocks(text)
    assert count == 1
    assert "secret" not in erased
    assert "Task: answer briefly." in erased and "Question: what?" in erased


def test_block_runs_to_the_end_and_several_fields_are_all_erased():
    text = "Context: first secret\nmore secret\nReferences: [1] secret ref\n[2] secret ref"
    erased, count = erase_field_blocks(text)
    assert count == 2 and "secret" not in erased


def test_an_unlabelled_question_after_a_blank_line_ends_the_block():
    erased, _ = erase_field_blocks("Context: foo secret\nbar secret\n\nWhat is foo?")
    assert "secret" not in erased and erased.endswith("What is foo?")


def test_json_keys_are_erased_whole_values_included():
    text = (
        'Answer from this: {"question": "Who?", "context": ["secret a", "secret b"], '
        '"meta": {"Notes": {"x": "secret c"}}} and {\'evidence\': \'secret d\'}'
    )
    erased, count = erase_json_fields(text)
    assert count == 3
    assert "secret" not in erased
    assert '"question": "Who?"' in erased


def test_evidence_mode_keeps_the_question_and_does_not_mask_it():
    text = (
        "Context: Carlos Santana met Miles Davis in 1985.\nQuestion: When did Carlos Santana play?"
    )
    skeletons = build_skeletons(user(text), SkeletonConfig(m=3))
    assert {s.mode for s in skeletons} == {"evidence"}
    for s in skeletons:
        assert "Miles Davis" not in s.text
        assert "Question: When did Carlos Santana play?" in s.text


# --------------------------------------------------------------------------- closed-book


def test_spans_found_are_quotes_entities_years_numbers():
    text = 'Who wrote "The Old Man" in 1952 for Charles Scribner Sons at 3 dollars?'
    kinds = {text[s.start : s.end]: s.kind for s in find_maskable_spans(text)}
    assert kinds == {
        '"The Old Man"': "quoted", "1952": "year", "Charles Scribner Sons": "entity",
        "3": "number",
    }  # fmt: skip


def test_a_full_stop_ends_an_entity_but_initials_and_titles_do_not():
    text = "Jake has 16 peaches. Steven has 7. J. R. R. Tolkien met Dr. Watson."
    spans = [text[s.start : s.end] for s in find_maskable_spans(text)]
    assert spans == ["16", "7", "J. R. R. Tolkien", "Dr. Watson"]


def test_a_reordering_alone_is_not_a_skeleton():
    # Prompts without spans (NQ-Open's lowercase questions) once got skeletons that were
    # only their sentences swapped: the same information, so S_k ≈ P and Δ̄ ≈ 0.
    text = "when was the last time anyone was on the moon? Answer with a short phrase."
    for s in build_skeletons(user(text), SkeletonConfig(m=6)):
        assert "[MASK]" in s.text


def test_sentence_initial_words_and_single_capitals_are_not_entities():
    spans = find_maskable_spans("What Python library parses JSON? Where is Paris?")
    assert spans == []


def test_skip_words_are_never_masked_case_insensitively():
    text = 'Write a Python Regex for "Python" dates like 2024 in New York.'
    config = SkeletonConfig(m=6, skip_words=("python", "regex"), levels=(1.0,), permute=False)
    for skeleton in build_skeletons(user(text), config):
        assert "Python Regex" in skeleton.text and '"Python"' in skeleton.text
        assert "2024" not in skeleton.text and "New York" not in skeleton.text


def test_levels_cycle_and_mask_more_at_higher_levels():
    text = " ".join(f"item {i} costs {i * 7} dollars in {1900 + i}." for i in range(40))
    config = SkeletonConfig(m=8, permute=False)
    skeletons = build_skeletons(user(text), config)
    assert [s.level for s in skeletons] == [0.25, 0.35, 0.5, 0.65, 0.8, 0.9, 0.25, 0.35]
    masked = [s.text.count("[MASK]") for s in skeletons[:6]]
    assert masked[0] < masked[2] < masked[5]  # 120 spans: the binomial noise is small
    assert abs(masked[2] / 120 - 0.5) < 0.15


def test_permutation_is_seeded_and_keeps_the_role_line_first():
    text = "You are a historian.\n\nFirst part.\n\nSecond part.\n\nThird part.\n\nFourth part."
    import random

    a = permute_blocks(text, random.Random(1))
    b = permute_blocks(text, random.Random(1))
    assert a == b and a.startswith("You are a historian.")
    assert sorted(a.split("\n\n")) == sorted(text.split("\n\n"))


def test_only_user_turns_are_masked():
    messages = [
        {"role": "system", "content": "You know Carlos Santana well, since 1970."},
        {"role": "user", "content": "I met Miles Davis in 1985."},
        {"role": "assistant", "content": "Miles Davis was in New York in 1985."},
        {"role": "user", "content": SANTANA},
    ]
    for s in build_skeletons(messages, SkeletonConfig(m=6, levels=(1.0,))):
        assert s.messages[0] == messages[0] and s.messages[2] == messages[2]
        assert "Miles Davis" not in message_text(s.messages[1])
        assert [m["role"] for m in s.messages] == [m["role"] for m in messages]


def test_content_parts_are_masked_and_other_parts_kept():
    image = {"type": "image_url", "image_url": {"url": "data:,"}}
    messages = [{"role": "user", "content": [{"type": "text", "text": SANTANA}, image]}]
    skeleton = build_skeletons(messages, SkeletonConfig(m=1, levels=(1.0,)))[0]
    parts = skeleton.messages[0]["content"]
    assert parts[1] == image and "Carlos Santana" not in parts[0]["text"]


@pytest.mark.parametrize(
    "text", ["", "python", "Write a python regex", "hello", "What is it?", SANTANA, "42"]
)
def test_every_skeleton_differs_from_the_prompt(text):
    for s in build_skeletons(user(text), SkeletonConfig(m=12, levels=(0.0,))):
        assert s.text != text


# --------------------------------------------------------------------------- properties

texts = st.lists(
    st.sampled_from(list("abcXYZ019 \n.,:?\"'{}[]") + ["Evidence:", "New York", "1999", "python"]),
    max_size=60,
).map("".join)
fast = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fast
@given(texts, st.integers(min_value=0, max_value=10**6))
def test_property_deterministic_per_seed_and_never_equal_to_the_prompt(text, seed):
    config = SkeletonConfig(m=4, seed=seed)
    first = build_skeletons(user(text), config)
    second = build_skeletons(user(text), config)
    assert [s.messages for s in first] == [s.messages for s in second]
    assert all(s.text != text for s in first)


@fast
@given(st.text(max_size=300), st.sampled_from(["auto", "evidence", "closed_book"]))
def test_property_arbitrary_unicode_never_crashes(text, mode):
    skeletons = build_skeletons(user(text), SkeletonConfig(m=2, mode=mode))
    assert len(skeletons) == 2


secret_lines = st.lists(
    st.text(alphabet="abcdefgh ", min_size=1, max_size=30).map(lambda s: f"zq{s.strip()}zq"),
    min_size=1,
    max_size=6,
)


@fast
@given(
    st.sampled_from(
        ["Evidence", "Context", "References", "Citations", "Passage", "Snippet", "Notes"]
    ),
    secret_lines,
    st.booleans(),
)
def test_property_fields_are_fully_erased(name, lines, inline):
    block = (
        f"{name}: {lines[0]}\n" + "\n".join(lines[1:])
        if inline
        else f"{name}:\n" + "\n".join(lines)
    )
    text = f"Answer from the evidence only.\n{block}\nQuestion: which letters?"
    for s in build_skeletons(user(text), SkeletonConfig(m=2)):
        assert not re.search(r"zq", s.text), s.text
        assert "Question: which letters?" in s.text
