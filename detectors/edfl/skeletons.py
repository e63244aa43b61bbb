"""Skeleton prompts: m versions of a conversation that carry less information than it does.

Two families (toolkit overview §1), chosen per conversation by ``SkeletonConfig.mode``:

- **evidence-erase** (prompts with fields such as ``Evidence:``, ``Context:``,
  ``References:``, or JSON keys of those names): the *whole* block of each field — every
  line up to the next known field header, or to the end — is replaced by the mask token.
  The public toolkit erased only the header's line and leaked the rest of the block.
- **closed-book masking** (everything else): quoted spans, multi-word Title-Case entities,
  years and numbers are each masked with probability equal to the skeleton's level
  (0.25, 0.35, 0.5, 0.65, 0.8, 0.9, cycled when m > 6), then the blocks of the last user
  turn are permuted (seeded), optionally keeping a leading role line in place.

What is masked: the user turns (the last one and every earlier one; a turn without
maskable facts comes out unchanged). System messages and earlier assistant turns are kept
as they are (``SkeletonConfig.mask_roles`` widens this). Tool results (``role: tool``
messages of an agent exchange) are evidence: every skeleton erases them whole, and in
``auto`` mode their presence selects evidence-erase, so the skeletons ask what the model
would say without what its tools returned. The user's question is never read from them.
Every skeleton hides something: when chance masked nothing, one more span (or content
word) is masked; the permutation alone never counts, since reordered text carries the
same information.

Everything here is pure and seeded: the same messages, config and seed give the same
skeletons. The semantic gate reuses :func:`build_skeletons`.

    skeletons = build_skeletons(messages, SkeletonConfig(m=6, seed=0))
    skeletons[0].messages   # a list of OpenAI chat messages
    skeletons[0].text       # the skeleton's masked user text, for the audit log
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

Message = dict  # an OpenAI chat message: {"role": ..., "content": ...}

DEFAULT_LEVELS = (0.25, 0.35, 0.5, 0.65, 0.8, 0.9)
DEFAULT_EVIDENCE_FIELDS = (
    "evidence", "context", "contexts", "reference", "references", "citation", "citations",
    "passage", "passages", "snippet", "snippets", "note", "notes", "knowledge",
    "document", "documents", "background", "source", "sources",
)  # fmt: skip
DEFAULT_TASK_FIELDS = (
    "question", "questions", "query", "task", "instruction", "instructions", "claim",
    "answer", "request", "input", "output", "prompt", "problem", "statement", "q", "a",
    "user", "assistant", "system", "response", "format", "goal", "hypothesis",
)  # fmt: skip
DEFAULT_SKIP_WORDS = (
    "python", "regex", "regular expression", "javascript", "typescript", "java", "rust",
    "golang", "c++", "c#", "sql", "json", "yaml", "html", "css", "bash", "shell", "linux",
    "unix", "api", "http", "unit test", "prime numbers", "breadth first search",
    "depth first search", "big o", "markdown",
)  # fmt: skip


@dataclass(frozen=True)
class SkeletonConfig:
    m: int = 6  # skeletons per prompt; the toolkit's default ensemble size
    levels: tuple[float, ...] = DEFAULT_LEVELS  # masking probability of skeleton k, cycled
    mode: str = "auto"  # auto | evidence | closed_book; auto = evidence iff a field exists
    skip_words: tuple[str, ...] = DEFAULT_SKIP_WORDS  # task words never masked (case-insens.)
    evidence_fields: tuple[str, ...] = DEFAULT_EVIDENCE_FIELDS  # headers/JSON keys erased
    task_fields: tuple[str, ...] = DEFAULT_TASK_FIELDS  # headers that end an evidence block
    mask_roles: tuple[str, ...] = ("user",)  # roles whose content is skeletonised
    evidence_roles: tuple[str, ...] = ("tool", "function")  # roles whose content is
    # evidence: erased whole in every skeleton (tool results of an agent exchange)
    permute: bool = True  # seeded block permutation of the last user turn (closed-book)
    keep_first_role_line: bool = True  # a leading "You are ..." block stays first
    mask_token: str = "[MASK]"  # what replaces a masked span or an erased field block
    seed: int = 0  # base seed; skeleton k of turn t uses Random(f"{seed}:{k}:{t}")

    def __post_init__(self) -> None:
        if self.m < 1:
            raise ValueError("m must be >= 1")
        if not self.levels or not all(0.0 <= lv <= 1.0 for lv in self.levels):
            raise ValueError("levels must be a non-empty tuple of probabilities")
        if self.mode not in ("auto", "evidence", "closed_book"):
            raise ValueError(f"unknown masking mode {self.mode!r}")


@dataclass(frozen=True)
class Skeleton:
    """One skeleton prompt: the messages to send, and how they were made."""

    index: int  # k, 0-based
    level: float  # masking probability used (closed-book); 1.0 for evidence-erase
    mode: str  # "evidence" or "closed_book"
    messages: list[Message] = field(hash=False)  # OpenAI chat messages, same roles as input
    masked_roles: tuple[str, ...] = ("user",)

    @property
    def text(self) -> str:
        """The skeletonised turns' text, joined by blank lines (for the audit log)."""
        parts = [message_text(m) for m in self.messages if m.get("role") in self.masked_roles]
        return "\n\n".join(parts)


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: str  # quoted | entity | year | number | word


# --------------------------------------------------------------------------- messages


def message_text(message: Message) -> str:
    """The text of a message whose content is a string or a list of OpenAI content parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _with_text(message: Message, transform) -> Message:
    """A copy of ``message`` whose text (string or text parts) went through ``transform``."""
    content = message.get("content")
    out = dict(message)
    if isinstance(content, str):
        out["content"] = transform(content)
    elif isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                part = {**part, "text": transform(part["text"])}
            parts.append(part)
        out["content"] = parts
    return out


# --------------------------------------------------------------------------- evidence erase

_HEADER = re.compile(
    r"^(?P<lead>[ \t]*(?:[-*>#]+[ \t]*)?(?:\*\*|__)?)"
    r"(?P<name>[A-Za-z][A-Za-z_-]*(?:[ \t][A-Za-z][A-Za-z_-]*)?)(?:[ \t]*\d+)?"
    r"(?P<close>(?:\*\*|__)?[ \t]*:(?:\*\*|__)?)"
)


def _field_name(line: str) -> tuple[str, re.Match] | None:
    match = _HEADER.match(line)
    if match is None:
        return None
    name = re.sub(r"[\s_-]+", " ", match.group("name")).strip().lower()
    return name, match


def _paragraph_is_question(lines: Sequence[str], i: int) -> bool:
    """True when the paragraph starting at line i (after a blank line) ends with '?'."""
    if i == 0 or lines[i - 1].strip():
        return False
    j = i
    while j + 1 < len(lines) and lines[j + 1].strip():
        j += 1
    return lines[j].rstrip().endswith("?")


def erase_field_blocks(
    text: str,
    mask_token: str = "[MASK]",
    evidence_fields: Sequence[str] = DEFAULT_EVIDENCE_FIELDS,
    task_fields: Sequence[str] = DEFAULT_TASK_FIELDS,
) -> tuple[str, int]:
    """Replace the whole block of every evidence field by ``mask_token``.

    A field starts at a line ``<Name>:`` (optionally bulleted, bold or numbered, case-
    insensitive) whose name is in ``evidence_fields``. Its block is the rest of that line
    and every following line up to (not including) the next header named in
    ``evidence_fields`` or ``task_fields``, or a blank-line-separated paragraph that ends
    with '?' (an unlabelled question after the evidence), or the end of the text.
    Returns the new text and the number of blocks erased.
    """
    evidence = {f.lower() for f in evidence_fields}
    known = evidence | {f.lower() for f in task_fields}
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    in_block, erased = False, 0
    for i, line in enumerate(lines):
        header = _field_name(line)
        name = header[0] if header else None
        if name in evidence:
            match = header[1]
            newline = "\n" if line.endswith("\n") else ""
            out.append(match.group("lead") + match.group("name") + match.group("close"))
            out.append(f" {mask_token}{newline}")
            in_block, erased = True, erased + 1
        elif in_block and (name in known or _paragraph_is_question(lines, i)):
            in_block = False
            out.append(line)
        elif in_block:
            if not line.strip() and (not out or out[-1].strip()):
                out.append(line)  # keep one blank separator; erase everything else
        else:
            out.append(line)
    return "".join(out), erased


def _redact_json(value, evidence: set[str], mask_token: str) -> tuple[object, int]:
    if isinstance(value, dict):
        out, count = {}, 0
        for key, item in value.items():
            if isinstance(key, str) and key.strip().lower() in evidence:
                out[key], count = mask_token, count + 1
            else:
                out[key], sub = _redact_json(item, evidence, mask_token)
                count += sub
        return out, count
    if isinstance(value, list):
        items = [_redact_json(v, evidence, mask_token) for v in value]
        return [v for v, _ in items], sum(c for _, c in items)
    return value, 0


_MAX_JSON_STARTS = 200  # bounds the scan on texts full of braces


def erase_json_fields(
    text: str, mask_token: str = "[MASK]", evidence_fields: Sequence[str] = DEFAULT_EVIDENCE_FIELDS
) -> tuple[str, int]:
    """Replace the value of every JSON key named like an evidence field by ``mask_token``.

    Parses each embedded JSON object or array (``json.JSONDecoder.raw_decode`` at every
    '{' / '['), then catches the remaining ``"key": "value"`` / ``'key': 'value'`` pairs of
    malformed JSON or Python dicts with a regular expression. Returns (text, fields erased).
    """
    evidence = {f.lower() for f in evidence_fields}
    decoder = json.JSONDecoder()
    out: list[str] = []
    pos, erased, starts = 0, 0, 0
    while pos < len(text) and starts < _MAX_JSON_STARTS:
        nxt = min((i for i in (text.find("{", pos), text.find("[", pos)) if i >= 0), default=-1)
        if nxt < 0:
            break
        starts += 1
        try:
            value, end = decoder.raw_decode(text, nxt)
        except ValueError:
            out.append(text[pos : nxt + 1])
            pos = nxt + 1
            continue
        redacted, count = _redact_json(value, evidence, mask_token)
        out.append(text[pos:nxt])
        out.append(json.dumps(redacted, ensure_ascii=False) if count else text[nxt:end])
        erased += count
        pos = end
    out.append(text[pos:])
    text = "".join(out)
    names = "|".join(re.escape(f) for f in sorted(evidence, key=len, reverse=True))
    pair = re.compile(
        rf"""(?P<key>(["'])(?:{names})\2\s*:\s*)(["'])(?:\\.|(?!\3).)*\3""",
        re.IGNORECASE | re.DOTALL,
    )
    changed = 0

    def _mask_value(match: re.Match) -> str:
        nonlocal changed
        if match.group(0)[len(match.group("key")) + 1 : -1] == mask_token:
            return match.group(0)  # already erased by the JSON pass
        changed += 1
        return f'{match.group("key")}"{mask_token}"'

    text = pair.sub(_mask_value, text)
    return text, erased + changed


def erase_evidence(text: str, config: SkeletonConfig) -> tuple[str, int]:
    """Evidence-erase one text: field blocks, then JSON keys. Returns (text, fields erased)."""
    text, n_json = erase_json_fields(text, config.mask_token, config.evidence_fields)
    text, n_blocks = erase_field_blocks(
        text, config.mask_token, config.evidence_fields, config.task_fields
    )
    return text, n_json + n_blocks


def has_evidence_fields(text: str, config: SkeletonConfig) -> bool:
    """True when evidence-erase would change ``text``."""
    return erase_evidence(text, config)[1] > 0


# --------------------------------------------------------------------------- closed-book spans

_QUOTED = re.compile(
    r'"[^"\n]{1,300}"|“[^”\n]{1,300}”|‘[^’\n]{1,300}’|«[^»\n]{1,300}»'
    r"|(?<!\w)'[^'\n]{1,300}'(?!\w)"
)
_CAP = (  # a capitalised word, an initial ("J.", "D.C.") or a title ("St.", "Dr."); a full
    # stop otherwise ends the word, so "Jake. How" is not one entity
    r"(?:[A-ZÀ-ÖØ-Þ]\.(?:[A-Z]\.)*|(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Mt|Ft)\.|[A-ZÀ-ÖØ-Þ][\w'’-]*)"
)
_CONNECT = r"(?:of|the|de|da|di|del|della|der|des|du|van|von|la|le|y|and|&|bin|al|el)"
_ENTITY = re.compile(rf"(?<![\w'’]){_CAP}(?:(?:[ \t]+{_CONNECT})*[ \t]+{_CAP})+")
_YEAR = re.compile(r"(?<![\w.,])(?:1[0-9]{3}|20[0-9]{2})s?(?![\w])")
_NUMBER = re.compile(r"(?<![\w.,])\d+(?:[.,]\d+)*(?:st|nd|rd|th)?%?(?![\w])")
_WORD = re.compile(r"[^\W\d_]{4,}")
_STOP_CAPS = frozenset(
    "what who whom whose when where which why how the a an in on at is are was were did does "
    "do can could should would will name tell give list please write explain describe i it "
    "this that these those if and but or so for from to of by with as my your our his her "
    "their there here then after before during since q answer question he she they we you "
    "me also yes no not all any some each every be been has have had let may might must "
    "shall find compute calculate solve show make use".split()
)


def _entity_spans(text: str) -> list[Span]:
    """Multi-word Title-Case entities, with leading sentence words (What, The, ...) dropped."""
    spans = []
    for match in _ENTITY.finditer(text):
        words = list(re.finditer(r"\S+", match.group(0)))
        while words and words[0].group(0).lower().strip(".'’") in _STOP_CAPS:
            words.pop(0)
        while words and not words[-1].group(0)[0].isupper():
            words.pop()  # a trailing connector ("of", "and") is not part of the name
        if sum(w.group(0)[0].isupper() for w in words) < 2:
            continue
        start, end = match.start() + words[0].start(), match.start() + words[-1].end()
        while end > start and text[end - 1] in ".’'":
            end -= 1  # sentence-final full stop
        spans.append(Span(start, end, "entity"))
    return spans


def _protected(text: str, skip_words: Sequence[str]) -> list[tuple[int, int]]:
    regions = []
    for word in skip_words:
        if word:
            pattern = rf"(?<!\w){re.escape(word)}(?!\w)"
            regions += [(m.start(), m.end()) for m in re.finditer(pattern, text, re.IGNORECASE)]
    return regions


def _overlaps(span: Span, regions: Sequence[tuple[int, int]]) -> bool:
    return any(span.start < end and start < span.end for start, end in regions)


def _non_overlapping(spans: Sequence[Span]) -> list[Span]:
    """Earliest first, longest first at equal start; drop any span overlapping a kept one."""
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -(s.end - s.start))):
        if not kept or span.start >= kept[-1].end:
            kept.append(span)
    return kept


def find_maskable_spans(text: str, skip_words: Sequence[str] = DEFAULT_SKIP_WORDS) -> list[Span]:
    """Quoted spans, multi-word Title-Case entities, years and numbers, non-overlapping.

    Spans that overlap a skip word (case-insensitive, whole word) are left out.
    """
    spans = [Span(m.start(), m.end(), "quoted") for m in _QUOTED.finditer(text)]
    spans += _entity_spans(text)
    spans += [Span(m.start(), m.end(), "year") for m in _YEAR.finditer(text)]
    spans += [Span(m.start(), m.end(), "number") for m in _NUMBER.finditer(text)]
    protected = _protected(text, skip_words)
    return _non_overlapping([s for s in spans if not _overlaps(s, protected)])


def _content_word_spans(text: str, skip_words: Sequence[str]) -> list[Span]:
    protected = _protected(text, skip_words)
    spans = [
        Span(m.start(), m.end(), "word")
        for m in _WORD.finditer(text)
        if m.group(0).lower() not in _STOP_CAPS
    ]
    return [s for s in spans if not _overlaps(s, protected)]


def apply_masks(text: str, spans: Sequence[Span], mask_token: str) -> str:
    """Replace each (non-overlapping) span of ``text`` by ``mask_token``."""
    out, pos = [], 0
    for span in sorted(spans, key=lambda s: s.start):
        out += [text[pos : span.start], mask_token]
        pos = span.end
    out.append(text[pos:])
    return "".join(out)


def mask_spans(text: str, level: float, rng: random.Random, config: SkeletonConfig) -> str:
    """Mask each maskable span independently with probability ``level``."""
    spans = find_maskable_spans(text, config.skip_words)
    chosen = [s for s in spans if rng.random() < level]
    return apply_masks(text, chosen, config.mask_token)


# --------------------------------------------------------------------------- permutation

_ROLE_LINE = re.compile(r"^\s*(you are|you're|act as|as an? |imagine you|pretend)", re.I)


_SPLITTERS = (
    (re.compile(r"\n[ \t]*\n"), "\n\n"),  # paragraphs
    (re.compile(r"\n"), "\n"),  # lines
    (re.compile(r"(?<=[.!?])\s+"), " "),  # sentences
)


def permute_blocks(text: str, rng: random.Random, keep_first_role_line: bool = True) -> str:
    """Seeded shuffle of the text's blocks: paragraphs, else lines, else sentences.

    The first unit that gives at least two movable blocks is used. A first block that
    reads like a role line ("You are ...") stays first when asked. Text with a single
    block comes back unchanged.
    """
    stripped = text.strip()
    for splitter, sep in _SPLITTERS:
        blocks = [b.strip() for b in splitter.split(stripped) if b.strip()]
        head: list[str] = []
        if keep_first_role_line and blocks and _ROLE_LINE.match(blocks[0]):
            head, blocks = blocks[:1], blocks[1:]
        if len(blocks) >= 2:
            rng.shuffle(blocks)
            return sep.join(head + blocks)
    return text


# --------------------------------------------------------------------------- builder


def _force_difference(text: str, rng: random.Random, level: float, cfg: SkeletonConfig) -> str:
    """Make ``text`` lose something: one more span, else content words, else prepend a mask."""
    spans = find_maskable_spans(text, cfg.skip_words)
    if spans:
        return apply_masks(text, [rng.choice(spans)], cfg.mask_token)
    words = _content_word_spans(text, cfg.skip_words)
    if words:
        chosen = [w for w in words if rng.random() < level] or [rng.choice(words)]
        return apply_masks(text, chosen, cfg.mask_token)
    # Nothing but skip words and punctuation: keep the task words, mark the skeleton.
    return f"{cfg.mask_token}\n{text}" if text else cfg.mask_token


def _rng(cfg: SkeletonConfig, k: int, turn: int) -> random.Random:
    return random.Random(f"edfl-skeleton:{cfg.seed}:{k}:{turn}")


def resolve_mode(messages: Sequence[Message], config: SkeletonConfig) -> str:
    """``evidence`` when asked for (or, in auto, when a masked turn has an evidence field)."""
    if config.mode != "auto":
        return config.mode
    if any(is_evidence_message(m, config) for m in messages):
        return "evidence"
    for message in messages:
        if message.get("role") in config.mask_roles:
            if has_evidence_fields(message_text(message), config):
                return "evidence"
    return "closed_book"


def is_evidence_message(message: Message, config: SkeletonConfig) -> bool:
    """A tool result with text: evidence that every skeleton erases."""
    return message.get("role") in config.evidence_roles and bool(message_text(message).strip())


def _hide_turn(text: str, k: int, turn: int, mode: str, cfg: SkeletonConfig) -> str:
    """Evidence-erase, or closed-book masking at skeleton k's level (no permutation)."""
    if mode == "evidence":
        return erase_evidence(text, cfg)[0]
    return mask_spans(text, cfg.levels[k % len(cfg.levels)], _rng(cfg, k, turn), cfg)


def build_skeleton(messages: Sequence[Message], k: int, config: SkeletonConfig) -> Skeleton:
    """Skeleton k of a conversation (see the module docstring). Pure and seeded.

    Order: hide (erase fields or mask spans) in every masked turn; if nothing was hidden,
    hide one more span / content words in the last turn (a reordering alone carries the
    same information, so it does not count as a difference); then, closed-book only,
    permute the last turn's blocks.
    """
    mode = resolve_mode(messages, config)
    level = 1.0 if mode == "evidence" else config.levels[k % len(config.levels)]
    turns = [i for i, msg in enumerate(messages) if msg.get("role") in config.mask_roles]
    out = [dict(msg) for msg in messages]
    erased = [i for i, msg in enumerate(messages) if is_evidence_message(msg, config)]
    for i in erased:
        out[i] = {**messages[i], "content": config.mask_token}
    if not turns:
        return Skeleton(k, level, mode, out, tuple(config.mask_roles))
    last = turns[-1]
    for i in turns:
        out[i] = _with_text(messages[i], lambda t, i=i: _hide_turn(t, k, i, mode, config))
    if not erased and all(message_text(out[i]) == message_text(messages[i]) for i in turns):
        rng = _rng(config, k, -1)
        out[last] = _with_text(out[last], lambda t: _force_difference(t, rng, level, config))
    if mode == "closed_book" and config.permute:
        rng = _rng(config, k, -2)
        keep = config.keep_first_role_line
        out[last] = _with_text(out[last], lambda t: permute_blocks(t, rng, keep))
    return Skeleton(k, level, mode, out, tuple(config.mask_roles))


def build_skeletons(
    messages: Sequence[Message], config: SkeletonConfig | None = None
) -> list[Skeleton]:
    """The m skeletons of a conversation, k = 0..m−1, at levels ``config.levels[k % len]``.

    ``messages`` is a list of OpenAI chat messages; each skeleton's ``messages`` has the
    same roles in the same order, with the masked roles' text skeletonised. A conversation
    with no turn of a masked role yields skeletons equal to it (nothing to mask).
    """
    config = config or SkeletonConfig()
    return [build_skeleton(messages, k, config) for k in range(config.m)]
