"""tinygpt: a training lab for a tiny GPT whose attention you can take apart."""

from tinygpt.attention import MultiHeadAttention
from tinygpt.model import GPT, AttentionConfig, GPTConfig

__all__ = ["GPT", "AttentionConfig", "GPTConfig", "MultiHeadAttention"]
