import pytest

from tinygpt.data.tokenizer import get_tokenizer, tokenizer_from_state, tokenizer_state, train_bpe
from tinygpt.errors import UsageError


def test_gpt2_ids_are_tiktokens():
    tok = get_tokenizer("gpt2")
    assert tok.encode("Hello, world") == [15496, 11, 995]
    assert tok.vocab_size == 50257 and tok.eot_token == 50256


def test_gpt2_round_trip_and_special_text_is_plain_data():
    tok = get_tokenizer("gpt2")
    text = "def f(x):\n    return x ** 2  # ünïcode <|endoftext|>"
    assert tok.decode(tok.encode(text)) == text
    assert 50256 not in tok.encode(text)


def test_gpt2_needs_no_network(monkeypatch):
    import socket

    def refuse(*a, **k):
        raise AssertionError("tokenizer tried to use the network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    from tinygpt.data import tokenizer

    tokenizer._gpt2_encoding.cache_clear()
    tokenizer.gpt2_ranks.cache_clear()
    assert get_tokenizer("gpt2").encode("hi") == [5303]


def test_char_tokenizer_round_trip_and_state():
    tok = get_tokenizer("char", text="hello world")
    assert tok.vocab_size == 8 and tok.eot_token is None
    assert tok.decode(tok.encode("low")) == "low"
    again = tokenizer_from_state(tokenizer_state(tok))
    assert again.encode("hello") == tok.encode("hello")
    with pytest.raises(ValueError, match="not in"):
        tok.encode("z")


def test_unknown_tokenizer():
    with pytest.raises(ValueError, match="data.tokenizer=.bert. is unknown"):
        get_tokenizer("bert")


TRAIN = ("The for statement is used to iterate over the elements of a sequence. "
         "The while statement is used for repeated execution as long as an expression is "
         "true. ") * 20


def test_bpe_round_trips_unseen_text_including_non_ascii():
    tok = train_bpe(TRAIN, 300)
    assert tok.vocab_size == 300 and tok.eot_token == 299
    unseen = "A generator's __next__() raises StopIteration; naïve café ünïcode 日本語 🐍\n\t"
    assert tok.decode(tok.encode(unseen)) == unseen
    assert len(tok.encode("The for statement")) < len("The for statement")  # merges learnt


def test_bpe_training_is_deterministic():
    assert train_bpe(TRAIN, 300).ranks == train_bpe(TRAIN, 300).ranks


def test_validation_text_never_shapes_the_vocabulary(tmp_path):
    from tinygpt.data.config import DataConfig
    from tinygpt.training.datamodule import TextDataModule

    base = TRAIN * 5

    def vocabulary(tail: str) -> str:
        f = tmp_path / "c.txt"
        f.write_text(base + tail)  # same length either way: the same cut, inside `base`
        cfg = DataConfig(name="text", path=str(f), tokenizer="bpe", vocab_size=300,
                         cache_dir=str(tmp_path / "cache"), val_fraction=0.1)
        dm = TextDataModule(cfg, context_length=8)
        dm.load()
        return dm.tokenizer.ranks

    n = len(base) // 20  # well inside the last tenth
    # tails so repetitive that any BPE trained on them would learn their pairs first
    assert vocabulary(("qqqq zzzz " * n)[:n]) == vocabulary(("xxxx vvvv " * n)[:n])
    assert vocabulary(("qqqq zzzz " * n)[:n]) != train_bpe(base + ("qqqq zzzz " * n)[:n],
                                                           300).ranks  # the check can fail


def test_bpe_is_cached_and_the_cache_is_what_was_trained(tmp_path, monkeypatch):
    first = get_tokenizer("bpe", text=TRAIN, vocab_size=300, cache_dir=tmp_path)
    monkeypatch.setattr("tinygpt.data.tokenizer.train_bpe", lambda *a: pytest.fail("trained again"))
    again = get_tokenizer("bpe", text=TRAIN, vocab_size=300, cache_dir=tmp_path)
    assert again.ranks == first.ranks and again.encode(TRAIN) == first.encode(TRAIN)


def test_bpe_state_round_trips_and_corruption_is_a_usage_error():
    tok = train_bpe(TRAIN, 300)
    state = tokenizer_state(tok)
    assert tokenizer_from_state(state).encode(TRAIN) == tok.encode(TRAIN)
    broken = state | {"ranks": state["ranks"][: len(state["ranks"]) // 2] + "@@@ x\n"}
    with pytest.raises(UsageError, match="stored BPE tokenizer is corrupt"):
        tokenizer_from_state(broken)


@pytest.mark.parametrize("text,vocab,match", [
    (TRAIN, 100, "too small for a byte-level BPE"),
    ("", 300, "at least two different characters"),
    ("aaaaaaaa", 300, "at least two different characters"),
])
def test_bpe_bad_input(text, vocab, match):
    with pytest.raises(UsageError, match=match):
        train_bpe(text, vocab)


def test_a_vocabulary_larger_than_the_text_supports_stops_early_with_a_warning():
    with pytest.warns(UserWarning, match="supports only"):
        tok = train_bpe("abcabcabd", 1000)
    assert 257 < tok.vocab_size < 1000 and tok.decode(tok.encode("abcd")) == "abcd"


def test_token_bytes_count_utf8_bytes_and_no_bytes_for_the_special_token():
    gpt2 = get_tokenizer("gpt2")
    tb = gpt2.token_bytes()
    assert len(tb) == 50257 and tb[50256] == 0 and tb[gpt2.encode(" the")[0]] == 4
    char = get_tokenizer("char", text="aé日")
    assert char.token_bytes() == [1, 2, 3]


def test_a_checkpoint_alone_regenerates_text_with_its_trained_tokenizer(train_run, tmp_path):
    from tinygpt.weights.complete import complete

    result, _ = train_run("data.tokenizer=bpe", "data.vocab_size=400", "trainer.max_steps=5",
                          f"data.cache_dir={tmp_path / 'own'}")
    (tmp_path / "own").rename(tmp_path / "gone")  # nothing but the checkpoint is left
    text = complete(str(result.last_checkpoint), "The for statement", 10, temperature=0)
    assert text.startswith("The for statement") and len(text) > len("The for statement")
