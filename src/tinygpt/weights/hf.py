"""Hugging Face GPT-2 files <-> `GPT`: load a local GPT-2 directory, export one back (with its
tokenizer: `hf_tokenizer`).

Hugging Face stores GPT-2's projections as Conv1D, weights (in, out): ours are nn.Linear,
(out, in), so every projection is transposed on the way in and out. Nothing here downloads.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from torch import Tensor

from tinygpt.atomic import temporary_beside
from tinygpt.data.tokenizer import Tokenizer
from tinygpt.errors import UsageError
from tinygpt.model.config import Activation
from tinygpt.model.gpt import GPT, AttentionConfig, GPTConfig
from tinygpt.weights.hf_tokenizer import TOKENIZER_FILE, read_tokenizer, write_tokenizer

# HF names per block -> ours, and whether the tensor is a Conv1D weight (transposed).
_BLOCK = {
    "ln_1.weight": ("ln1.weight", False), "ln_1.bias": ("ln1.bias", False),
    "attn.c_attn.weight": ("attn.qkv.weight", True), "attn.c_attn.bias": ("attn.qkv.bias", False),
    "attn.c_proj.weight": ("attn.out_proj.weight", True),
    "attn.c_proj.bias": ("attn.out_proj.bias", False),
    "ln_2.weight": ("ln2.weight", False), "ln_2.bias": ("ln2.bias", False),
    "mlp.c_fc.weight": ("mlp.fc.weight", True), "mlp.c_fc.bias": ("mlp.fc.bias", False),
    "mlp.c_proj.weight": ("mlp.proj.weight", True), "mlp.c_proj.bias": ("mlp.proj.bias", False),
}
_TOP = {"wte.weight": "tok_emb.weight", "wpe.weight": "pos_emb.weight",
        "ln_f.weight": "ln_f.weight", "ln_f.bias": "ln_f.bias"}


# Hugging Face's names of the GELUs: gelu_new is GPT-2's tanh form, gelu the erf form
_HF_GELU = {"gelu_new": Activation.gelu, "gelu": Activation.gelu_exact}


def config_from_hf(hf: dict) -> GPTConfig:
    """A GPTConfig for a Hugging Face GPT-2 config.json; UsageError for what we cannot build."""
    if hf.get("model_type", "gpt2") != "gpt2":
        raise UsageError(f"model_type={hf.get('model_type')!r} is not GPT-2 "
                         "(give a GPT-2 directory)")
    activation = hf.get("activation_function", "gelu_new")
    checks = {
        "activation_function": (activation, activation if activation in _HF_GELU else "gelu_new"),
        "scale_attn_weights": (hf.get("scale_attn_weights", True), True),
        "scale_attn_by_inverse_layer_idx": (
            hf.get("scale_attn_by_inverse_layer_idx", False), False),
        "n_inner": (hf.get("n_inner") or 4 * hf["n_embd"], 4 * hf["n_embd"]),
        "layer_norm_epsilon": (hf.get("layer_norm_epsilon", 1e-5), 1e-5),
        "add_cross_attention": (hf.get("add_cross_attention", False), False),
    }
    for key, (value, ours) in checks.items():
        if value != ours:
            raise UsageError(f"config.json has {key}={value}: this GPT only has {key}={ours} "
                             "(use a standard GPT-2 checkpoint)")
    return GPTConfig(
        vocab_size=hf["vocab_size"], context_length=hf["n_positions"], emb_dim=hf["n_embd"],
        n_heads=hf["n_head"], n_layers=hf["n_layer"], drop_rate=float(hf.get("resid_pdrop", 0.0)),
        qkv_bias=True, tie_weights=hf.get("tie_word_embeddings", True),
        activation=_HF_GELU[activation],
    )


def config_to_hf(cfg: GPTConfig, eot: int | None = 50256) -> dict:
    """The config.json of a Hugging Face GPT2LMHeadModel with this shape, whose tokenizer's
    end-of-text token is `eot` (GPT-2's by default; None for a tokenizer without one)."""
    a = cfg.attention
    if not (a.scale and a.causal):
        off = [name for name, on in (("scale", a.scale), ("causal", a.causal)) if not on]
        flags = ", ".join(f"{n}=false" for n in off)
        raise UsageError(f"Hugging Face GPT-2 always scales and masks attention; this model has "
                         f"{flags} (export a model trained with both)")
    gpt2 = AttentionConfig(scale=a.scale, causal=a.causal, mask_impl=a.mask_impl,
                           backend=a.backend)  # what GPT-2 has; the seed's mask exports
    beyond = [f"{k}={getattr(v, 'value', v)}" for k, v in vars(a).items()
              if v != getattr(gpt2, k)]
    if cfg.positions != "learned":
        beyond.insert(0, f"positions={cfg.positions.value}")
    if a.n_kv_heads == cfg.n_heads:  # grouped-query with as many groups as heads is plain MHA
        beyond.remove(f"n_kv_heads={a.n_kv_heads}")
    if cfg.activation not in _HF_GELU.values():
        beyond.append(f"activation={cfg.activation.value}")
    if cfg.logit_softcap is not None:
        beyond.append(f"logit_softcap={cfg.logit_softcap}")
    if beyond:
        raise UsageError(f"Hugging Face GPT-2 has learned positions, plain multi-head "
                         f"attention, a GELU and uncapped logits; this model has "
                         f"{', '.join(beyond)} (export a model trained without them)")
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.context_length, "n_ctx": cfg.context_length,
        "n_embd": cfg.emb_dim, "n_head": cfg.n_heads, "n_layer": cfg.n_layers, "n_inner": None,
        "activation_function": next(k for k, v in _HF_GELU.items() if v == cfg.activation),
        "layer_norm_epsilon": 1e-5,
        "resid_pdrop": cfg.drop_rate, "embd_pdrop": cfg.drop_rate, "attn_pdrop": cfg.drop_rate,
        "initializer_range": 0.02, "scale_attn_weights": True,
        "tie_word_embeddings": cfg.tie_weights, "bos_token_id": eot, "eos_token_id": eot,
    }


def state_dict_from_hf(sd: dict[str, Tensor], cfg: GPTConfig) -> dict[str, Tensor]:
    """Map a GPT2LMHeadModel state dict (with or without the `transformer.` prefix) to ours."""
    sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
    out = {ours: sd[hf] for hf, ours in _TOP.items()}
    for i in range(cfg.n_layers):
        for hf, (ours, conv) in _BLOCK.items():
            t = sd[f"h.{i}.{hf}"]
            out[f"blocks.{i}.{ours}"] = t.t().contiguous() if conv else t
    out["head.weight"] = sd["wte.weight"] if cfg.tie_weights else sd["lm_head.weight"]
    pad = cfg.padded_vocab_size - cfg.vocab_size
    for k in ("tok_emb.weight", "head.weight"):  # padding rows, if our config asks for them
        out[k] = torch.nn.functional.pad(out[k], (0, 0, 0, pad))
    return out


def state_dict_to_hf(model: GPT) -> dict[str, Tensor]:
    """Our state dict in GPT2LMHeadModel's names and layouts (tied head stored once, as HF does)."""
    cfg, sd = model.cfg, model.state_dict()

    def tensor(ours: str) -> Tensor:
        if ours in sd:
            return sd[ours]
        # a bias this model lacks (qkv_bias, bias): GPT-2 always has one, and zero is the same
        weight = sd[ours.removesuffix("bias") + "weight"]
        return weight.new_zeros(weight.shape[0])

    out = {f"transformer.{hf}": tensor(ours) for hf, ours in _TOP.items()}
    out["transformer.wte.weight"] = sd["tok_emb.weight"][: cfg.vocab_size]  # drop padding
    for i in range(cfg.n_layers):
        for hf, (ours, conv) in _BLOCK.items():
            t = tensor(f"blocks.{i}.{ours}")
            out[f"transformer.h.{i}.{hf}"] = (t.t() if conv else t).contiguous()
    if not cfg.tie_weights:
        out["lm_head.weight"] = sd["head.weight"][: cfg.vocab_size]
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}


def load_hf_model(directory: str | Path, attention: AttentionConfig | None = None
                  ) -> tuple[GPT, Tokenizer]:
    """A Hugging Face GPT-2 folder's model and its tokenizer (`read_tokenizer`: GPT-2's where
    the folder has none); a UsageError where the two do not fit."""
    model, tok = load_hf_gpt2(directory, attention), read_tokenizer(Path(directory))
    if tok.vocab_size != model.cfg.vocab_size:
        raise UsageError(f"{Path(directory) / TOKENIZER_FILE} has {tok.vocab_size} tokens and "
                         f"the model {model.cfg.vocab_size} (export the model again)")
    return model, tok


def load_hf_gpt2(directory: str | Path, attention: AttentionConfig | None = None) -> GPT:
    """A GPT holding the weights of a local Hugging Face GPT-2 directory (config.json + weights);
    a UsageError for a folder it cannot read. Weights are read without running pickled code:
    safetensors, or a `pytorch_model.bin` of tensors alone."""
    d = Path(directory)
    if not (d / "config.json").is_file():
        raise UsageError(f"{d} holds no config.json (point at a Hugging Face GPT-2 directory)")
    cfg = config_from_hf(read_hf_config(d / "config.json"))
    if attention is not None:
        cfg.attention = attention
    model = GPT(cfg)
    try:
        model.load_state_dict(state_dict_from_hf(read_hf_weights(d), cfg))
    except (KeyError, RuntimeError) as e:
        raise UsageError(f"the weights in {d} do not match its config.json: "
                         f"{str(e).splitlines()[0]} (re-save the model)") from None
    return model


def read_hf_config(path: Path) -> dict:
    """A config.json as a dict, with the keys a GPT-2 needs; a UsageError for anything else."""
    try:
        hf = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"cannot read {path}: {e} (save the model again with "
                         "save_pretrained)") from None
    missing = [k for k in ("vocab_size", "n_positions", "n_embd", "n_head", "n_layer")
               if not isinstance(hf, dict) or not isinstance(hf.get(k), int)]
    if missing:
        raise UsageError(f"{path} lacks GPT-2's {', '.join(missing)} (give a GPT-2 "
                         "config.json)")
    return hf


def read_hf_weights(d: Path) -> dict[str, Tensor]:
    """The state dict of a Hugging Face folder: model.safetensors, else pytorch_model.bin read
    as tensors alone (a pickle that would build anything else is refused, never run)."""
    if (d / "model.safetensors").is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(d / "model.safetensors"))
        except (SafetensorError, OSError) as e:
            raise UsageError(f"cannot read {d / 'model.safetensors'}: {e} (save the model "
                             "again with save_pretrained)") from None
    if (d / "pytorch_model.bin").is_file():
        try:
            return torch.load(d / "pytorch_model.bin", map_location="cpu", weights_only=True)
        except Exception as e:  # not a checkpoint, or a pickle that wants to run code
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise UsageError(f"cannot read {d / 'pytorch_model.bin'} as weights alone: {first} "
                             "(convert it to model.safetensors, or save it again)") from None
    raise UsageError(f"{d} holds neither model.safetensors nor pytorch_model.bin "
                     "(save the model with save_pretrained)")


def save_hf_gpt2(model: GPT, directory: str | Path, tokenizer: Tokenizer | None = None) -> None:
    """Write config.json and model.safetensors that transformers' from_pretrained reads, and the
    tokenizer's files where one is given: all into a folder beside `directory`, which then
    becomes it (or, where it is there already, each file moves into it whole; what else it
    holds stays)."""
    from safetensors.torch import save_file

    if tokenizer is not None and tokenizer.vocab_size != model.cfg.vocab_size:
        raise UsageError(f"the tokenizer has {tokenizer.vocab_size} tokens and the model "
                         f"{model.cfg.vocab_size} (export the tokenizer it was trained with)")
    config = config_to_hf(model.cfg, 50256 if tokenizer is None else tokenizer.eot_token)
    d = Path(directory)
    d.parent.mkdir(parents=True, exist_ok=True)
    work = temporary_beside(d)
    work.mkdir()
    try:
        save_file(state_dict_to_hf(model), str(work / "model.safetensors"),
                  metadata={"format": "pt"})
        if tokenizer is not None:
            write_tokenizer(tokenizer, work, model.cfg.context_length)
        (work / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        if not d.exists():
            os.replace(work, d)
            return
        # the weights and tokenizer first: a config names only files that are whole
        for name in sorted(os.listdir(work), key=lambda n: n == "config.json"):
            os.replace(work / name, d / name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
