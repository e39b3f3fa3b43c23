"""The zoo's offline text: what its models learn from, rebuilt from this machine alone.

- Pretraining text: the docstrings of Python's standard library and the help topics
  shipped in `pydoc_data` (Python Software Foundation License). Every machine with
  the same Python has byte-identical text, so the base models rebuild exactly.
- "Other text" for the derivatives (fine-tuning, continued pretraining, preference
  pairs, new vocabulary): Debian package documentation under /usr/share/doc
  (README and NEWS files; each under its package's own license, see its
  `copyright` file). A different distribution of text from the pretraining corpus,
  as a real fine-tune's data would be.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib
import inspect
import io
import sys
import warnings
from pathlib import Path

import torch

SKIPPED_MODULES = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "lib2to3", "ensurepip"}
DEBIAN_DOCS = Path("/usr/share/doc")
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]


def _docstrings_of(module) -> list[str]:
    docs = [inspect.getdoc(module)]
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            docs.append(inspect.getdoc(obj))
        if inspect.isclass(obj):
            docs += [
                inspect.getdoc(m)
                for n, m in sorted(vars(obj).items())
                if not n.startswith("_") and inspect.isfunction(m)
            ]
    return [d for d in docs if d]


def stdlib_documents() -> list[tuple[str, str]]:
    """(title, text) pairs: each public stdlib docstring, then each pydoc help topic."""
    import pydoc_data.topics

    documents = []
    warnings.simplefilter("ignore")
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in SKIPPED_MODULES:
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                module = importlib.import_module(name)
        except Exception:  # platform-specific modules (winreg, msvcrt...) fail to import: skip them
            continue
        documents += [(name, doc) for doc in _docstrings_of(module)]
    documents += sorted(pydoc_data.topics.topics.items())
    return documents


def debian_documents(limit_chars: int = 3_000_000) -> list[tuple[str, str]]:
    """(package, text) pairs from README/NEWS files, in path order, up to `limit_chars` in all."""
    documents, total = [], 0
    for path in sorted(DEBIAN_DOCS.rglob("*")):
        name = path.name.lower()
        if path.is_symlink() or not path.is_file() or not name.startswith(("readme", "news")):
            continue
        try:
            raw = gzip.open(path).read() if name.endswith(".gz") else path.read_bytes()
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError, EOFError):
            continue
        text = text[:20_000]  # no single package dominates
        documents.append((path.relative_to(DEBIAN_DOCS).parts[0], text))
        total += len(text)
        if total >= limit_chars:
            break
    return documents


def train_tokenizer(texts: list[str], vocab_size: int):
    """A word-piece-free BPE over whitespace/punctuation words, so common English words are single tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    core.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def token_stream(tokenizer, texts: list[str]) -> torch.Tensor:
    """All texts as one id stream, each document closed by </s>."""
    ids: list[int] = []
    for text in texts:
        ids += tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]
    return torch.tensor(ids, dtype=torch.long)


def blocks(stream: torch.Tensor, length: int) -> torch.Tensor:
    """Non-overlapping training windows of `length` tokens."""
    count = len(stream) // length
    return stream[: count * length].view(count, length)
