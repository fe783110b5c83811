"""Writes the GPT-2 files and outputs that tests/test_hf.py holds our loader and exporter to, with
transformers' own GPT2LMHeadModel. Not run by the tests (they need no transformers); run it again
only to refresh them: `pip install transformers && python tests/data/hf_gpt2/generate.py`."""

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel

HERE = Path(__file__).resolve().parent
# A tiny random GPT-2: every tensor of the real layout, small enough to commit (tens of KB)
SHAPE = dict(vocab_size=96, n_positions=16, n_embd=16, n_layer=2, n_head=2,
             resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
# folder -> (tied head, safetensors or pytorch_model.bin, GELU as transformers names it)
MODELS = {"tied": (True, True, "gelu_new"), "untied_gelu": (False, True, "gelu"),
          "tied_bin": (True, False, "gelu_new")}


def main() -> None:
    torch.manual_seed(0)
    x = torch.randint(0, SHAPE["vocab_size"], (2, SHAPE["n_positions"]))
    prompt = torch.tensor([[5, 17, 42]])
    expected = {"x": x, "prompt": prompt}
    for name, (tie, safetensors, activation) in MODELS.items():
        model = GPT2LMHeadModel(GPT2Config(**SHAPE, tie_word_embeddings=tie,
                                           activation_function=activation)).eval()
        with torch.no_grad():  # every tensor far from its init (non-zero biases, LayerNorm
            for p in model.parameters():  # shifts), so that greedy decoding does not repeat
                p.add_(0.3 * torch.randn_like(p))
            expected[f"logits.{name}"] = model(x).logits
        expected[f"greedy.{name}"] = model.generate(
            prompt, max_new_tokens=12, do_sample=False, pad_token_id=0,
            attention_mask=torch.ones_like(prompt))
        model.save_pretrained(HERE / name)
        if not safetensors:  # the older format, which transformers 5 no longer writes
            weights = load_file(str(HERE / name / "model.safetensors"))
            (HERE / name / "model.safetensors").unlink()
            torch.save(weights, HERE / name / "pytorch_model.bin")
    save_file({k: v.contiguous() for k, v in expected.items()}, str(HERE / "expected.safetensors"))


if __name__ == "__main__":
    main()
