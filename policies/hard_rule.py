"""The hard rule: code/creative mode is no license to answer questions about the world.

On a route whose profile sets ``escalate_factual_to`` (code-creative does), a prompt that
names real-world entities together with dates or numbers is judged under the target
profile (strict-factual) instead (toolkit overview §4, "Hard rule").

:func:`factual_signal` is the check: a small pure heuristic, tuned to fire on
"Carlos Santana met Eric Clapton in March 1985" and not on "write a Python function that
returns 42". It fires when the prompt has BOTH

* an entity: a run of two or more Title-Case words ("Carlos Santana", "Bank of England";
  a sentence's first word is dropped when it is a common opener such as "When" or
  "Write"), or a single capitalised word right after a factual cue word ("population of
  Paris", "did Einstein"), where words of programming (Python, SQL, Flask, ...), months
  and weekdays never count as entities; and
* a date or number: a digit sequence standing alone (42, 1985, 3.5, 12th, 1980s) or a
  question asking for one ("what year", "how many", "when did", "how tall", ...).

Names typed in lower case ("when did the berlin wall fall") have no capitals to find, so
a question asking for a date ("when did", "what year", ...) also fires on its own when
the prompt has no code in backticks and no programming words (code, function, loop, ...).

Code in backticks (fenced blocks and inline spans) is ignored: identifiers and literals
there are not claims about the world. A text written in Headline Case (common words such
as "a", "that", "in" capitalised inside sentences) gives no Title-Case signal; only
cue-word entities count there.

Known limits (measured and listed in docs/POLICIES.md): a lower-case name with a number
but no date question ("population of paris 1900") and a single-word entity without a cue
word ("Paris 1900") are missed, so those prompts stay under code-creative; an unlisted
product name after a cue word ("in Word with 3 columns") and invented names in stories
with numbers fire, so those prompts are judged more strictly than they need.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from policies.decision import Escalation
from policies.schema import Policy, Profile

# A sentence's first word is capitalised anyway: drop it from a Title-Case run when it
# is one of these openers (imperatives, question words, articles, prepositions).
_OPENERS = frozenset("""
a an the this that these those in on at of for from to by with about after before during
since until as if when where who whom whose which what why how is are was were be been do
does did can could would should will shall may might must has have had please tell give
list name explain describe write create make build generate compose draft summarize
summarise translate compare show find compute calculate implement fix convert refactor
imagine pretend suppose let using use given consider i we you he she they it my our your
his her their there here then and or but so yes no also now today yesterday tomorrow hi
hello dear once
""".split())

# Words of programming, data formats and tools: capitalised, they are still not entities.
_TECH_WORDS = frozenset("""
python java javascript typescript rust go golang ruby perl php swift kotlin scala haskell
lua julia matlab r c c++ c# cobol fortran dart elixir erlang clojure sql mysql postgres
postgresql sqlite mongodb redis bash shell zsh powershell linux unix windows macos ios
android ubuntu debian docker kubernetes git github gitlab npm pip node nodejs deno react
vue angular svelte django flask fastapi rails spring express jquery numpy pandas pytorch
torch tensorflow keras scikit sklearn jupyter excel json yaml toml xml html css csv http
https api rest graphql grpc regex regexp utf ascii unicode markdown latex lambda aws azure
gcp true false none null nan inf int float str bool list dict set tuple array string
vector map hashmap class object function method module package struct enum interface
hello world foo bar baz main test tests todo readme makefile dockerfile vscode vim emacs
unittest pytest junit visual studio code vs xcode intellij pycharm jetbrains
sort merge quick bubble insertion selection heap binary search tree graph queue stack
linked hash table algorithm dynamic programming array matrix node edge fibonacci
""".split())

_MONTHS_AND_DAYS = frozenset("""
january february march april may june july august september october november december
jan feb mar apr jun jul aug sep sept oct nov dec monday tuesday wednesday thursday friday
saturday sunday
""".split())

# Lower-case words that may join the capitalised words of one name.
_CONNECTORS = r"(?:of|the|de|da|del|der|di|du|van|von|la|le|bin|al|y|and|&)"
_CAP_WORD = r"[A-Z][\w'’\-]*"
_RUN = re.compile(rf"{_CAP_WORD}(?:\s+(?:{_CONNECTORS}\s+)*{_CAP_WORD})*")
# A single capitalised word counts as an entity only right after one of these.
_CUES = frozenset("""
of in at from by did does was were is about visited born died founded met married
what whom where when
""".split())

_LEADING = " \t\"'“‘([-*"  # what may precede a sentence's first word
_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+|\n+")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?:st|nd|rd|th|s)?(?![\w])")
_ASKS_FOR_NUMBER = re.compile(
    r"\b(?:what|which|in what)\s+(?:year|date|day|month|century|decade)\b"
    r"|\bwhen\s+(?:was|were|did|does|is|will|had)\b"
    r"|\bhow\s+(?:many|much|old|long|tall|high|far|big|large|deep|heavy|fast)\b"
    r"|\b(?:population|birthday|anniversary|date of birth)\b",
    re.IGNORECASE,
)
_ASKS_FOR_DATE = re.compile(
    r"\b(?:what|which|in what)\s+(?:year|date|century|decade)\b"
    r"|\bwhen\s+(?:was|were|did|does|is|will|had)\b", re.IGNORECASE)
_CODE_WORDS = re.compile(
    r"\b(?:code|function|script|program|loop|variable|compile[sd]?|regex|sql|api|python|"
    r"javascript|typescript|java|rust|golang|bash|method|component|callback|thread)\b",
    re.IGNORECASE)


@dataclass(frozen=True)
class FactualSignal:
    """Why a prompt looks like a question about the world."""

    entities: tuple[str, ...]  # e.g. ("Carlos Santana", "Eric Clapton"); () for a date
    # question in lower case
    numbers: tuple[str, ...]  # e.g. ("1985",) or ("how many",)

    def describe(self) -> str:
        nums = ", ".join(f"'{n}'" for n in self.numbers[:3])
        if not self.entities:
            return f"prompt asks {nums} (a date question about the world)"
        names = ", ".join(f"'{e}'" for e in self.entities[:3])
        return f"prompt names {names} together with {nums}"


def factual_signal(text: str) -> FactualSignal | None:
    """Real-world entities together with dates or numbers in ``text``, or None."""
    prose = _CODE.sub(" ", text)
    numbers = tuple(m.group(0) for m in _NUMBER.finditer(prose))
    numbers += tuple(m.group(0).lower() for m in _ASKS_FOR_NUMBER.finditer(prose))
    if not numbers:
        return None
    entities = find_entities(prose)
    if entities:
        return FactualSignal(entities=entities, numbers=numbers)
    date_question = _ASKS_FOR_DATE.search(prose)
    if date_question and prose == text and not _CODE_WORDS.search(prose):
        # "when did the berlin wall fall": names typed in lower case are invisible to
        # the Title-Case test, but a question for a date is about an event in the world
        return FactualSignal(entities=(), numbers=(date_question.group(0).lower(),))
    return None


def find_entities(text: str) -> tuple[str, ...]:
    """Named entities by the Title-Case and cue-word heuristics of the module docstring."""
    headline = _is_headline_case(text)
    found: dict[str, None] = {}  # ordered set
    for sentence in _SENTENCE_END.split(text):
        first = len(sentence) - len(sentence.lstrip(_LEADING))  # where the sentence begins
        for match in _RUN.finditer(sentence):
            words = match.group(0).split()
            at_start = match.start() == first
            if at_start and words[0].lower() in _OPENERS:
                words = words[1:]
            before = sentence[max(0, match.start() - 40): match.start()]
            entity = _entity(words, before, at_start, headline)
            if entity:
                found.setdefault(entity)
    return tuple(found)


def _entity(words: list[str], before: str, at_start: bool, headline: bool) -> str | None:
    """The name that ``words`` (a Title-Case run) forms, if it is one."""
    while words and not words[-1][:1].isupper():
        words = words[:-1]  # a run never ends on a connector
    caps = [w for w in words if w[:1].isupper()]
    keys = [_key(w) for w in caps]
    if not caps or all(k in _TECH_WORDS or k in _MONTHS_AND_DAYS for k in keys):
        return None
    if len(caps) >= 2 and not headline:
        return " ".join(words)
    if len(caps) == 1 and not at_start and len(keys[0]) >= 3 and keys[0] not in _OPENERS:
        previous = before.split()[-1:] or [""]
        if previous[0].lower() in _CUES:
            return caps[0]
    return None


def _key(word: str) -> str:
    return word.lower().strip("'’-").removesuffix("'s").removesuffix("’s")


def _is_headline_case(text: str) -> bool:
    """Most common words (the, write, in, ...) capitalised inside sentences: capitals
    carry no signal. Sentence-initial words are not counted."""
    common = capitalised = 0
    for sentence in _SENTENCE_END.split(text):
        for word in re.findall(r"[A-Za-z]+", sentence)[1:]:
            if word.lower() in _OPENERS and word != "I":
                common += 1
                capitalised += word[0].isupper()
    return common >= 2 and capitalised / common > 0.5


def apply_hard_rule(policy: Policy, profile: Profile, prompt: str,
                    ) -> tuple[Profile, Escalation | None]:
    """The profile that judges ``prompt`` on a route whose profile is ``profile``.

    When ``profile.escalate_factual_to`` is set and :func:`factual_signal` fires, the
    target profile judges instead (its detectors, thresholds, combination, fail mode and
    abstention text); the route's delivery stays: its ``action`` and ``streaming``, so a
    shadow or annotate route still never blocks. Header overrides applied to the route's
    profile do not carry over: a header cannot weaken the hard rule.
    """
    target = profile.escalate_factual_to
    if target is None:
        return profile, None
    signal = factual_signal(prompt)
    if signal is None:
        return profile, None
    judged = policy.profiles[target].model_copy(
        update={"action": profile.action, "streaming": profile.streaming,
                "progressive": profile.progressive})
    return judged, Escalation(from_profile=profile.name, reason=signal.describe())
