"""The model's tokenizer and the owner's token files: what the token rule (`core.tokens`) reads.

Tokens are chosen *by string* (the rule's word list) through the model's own tokenizer, which keeps the
selection aligned across derivatives that permute or extend the vocabulary.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from noseprint.core.errors import UsageError
from noseprint.core.tokens import Token, TokenList


def load_tokenizer(model_dir: Path) -> Callable[[str], list[int]]:
    """The checkpoint's own tokenizer, from local files only, as a word -> ids function.

    `tokenizer.json` is read directly with `tokenizers` (it is the tokenizer, exactly);
    otherwise transformers' AutoTokenizer (e.g. a sentencepiece `tokenizer.model`).
    """
    tokenizer_json = Path(model_dir) / "tokenizer.json"
    if tokenizer_json.is_file():
        from tokenizers import Tokenizer

        try:
            core = Tokenizer.from_file(str(tokenizer_json))
        except Exception as exc:  # tokenizers raises a bare Exception for malformed files
            raise UsageError(f"tokenizer.json in {model_dir} is unreadable: {exc}") from None
        core.no_padding()  # some tokenizer.json files pad every encoding (all-MiniLM-L6-v2: to 128)
        core.no_truncation()
        return lambda word: core.encode(word, add_special_tokens=False).ids

    import logging

    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError... for missing files
        raise UsageError(
            f"no usable tokenizer in {model_dir} ({type(exc).__name__}); "
            "pass --tokens FILE with the token ids to fingerprint"
        ) from None
    return lambda word: tokenizer.encode(word, add_special_tokens=False)


def read_token_file(path: Path, count: int) -> TokenList:
    """A JSON list of {"id", "string"} objects or of ids, or a text file of `id[<TAB>string]` lines: the
    owner's own list (no rule chose it)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read token file {path}: {exc}") from None
    tokens: list[Token] = []
    try:
        data = json.loads(text)
        items = data["tokens"] if isinstance(data, dict) else data
        for item in items:
            if isinstance(item, dict):
                tokens.append(Token(int(item["id"]), str(item.get("string", ""))))
            else:
                tokens.append(Token(int(item), ""))
    except json.JSONDecodeError:
        for line in text.splitlines():
            if line.strip():
                head, _, tail = line.partition("\t")
                try:
                    tokens.append(Token(int(head), tail.strip()))
                except ValueError:
                    raise UsageError(f"token file {path}: {line!r} does not start with a token id") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"token file {path} is not a list of token ids: {exc}") from None
    if len({t.id for t in tokens}) != len(tokens):
        raise UsageError(f"token file {path} repeats a token id")
    if len(tokens) < count:
        raise UsageError(f"token file {path} has {len(tokens)} tokens; {count} are needed")
    return TokenList(tokens[:count])
