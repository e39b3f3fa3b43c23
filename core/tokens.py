"""Which tokens a fingerprint reads, by one public rule, and `tokens.json`, the file that records them.

HuRef's terms are n x n matrices over the embedding rows of n tokens, so the same weights give another z for
another choice of tokens, or for the same tokens in another order: a thief who re-proves a stolen model with
its tokens reversed reads "unrelated" to it (issue 33). So nobody chooses the tokens; a rule does, and every
check that compares fingerprints recomputes it.

The rule `noseprint-tokens/v1`:

1. The words are `wordfreq`'s `top_n_list("en", 30000)`, alphabetic words only, in that (frequency) order;
   the list is pinned by its SHA-256 (`RULE_WORDS_SHA256`): a `wordfreq` that gives another list is refused
   rather than silently giving other tokens.
2. Each word is encoded by the model's own tokenizer, without special tokens.
3. The fingerprint's tokens are the first n words, in list order, that encode to exactly one id not chosen
   before.

The *evidence* of a selection is the tokenizer's encoding of every rule word up to the last one chosen. From it
anyone recomputes the selection and its order (`select_from_encodings`) without the tokenizer: `verify` does,
and refuses a token list that is not what its own evidence gives. The evidence itself is what the owner's
tokenizer says: `check-opening` recomputes it from an open model's tokenizer; for a closed model it is the
owner's word (the ids are bound to the committed embedding by challenge inference; the strings are not).

`tokens.json` (one typed owner, reader and writer side by side, like `core.bundle`):

    {"source": "wordfreq:en:top_n_list", "rule": "noseprint-tokens/v1", "words_sha256": hex,
     "tokens": [{"id": int, "string": str}, ...],      strings are left out of a redacted bundle
     "encodings": [[int, ...], ...]}                   one list of ids per rule word, up to the last chosen

A file without "rule" is an owner's own list (bundles made before the rule, or a model without a tokenizer
given `--tokens`): it verifies, but no fingerprint made from it is compared with another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from noseprint.core.errors import UsageError
from noseprint.core.fileio import parse_json_strict

RULE = "noseprint-tokens/v1"
WORD_SOURCE = "wordfreq:en:top_n_list"
CANDIDATE_WORDS = 30_000
RULE_WORDS_SHA256 = "da468b4509da0e5667377ed7e3697f5241a22c3b05058e7d9b8b23a584f8b756"
"""SHA-256 of the rule's words joined by newlines (29,182 words from wordfreq 3.1.1)."""
MAX_IDS_PER_WORD = 64
"""A word of the list encodes to a handful of ids; evidence claiming more is malformed, not evidence."""


class NotTheRule(UsageError):
    """A token list offered for a model whose tokenizer the rule selects other tokens (or another order) from."""


@dataclass(frozen=True)
class Token:
    id: int
    string: str


@cache
def rule_words() -> tuple[str, ...]:
    """The rule's word list, checked against its pinned digest."""
    from wordfreq import top_n_list

    words = tuple(word for word in top_n_list("en", CANDIDATE_WORDS) if word.isalpha())
    if hashlib.sha256("\n".join(words).encode()).hexdigest() != RULE_WORDS_SHA256:
        raise UsageError(
            f"the installed wordfreq gives another word list than the token rule {RULE} pins "
            "(install the wordfreq version in constraints.txt)"
        )
    return words


def select_from_encodings(encodings: list[list[int]], count: int) -> list[Token]:
    """The rule itself: the first `count` words whose encoding is one id not chosen before, in list order.

    Raises ValueError unless the encodings end exactly at the last word chosen (evidence that stops early or
    runs on is not a selection)."""
    words = rule_words()
    if len(encodings) > len(words):
        raise ValueError(f"the evidence encodes {len(encodings)} words; the rule has {len(words)}")
    chosen: list[Token] = []
    seen: set[int] = set()
    for word, ids in zip(words, encodings, strict=False):
        if len(chosen) == count:
            raise ValueError(f"the evidence runs past the word that completes the {count} tokens")
        if len(ids) == 1 and ids[0] not in seen:
            seen.add(ids[0])
            chosen.append(Token(ids[0], word))
    if len(chosen) != count:
        raise ValueError(f"the evidence gives {len(chosen)} tokens; {count} are needed")
    return chosen


def select(encode: Callable[[str], list[int]], count: int) -> TokenList:
    """The rule's tokens for a tokenizer (`encode`: word -> ids), with their evidence."""
    encodings: list[list[int]] = []
    chosen = 0
    seen: set[int] = set()
    for word in rule_words():
        ids = [int(i) for i in encode(word)]
        encodings.append(ids)
        if len(ids) == 1 and ids[0] not in seen:
            seen.add(ids[0])
            chosen += 1
            if chosen == count:
                return TokenList(select_from_encodings(encodings, count), RULE, encodings)
    raise UsageError(f"only {chosen} frequent English words are single tokens here; {count} are needed")


@dataclass(frozen=True)
class TokenList:
    """The tokens a fingerprint read, in order, and how they were chosen."""

    tokens: list[Token]
    rule: str | None = None
    """RULE when chosen by the rule (then `encodings` is its evidence); None for an owner's own list."""
    encodings: list[list[int]] | None = None

    def __iter__(self) -> Iterator[Token]:
        return iter(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def ids(self) -> list[int]:
        return [t.id for t in self.tokens]

    @property
    def by_rule(self) -> bool:
        return self.rule == RULE

    def rule_error(self) -> str | None:
        """Why this list is not the rule's selection from its own evidence, or None if it is."""
        if not self.by_rule or self.encodings is None:
            return "the tokens are the owner's own list, not chosen by the token rule"
        try:
            expected = select_from_encodings(self.encodings, len(self.tokens))
        except ValueError as exc:
            return str(exc)
        if [t.id for t in expected] != self.ids:
            return "the token ids (or their order) are not the ones the rule selects from the tokenizer's encodings"
        if any(t.string not in ("", e.string) for t, e in zip(self.tokens, expected, strict=True)):
            return "a token string is not the rule's word at its place"
        return None

    def order_error(self) -> str | None:
        """An owner's list cannot be checked against a tokenizer, but it may not be reordered either: strings it
        names must be the rule's words in the rule's order (a list of bare ids says nothing). None if so."""
        strings = [t.string for t in self.tokens if t.string]
        if not strings:
            return None
        rank = {word: index for index, word in enumerate(rule_words())}
        places = [rank.get(word, -1) for word in strings]
        if len(strings) != len(self.tokens) or min(places) < 0 or places != sorted(set(places)):
            return f"the token strings are not words of the token rule ({RULE}) in its order"
        return None

    def to_json(self, with_strings: bool = True) -> dict[str, Any]:
        """Strings are left out of a redacted bundle (the rule's words can be recomputed from the evidence)."""
        tokens = [{"id": t.id, "string": t.string} if with_strings else {"id": t.id} for t in self.tokens]
        record: dict[str, Any] = {"source": WORD_SOURCE, "tokens": tokens}
        if self.rule is not None:
            record.update(rule=self.rule, words_sha256=RULE_WORDS_SHA256, encodings=self.encodings)
        return record

    @staticmethod
    def from_json(data: bytes) -> TokenList:
        """Strict: ValueError with a reason for anything malformed (an unknown rule too)."""
        record = parse_json_strict(data)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        tokens = record.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, dict) for t in tokens):
            raise ValueError("no list of tokens")
        ids = [t.get("id") for t in tokens]
        if not all(type(i) is int and i >= 0 for i in ids):
            raise ValueError("a token id is not a non-negative integer")
        strings = [t.get("string", "") for t in tokens]
        if not all(isinstance(s, str) for s in strings):
            raise ValueError("a token string is not a string")
        listed = [Token(i, s) for i, s in zip(ids, strings, strict=True)]
        rule = record.get("rule")
        if rule is None:
            return TokenList(listed)
        if rule != RULE or record.get("words_sha256") != RULE_WORDS_SHA256:
            raise ValueError(f"the token rule is {rule!r} (words {record.get('words_sha256')!r}); this is {RULE}")
        return TokenList(listed, RULE, _encodings(record.get("encodings")))


def _encodings(value: object) -> list[list[int]]:
    if not isinstance(value, list) or len(value) > CANDIDATE_WORDS:
        raise ValueError("the rule's evidence is not a list of encodings")
    for ids in value:
        if not isinstance(ids, list) or len(ids) > MAX_IDS_PER_WORD:
            raise ValueError("an encoding is not a short list of token ids")
        if not all(type(i) is int and i >= 0 for i in ids):
            raise ValueError("an encoding holds something other than token ids")
    return value
