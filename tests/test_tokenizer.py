import pytest

from tinygpt.tokenizer import get_tokenizer, tokenizer_from_state, tokenizer_state


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
    from tinygpt import tokenizer

    tokenizer._gpt2_encoding.cache_clear()
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
