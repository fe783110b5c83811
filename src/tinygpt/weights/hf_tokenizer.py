"""Our tokenizers as Hugging Face `tokenizer.json` files and back, written in that format by hand
(no `tokenizers` needed to run): GPT-2's and a corpus-trained BPE as a byte-level BPE, the
character tokenizer as a BPE without merges. `AutoTokenizer.from_pretrained(folder)` then gives
the ids we give (tests/test_hf_tokenizer.py holds it to the `tokenizers` package)."""

from __future__ import annotations

import base64
import json
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

from tinygpt.data.tokenizer import (
    EOT,
    GPT2_PATTERN,
    BPETokenizer,
    CharTokenizer,
    GPT2Tokenizer,
    TiktokenTokenizer,
    Tokenizer,
    gpt2_ranks,
)
from tinygpt.errors import UsageError

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"


@lru_cache(maxsize=1)
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: each byte as one printable character (printable Latin-1
    bytes stand for themselves, the rest take the code points from 256 on)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return {b: chr(b if b in printable else next(extra)) for b in range(256)}


def to_unicode(piece: bytes) -> str:
    table = byte_to_unicode()
    return "".join(table[b] for b in piece)


@lru_cache(maxsize=1)
def unicode_to_byte() -> dict[str, int]:
    return {c: b for b, c in byte_to_unicode().items()}


def from_unicode(text: str) -> bytes:
    """The bytes a byte-level token string stands for; KeyError for a character outside it."""
    table = unicode_to_byte()
    return bytes(table[c] for c in text)


def merges_of(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The merge that made each token past the 256 bytes, in rank order: the two parts that BPE,
    allowed only the tokens ranked below it, splits the token into."""
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) < 2:
            continue
        parts = [token[i:i + 1] for i in range(len(token))]
        while len(parts) > 2:  # merge the lowest-ranked adjacent pair, as tiktoken does
            pair_ranks = [ranks.get(a + b, rank) for a, b in pairwise(parts)]
            best = min(range(len(pair_ranks)), key=pair_ranks.__getitem__)
            if pair_ranks[best] >= rank:
                raise ValueError(f"token {token!r} is not made by merging lower tokens")
            parts[best:best + 2] = [parts[best] + parts[best + 1]]
        merges.append((parts[0], parts[1]))
    return merges


def tokenizer_json(tok: Tokenizer) -> dict:
    """The tokenizer.json Hugging Face's `tokenizers` reads for this tokenizer."""
    if isinstance(tok, CharTokenizer):  # every character a token: a BPE with nothing to merge
        return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
                "normalizer": None, "pre_tokenizer": None, "post_processor": None,
                "decoder": {"type": "Fuse"},
                "model": bpe_model({c: i for i, c in enumerate(tok.chars)}, [])}
    if not isinstance(tok, TiktokenTokenizer):
        raise UsageError(f"the {tok.name} tokenizer has no Hugging Face form (use data."
                         "tokenizer=bpe, char or gpt2)")
    ranks = tok.mergeable_ranks
    vocab = {to_unicode(piece): rank for piece, rank in ranks.items()}
    merges = [f"{to_unicode(a)} {to_unicode(b)}" for a, b in merges_of(ranks)]
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": tok.eot_token, "content": EOT, "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": False,
                          "special": True}],
        "normalizer": None,
        # tiktoken's split first, then the bytes as GPT-2's alphabet (its regex off: ours ran)
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": tok.pattern}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": False}]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                    "use_regex": False},
        # ignore_merges: a piece that is a whole token is that token, as in tiktoken
        "model": bpe_model(vocab, merges, ignore_merges=True),
    }


def bpe_model(vocab: dict[str, int], merges: list[str], ignore_merges: bool = False) -> dict:
    return {"type": "BPE", "dropout": None, "unk_token": None,
            "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": False,
            "byte_fallback": False, "ignore_merges": ignore_merges, "vocab": vocab,
            "merges": merges}


def tokenizer_config(tok: Tokenizer, context_length: int) -> dict:
    """tokenizer_config.json: which class transformers builds, and the special token."""
    special = {} if tok.eot_token is None else {
        "bos_token": EOT, "eos_token": EOT, "unk_token": EOT}
    return {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": context_length,
            "clean_up_tokenization_spaces": False, **special}


def write_tokenizer(tok: Tokenizer, folder: Path, context_length: int) -> None:
    """tokenizer.json and tokenizer_config.json into folder."""
    (folder / TOKENIZER_FILE).write_text(json.dumps(tokenizer_json(tok), ensure_ascii=False))
    (folder / CONFIG_FILE).write_text(
        json.dumps(tokenizer_config(tok, context_length), indent=2) + "\n")


def read_tokenizer(folder: Path) -> Tokenizer:
    """The tokenizer a Hugging Face folder's tokenizer.json describes, as one of ours: GPT-2's
    when there is none (a folder of GPT-2 weights alone) or it is GPT-2's own; a UsageError for
    one we cannot run."""
    path = folder / TOKENIZER_FILE
    if not path.is_file():
        return GPT2Tokenizer()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        model = data["model"]
        if model["type"] != "BPE":
            raise ValueError(f"a {model['type']} model, not a BPE")
        if data.get("pre_tokenizer") is None and not model["merges"]:
            return char_tokenizer(model["vocab"])
        return byte_level_bpe(data)
    except (OSError, ValueError, KeyError, TypeError) as e:  # JSONDecodeError is a ValueError
        raise UsageError(f"cannot read {path} as a tokenizer tinygpt runs: {e} (it reads the "
                         "byte-level BPEs and character tokenizers it exports; delete the file "
                         "to read the model with GPT-2's)") from None


def char_tokenizer(vocab: dict[str, int]) -> CharTokenizer:
    chars = "".join(sorted(vocab, key=vocab.__getitem__))
    tok = CharTokenizer(chars)
    if tok.chars != chars or any(len(c) != 1 for c in vocab):
        raise ValueError("its vocabulary is not single characters in code point order")
    return tok


def byte_level_bpe(data: dict) -> TiktokenTokenizer:
    """GPT-2's, or a BPE of ours, from a byte-level tokenizer.json (ours, or GPT-2's own)."""
    steps = data["pre_tokenizer"]
    steps = steps["pretokenizers"] if steps["type"] == "Sequence" else [steps]
    splits = [s["pattern"]["Regex"] for s in steps if s["type"] == "Split"]
    byte_level = [s for s in steps if s["type"] == "ByteLevel"]
    if not byte_level or byte_level[0].get("add_prefix_space"):
        raise ValueError("its pre-tokenizer is not GPT-2's byte level")
    pattern = splits[0] if splits else GPT2_PATTERN  # ByteLevel's own regex is GPT-2's
    specials = {t["content"]: t["id"] for t in data.get("added_tokens", [])}
    vocab = {k: v for k, v in data["model"]["vocab"].items() if k not in specials}
    if set(specials) - {EOT} or sorted(vocab.values()) != list(range(len(vocab))):
        raise ValueError("it is not 0..n-1 byte-level tokens and one end-of-text token")
    if specials.get(EOT, len(vocab)) != len(vocab):
        raise ValueError(f"{EOT} is not the last id")
    ranks = {from_unicode(token): i for token, i in vocab.items()}
    if pattern == GPT2_PATTERN and ranks == gpt2_ranks():
        return GPT2Tokenizer()
    lines = "".join(f"{base64.b64encode(t).decode()} {i}\n" for t, i in ranks.items())
    return BPETokenizer(lines, pattern)
