"""The seed's worked example, step by step, computed by the library's own attention code
(`tinygpt-walkthrough` prints it)."""

from __future__ import annotations

import torch

from tinygpt.model.attention import MultiHeadAttention
from tinygpt.model.forms import (
    CausalAttention,
    MultiHeadAttentionWrapper,
    SelfAttentionParams,
    simple_self_attention,
)
from tinygpt.probes.attention import with_weights

WORDS = ["Your", "journey", "starts", "with", "one", "step"]
INPUTS = torch.tensor(
    [
        [0.43, 0.15, 0.89],
        [0.55, 0.87, 0.66],
        [0.57, 0.85, 0.64],
        [0.22, 0.58, 0.33],
        [0.77, 0.25, 0.10],
        [0.05, 0.80, 0.55],
    ]
)


def show(title: str, t: torch.Tensor) -> None:
    print(f"\n{title}")
    print(t)


@torch.no_grad()
def walkthrough() -> None:
    """Print the chapter's example ("Your journey starts with one step") form by form."""
    torch.set_printoptions(precision=4, sci_mode=False)
    x = INPUTS

    print("Inputs: one 3-d embedding per token of", " ".join(f'"{w}"' for w in WORDS))
    query = x[1]
    scores = x @ query
    show("1. Scores of every token against the query 'journey' (dot products x_i . x_2):", scores)
    weights = torch.softmax(scores, dim=0)
    show("   Attention weights: softmax of the scores (they sum to 1):", weights)
    print(f"   sum = {weights.sum().item():.4f}")
    show("   Context vector for 'journey': the weights' mix of all inputs:", weights @ x)

    show("2. All weights at once, softmax(X X^T), row i = token i's query:",
         torch.softmax(x @ x.T, dim=-1))
    show("   All context vectors (row 2 is the vector above):", simple_self_attention(x))

    torch.manual_seed(123)
    sa = SelfAttentionParams(d_in=3, d_out=2)
    q, k = x @ sa.W_query, x @ sa.W_key
    show("3. Trainable W_q, W_k, W_v (seeded, d_out=2). Scores q_2 . k_i:", k @ q[1])
    show("   Scaled by 1/sqrt(d_k) before the softmax, so the softmax does not saturate:",
         torch.softmax(k @ q[1] / k.shape[-1] ** 0.5, dim=-1))
    show("   Context vectors from the trainable form:", sa(x))

    torch.manual_seed(789)
    mha = MultiHeadAttention(3, 2, context_length=6, num_heads=1, backend="manual").eval()
    batch = x.unsqueeze(0)
    _, [w_neg_inf] = with_weights(mha, batch)
    mha.switches.mask_impl = "renorm"
    _, [w_renorm] = with_weights(mha, batch)
    mha.switches.causal = False
    _, [w_full] = with_weights(mha, batch)
    show("4. Without a mask every token attends to later tokens too:", w_full[0, 0])
    show("   Causal, the seed's way: softmax, zero above the diagonal, renormalise rows:",
         w_renorm[0, 0])
    show("   Causal, set the future's scores to -inf before softmax:", w_neg_inf[0, 0])
    diff = (w_renorm - w_neg_inf).abs().max().item()
    print(f"   The two causal forms agree: max |difference| = {diff:.2e}")

    torch.manual_seed(123)
    batch2 = torch.stack([x, x])
    single = CausalAttention(3, 2, context_length=6).eval()
    show("5. CausalAttention on a batch of two copies, shape "
         f"{tuple(single(batch2).shape)}:", single(batch2)[0])
    torch.manual_seed(123)
    heads = MultiHeadAttentionWrapper(3, 4, context_length=6, num_heads=2).eval()
    out = heads(batch2)
    show(f"6. Two heads stacked side by side (2 x 2 = 4 columns), shape {tuple(out.shape)}:",
         out[0])

