# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Attention from scratch, with the library's own classes
#
# Chapter 3 of *Build a Large Language Model (From Scratch)* builds attention one idea at a time.
# This notebook follows it on the chapter's own example, "Your journey starts with one step",
# computed by tinygpt's code: `tinygpt.model.forms` holds each step, and
# `tinygpt.model.attention.MultiHeadAttention` is the module the GPT trains with. It ends by
# training a tiny GPT for about a minute and drawing what its heads look at.

# %%
import os

import matplotlib.pyplot as plt
import torch

from tinygpt.lab.demos.walkthrough import INPUTS, WORDS
from tinygpt.model.attention import MultiHeadAttention
from tinygpt.model.forms import CausalAttention, SelfAttentionParams, simple_self_attention
from tinygpt.probes.attention import with_weights

torch.set_printoptions(precision=4, sci_mode=False)
x = INPUTS  # one 3-d embedding per word


def draw(weights, title, labels=WORDS):
    """A heatmap of attention weights: row = the query token, column = the key it looks at."""
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(weights.detach(), cmap="Blues", vmin=0)
    ax.set_xticks(range(len(labels)), labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_title(title, fontsize=9)
    plt.show()


# %% [markdown]
# ## 1. Attention weights without any training
#
# The query "journey" scores every token by a dot product; softmax turns the scores into weights
# that sum to one; the context vector is the weights' mix of the inputs.

# %%
query = x[1]
scores = x @ query
weights = torch.softmax(scores, dim=0)
print("scores :", scores)
print("weights:", weights, "sum", float(weights.sum()))
print("context vector for 'journey':", weights @ x)
draw(torch.softmax(x @ x.T, dim=-1), "all queries at once: softmax(X X^T)")
print("every context vector:\n", simple_self_attention(x))

# %% [markdown]
# ## 2. Trainable queries, keys and values, and the 1/sqrt(d) scale
#
# W_q, W_k and W_v let the model learn *what* to compare and *what* to pass on. The scores are
# divided by sqrt(d_k): without it their spread grows with d_k and the softmax saturates (the
# attention lab's section 1 measures it).

# %%
torch.manual_seed(123)
sa = SelfAttentionParams(d_in=3, d_out=2)
q, k = x @ sa.W_query, x @ sa.W_key
scaled = torch.softmax(q @ k.T / k.shape[-1] ** 0.5, dim=-1)
draw(scaled, "trainable W_q, W_k; scaled by 1/sqrt(d_k)")
d = 256
qs, ks = torch.randn(6, d), torch.randn(6, d)
print("largest weight per row, unscaled at d=256:",
      torch.softmax(qs @ ks.T, dim=-1).amax(-1))
print("largest weight per row, scaled:           ",
      torch.softmax(qs @ ks.T / d**0.5, dim=-1).amax(-1))

# %% [markdown]
# ## 3. The causal mask, two ways
#
# A language model must not see the token it predicts. The chapter first masks *after* the
# softmax and renormalises each row; then sets the future's scores to -inf *before* it. Both
# give the same weights — the library keeps both (`mask_impl=renorm`, `neg_inf`).

# %%
torch.manual_seed(789)
mha = MultiHeadAttention(3, 2, context_length=6, num_heads=1, backend="manual").eval()
batch = x.unsqueeze(0)
_, [neg_inf] = with_weights(mha, batch)
mha.switches.mask_impl = "renorm"
_, [renorm] = with_weights(mha, batch)
mha.switches.causal = False
_, [full] = with_weights(mha, batch)
print("renorm and -inf agree to", float((renorm - neg_inf).abs().max()))
draw(full[0, 0], "no mask: every token sees the future")
draw(neg_inf[0, 0], "causal: the upper triangle is zero")
causal = CausalAttention(3, 2, context_length=6)
print("the chapter's CausalAttention class, on a batch of two:", causal(torch.stack([x, x])).shape)

# %% [markdown]
# ## 4. Several heads
#
# Heads attend independently, each in its own slice of the width, and their outputs are joined.
# The library computes all heads in one matmul and reshapes (the book's wrapper stacks separate
# modules: `tinygpt.model.forms.MultiHeadAttentionWrapper`; the tests hold the two equal).

# %%
torch.manual_seed(0)
heads = MultiHeadAttention(3, 4, context_length=6, num_heads=2, backend="manual").eval()
_, [w] = with_weights(heads, batch)
for h in range(2):
    draw(w[0, h], f"head {h} of 2")

# %% [markdown]
# ## 5. A tiny GPT, trained, and what its heads look at
#
# `train()` runs the same code as `python scripts/train.py`, here on the embedded corpus (Python's
# documentation) for a short run (`STEPS`, a minute or so on a laptop CPU). Then one of the
# trained model's layers on a line of that text.

# %%
from tinygpt.probes.attention import attention_weights  # noqa: E402
from tinygpt.training.settings import configure  # noqa: E402
from tinygpt.training.train import train  # noqa: E402

STEPS = int(os.environ.get("NOTEBOOK_STEPS", 300))
run_dir = os.environ.get("NOTEBOOK_RUN_DIR", "outputs/notebooks/01_tiny_gpt")
QUICK = os.environ.get("NOTEBOOK_OVERRIDES", "").split()  # the tests' shortcuts
result = train(configure(f"trainer.max_steps={STEPS}", f"trainer.val_check_interval={STEPS}",
                         "trainer.enable_progress_bar=false", "model.n_layers=2",
                         "sample.max_new_tokens=40", *QUICK, run_dir=run_dir), run_dir)
print(f"val loss {result.val_loss:.3f} nats, {result.val_bpb:.3f} bits per byte")

# %%
from tinygpt.weights.checkpoint import load_model  # noqa: E402

model, tok = load_model(result.last_checkpoint)
ids = tok.encode("The for statement is used to iterate over the elements")[:24]
_, weights = attention_weights(model, torch.tensor([ids]))
labels = [tok.decode([i]) for i in ids]
for h in range(model.cfg.n_heads):
    draw(weights[-1][0, h], f"last layer, head {h}", labels)
