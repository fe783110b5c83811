"""tinygpt-heads' pictures: the head it picks is the one the scores rank first."""

import pytest
import torch

from tinygpt.data.tokenizer import get_tokenizer
from tinygpt.lab.demos.heads import best_head, draw_heads
from tinygpt.model.gpt import GPT, GPTConfig


def test_the_best_head_is_the_largest_entry():
    assert best_head(torch.tensor([[0.1, 0.2], [0.9, 0.3], [0.0, 0.5]])) == (1, 0)
    assert best_head(torch.tensor([[0.1, 0.2, 0.7]])) == (0, 2)


def test_draw_heads_writes_both_pictures_and_names_the_heads(tmp_path):
    text = "def f(x):\n    return x + 1\n" * 20
    tok = get_tokenizer("bpe", text=text, vocab_size=270, cache_dir=tmp_path)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, context_length=64, emb_dim=32, n_heads=2,
                          n_layers=2))
    drawn = draw_heads(model.eval(), tok, text, tmp_path / "out")
    assert [p.name for p, _ in drawn] == ["induction_head.png", "sink_head.png"]
    for path, title in drawn:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert title.startswith("layer ") and " head " in title


def test_the_cli_answers_a_folder_without_a_model_with_one_error_line(tmp_path, monkeypatch,
                                                                     capsys):
    from tinygpt.cli.heads import main

    monkeypatch.setattr("sys.argv", ["tinygpt-heads", str(tmp_path), "--out",
                                     str(tmp_path / "heads")])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1
    assert err[0].startswith("error: ") and "holds neither checkpoints/last.ckpt" in err[0]
    assert not (tmp_path / "heads").exists()


def test_draw_circuit_writes_both_heads_and_the_ablation_line(tmp_path):
    from tinygpt.lab.demos.heads import draw_circuit

    tok = get_tokenizer("char", text="abcdefghijklmnopqrstuvwxyz")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, context_length=40, emb_dim=32, n_heads=2,
                          n_layers=2))
    drawn = draw_circuit(model.eval(), tok, tmp_path / "out")
    assert [p.name for p, _ in drawn[:2]] == ["circuit_previous_token.png",
                                              "circuit_induction.png"]
    assert drawn[0][1].startswith("layer 0 head ") and drawn[1][1].startswith("layer 1 head ")
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p, _ in drawn[:2])
    assert "without layer 0's previous-token head" in drawn[2][1]
