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
# # Watch an induction head form
#
# Attention lab IV in one notebook. Half the training windows are random tokens followed by chunks
# copied from earlier in the window, so most of their tokens repeat what followed an earlier
# occurrence of the token before them — at no fixed distance. Two layers learn to copy them with
# an *induction circuit*: a head in layer 0 that looks at the previous token, and a head in
# layer 1 that looks for the token after the last time it saw the current one. One layer cannot.
# It happens suddenly: the *phase change* (Olsson et al. 2022). The other half of the windows are
# text, where previous-token heads come from.
#
# One two-layer run is `experiment=copy_task` (under two minutes on a 2-core CPU); `STEPS`
# shortens it.

# %%
import os

import matplotlib.pyplot as plt

from tinygpt import metrics
from tinygpt.data.config import Synthetic
from tinygpt.lab.report.events import scalars_by_step
from tinygpt.lab.report.formation import formation_step
from tinygpt.probes.attention import attention_weights
from tinygpt.probes.circuit import (
    ablated,
    ablation_check,
    circuit_scores,
    copy_losses,
    copy_windows,
)
from tinygpt.training.settings import configure
from tinygpt.training.train import train
from tinygpt.weights.checkpoint import load_model

STEPS = int(os.environ.get("NOTEBOOK_STEPS", 2000))
root = os.environ.get("NOTEBOOK_RUN_DIR", "outputs/notebooks/03_induction")
QUICK = os.environ.get("NOTEBOOK_OVERRIDES", "").split()  # the tests' shortcuts
runs = {}
for layers in (2, 1):
    run_dir = f"{root}/layers_{layers}"
    runs[layers] = train(configure("experiment=copy_task", "seed=1",
                                   f"model.n_layers={layers}", f"trainer.max_steps={STEPS}",
                                   f"trainer.val_check_interval={STEPS}",
                                   "trainer.enable_progress_bar=false", *QUICK,
                                   run_dir=run_dir), run_dir)

# %% [markdown]
# ## The phase change
#
# The loss on the copied tokens (solid) and on the rest (dashed): the rest cannot be predicted,
# so it stays near log(320) = 5.8 nats. The two-layer copy loss sits on a plateau, then falls in
# a few hundred steps; "formed" is where it crosses half its start.

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
for layers, r in runs.items():
    copy = scalars_by_step(r.run_dir, metrics.COPY_LOSS)
    rest = scalars_by_step(r.run_dir, metrics.REST_LOSS)
    line, = ax.plot(list(copy), list(copy.values()), label=f"{layers} layer(s): copied tokens")
    ax.plot(list(rest), list(rest.values()), ls="--", c=line.get_color(), label="the rest")
    step = formation_step(list(copy), list(copy.values()))
    print(f"{layers} layer(s): formed at step", None if step is None else round(step))
ax.set(xlabel="step", ylabel="nats per token")
ax.legend()
plt.show()

# %% [markdown]
# ## The circuit
#
# On one such window: layer 0's best previous-token head puts its weight one step back (the
# line just below the diagonal); layer 1's best induction head looks at the token *after* the
# earlier occurrence of the current token (the stripes off the diagonal).

# %%
model, tok = load_model(runs[2].last_checkpoint)
task = Synthetic(kind="copies")
windows, copied = copy_windows(model.cfg.vocab_size, 49, task, n=1, seed=7)
_, weights = attention_weights(model, windows[:, :-1])
induction, previous = circuit_scores(weights, windows, copied)
fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
for ax, layer, scores, what in ((axes[0], 0, previous, "previous-token"),
                                (axes[1], 1, induction, "induction")):
    head = int(scores[layer].argmax())
    ax.imshow(weights[layer][0, head], cmap="Blues", vmin=0)
    ax.set_title(f"layer {layer} head {head}: {what} score {scores[layer, head]:.2f}")
plt.show()

# %% [markdown]
# ## Is it the circuit, or just copying? Ablate a head
#
# Zero the previous-token head's output and the copy loss goes back up; zero another head of
# layer 0 and it (mostly) does not.

# %%
probe, is_copy = copy_windows(model.cfg.vocab_size, model.cfg.context_length + 1, task)
check = ablation_check(model, probe, is_copy)
print(f"copy loss {check.intact:.2f} nats")
print(f"without layer 0's previous-token head (head {check.previous_head}): "
      f"{check.without_previous:.2f}")
for h, loss in check.without_other.items():
    print(f"without layer 0's head {h}: {loss:.2f}")
with ablated(model, 0, [check.previous_head]):
    print("and the copies, with it ablated:", copy_losses(model, probe, is_copy))
