"""The hard rule's check: real-world entities together with dates or numbers."""

import pytest

from policies import apply_hard_rule, factual_signal, load_policy_text, prompt_text
from policies.hard_rule import find_entities

FACTUAL = [
    "Write a short story where Carlos Santana met Eric Clapton in March 1985.",
    "What was the population of Paris in 1900?",
    "When did World War II end?",
    "How tall is the Eiffel Tower in meters?",
    "In 1969, Neil Armstrong walked on the Moon; write a poem about it.",
    "Write a Python script that downloads the 2020 census data for New York City.",
    "Barack Obama was born in 1961. Write a limerick about that.",
    "How many goals did Lionel Messi score in 2012?",
    "Tell me about Albert Einstein's birthday",
    "write a haiku about the day the Berlin Wall fell in 1989",
    "Who won the Nobel Prize in Physics in 1921?",
    "when was the Battle of Hastings",
    "Write a poem about what Einstein did in 1905.",
    "when did the berlin wall fall",  # lower case: the date question alone fires
    "what year was the eiffel tower built? answer in a limerick",
]

NOT_FACTUAL = [
    "write a python function that returns 42",
    "Write a Python function that returns 42",
    "Write a haiku about autumn leaves",
    "Write a Python script that prints the numbers 1 to 100 using a for loop",
    "Sort this list in JavaScript: [3, 1, 2]",
    "Write a regex that matches exactly 3 digits",
    "Create a REST API in Flask that listens on port 8080",
    "Write a Hello World program in C that prints it 3 times",
    "Using Visual Studio Code, write a loop from 1 to 10",
    "Implement Merge Sort for an array of 10 integers in Rust",
    "Write a poem about New York",  # an entity, but no date or number
    "Fix this:\n```python\nclass Foo:\n    Year = 2020\n    Max Value = 3\n```",
    "Write a SQL query that returns the top 5 customers by revenue",
    "Write a function that returns the 10th Fibonacci number",
    "How many times does this loop run? `for i in range(10): print(i)`",
    "Write a story about a dragon who counts 1000 coins",
    "Convert 5 kilometers to miles in Python",
    "Write a Java class with 3 private fields and a toString method",
    "My React component renders 2 times, why?",
    "Write A Python Function That Returns 42",  # headline case: capitals mean nothing
    "Write a function that checks whether a year such as 2024 is a leap year in March",
    "when was this function called? it runs 3 times",
    "when did my python script start failing after 2 runs",
    "when was `build()` last called",
]


@pytest.mark.parametrize("prompt", FACTUAL)
def test_fires_on_entities_with_dates_or_numbers(prompt):
    signal = factual_signal(prompt)
    assert signal is not None, prompt
    assert signal.numbers
    assert ("together with" if signal.entities else "date question") in signal.describe()


@pytest.mark.parametrize("prompt", NOT_FACTUAL)
def test_does_not_fire_on_code_and_fiction_without_real_entities(prompt):
    assert factual_signal(prompt) is None, (prompt, factual_signal(prompt))


def test_names_what_it_found():
    signal = factual_signal("Carlos Santana met Eric Clapton in 1985 and 1986")
    assert signal.entities == ("Carlos Santana", "Eric Clapton")
    assert signal.numbers == ("1985", "1986")


def test_lower_case_date_question():
    signal = factual_signal("when did the berlin wall fall")
    assert signal.entities == () and signal.numbers == ("when did",)
    assert signal.describe() == "prompt asks 'when did' (a date question about the world)"


def test_sentence_openers_are_not_part_of_names():
    assert find_entities("When Abraham Lincoln spoke. Tell Marie Curie hi.") == (
        "Abraham Lincoln", "Marie Curie")


def test_prompt_text_reads_user_turns_only_and_content_parts():
    messages = [
        {"role": "system", "content": "You are made by OpenAI Labs in 2024."},
        {"role": "user", "content": [{"type": "text", "text": "Write a poem"},
                                     {"type": "image_url", "image_url": {"url": "x"}}]},
        {"role": "assistant", "content": "Sure, about Marie Curie in 1903?"},
        {"role": "user", "content": "about the sea, 3 lines"},
    ]
    assert prompt_text(messages) == "Write a poem\n\nabout the sea, 3 lines"
    assert factual_signal(prompt_text(messages)) is None


POLICY = """
routes:
  - {name: code, match: {header: code}, profile: code-creative}
  - {name: notes, match: {header: notes}, profile: notes}
  - {name: default, default: true, profile: strict-factual}
profiles:
  notes:
    extends: code-creative
    action: annotate
"""


def test_code_route_escalates_factual_prompt_to_strict_factual():
    policy = load_policy_text(POLICY)
    _, profile = policy.match(route_header="code")
    judged, escalation = apply_hard_rule(policy, profile, FACTUAL[0])
    assert judged.name == "strict-factual"
    assert judged.detectors.enabled() == ("halt", "edfl")
    assert escalation.from_profile == "code-creative"
    assert "Carlos Santana" in escalation.reason and "1985" in escalation.reason


def test_code_route_keeps_its_profile_for_code_prompts():
    policy = load_policy_text(POLICY)
    _, profile = policy.match(route_header="code")
    judged, escalation = apply_hard_rule(policy, profile, NOT_FACTUAL[0])
    assert judged is profile and escalation is None


def test_escalation_keeps_the_routes_action():
    policy = load_policy_text(POLICY)
    _, profile = policy.match(route_header="notes")
    judged, escalation = apply_hard_rule(policy, profile, FACTUAL[1])
    assert (judged.name, judged.action, escalation.from_profile) == (
        "strict-factual", "annotate", "notes")


def test_profiles_without_the_rule_never_escalate():
    policy = load_policy_text(POLICY)
    _, profile = policy.match()
    assert apply_hard_rule(policy, profile, FACTUAL[0]) == (profile, None)
