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
# # Switch them off and see: the scale and the causal mask
#
# Four short runs of the default model, from Python: the scale on and off, the causal mask on and
# off. Then their losses and their attention's entropy side by side, read back from the runs'
# TensorBoard events. What to expect (the attention lab's sections 2 and 3 measure it on longer
# runs): without the mask the training loss drops far below what is possible — the model reads
# the token it is asked to predict — and collapses when scored with the mask; without the scale
# the softmax is sharper (lower entropy) and training is slower to start.

# %%
import os

import matplotlib.pyplot as plt

from tinygpt import metrics
from tinygpt.lab.report.events import scalars_by_step
from tinygpt.training.settings import configure
from tinygpt.training.train import train

STEPS = int(os.environ.get("NOTEBOOK_STEPS", 200))
root = os.environ.get("NOTEBOOK_RUN_DIR", "outputs/notebooks/02_toggles")
QUICK = os.environ.get("NOTEBOOK_OVERRIDES", "").split()  # the tests' shortcuts
settings = {
    "default": [],
    "scale off": ["model.attention.scale=false"],
    "mask off": ["model.attention.causal=false"],
    "both off": ["model.attention.scale=false", "model.attention.causal=false"],
}
results = {}
for name, overrides in settings.items():
    run_dir = f"{root}/{name.replace(' ', '_')}"
    results[name] = train(configure(*overrides, f"trainer.max_steps={STEPS}",
                                    f"trainer.val_check_interval={max(STEPS // 4, 1)}",
                                    f"probes.every={max(STEPS // 10, 5)}",
                                    "trainer.enable_progress_bar=false",
                                    "sample.max_new_tokens=0", *QUICK, run_dir=run_dir), run_dir)
    print(f"{name:10s} val loss {results[name].val_loss:.3f}")

# %% [markdown]
# ## The losses
#
# A model trained without the mask is also scored *with* it (`val/loss_causal_eval`): that is its
# loss as a language model, and the gap to its own val loss is what it took from the future.

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
for name, r in results.items():
    train_loss = scalars_by_step(r.run_dir, metrics.TRAIN_LOSS)
    ax1.plot(list(train_loss), list(train_loss.values()), label=name)
    val = scalars_by_step(r.run_dir, metrics.VAL_LOSS)
    causal = scalars_by_step(r.run_dir, metrics.VAL_LOSS_CAUSAL) or val
    ax2.plot(list(causal), list(causal.values()), marker="o", label=name)
ax1.set(title="train loss (nats)", xlabel="step")
ax2.set(title="val loss with the mask on (nats)", xlabel="step")
ax1.legend()
plt.show()

# %% [markdown]
# ## What the attention does
#
# The entropy of each attention row, averaged over heads, per layer (nats; the dashed line is
# uniform attention over the keys a row may see). Lower is sharper.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
for layer, ax in zip((0, 3), axes, strict=True):
    for name, r in results.items():
        h = scalars_by_step(r.run_dir, metrics.layer_tag("entropy", layer))
        ax.plot(list(h), list(h.values()), label=name)
    uniform = scalars_by_step(results["default"].run_dir, metrics.ENTROPY_UNIFORM)
    ax.axhline(next(iter(uniform.values())), ls="--", c="grey")
    ax.set(title=f"attention entropy, layer {layer}", xlabel="step")
axes[0].legend()
plt.show()
