"""transformers causal LMs to GGUF, written with the ``gguf`` package's writer (data only, no code run).

What llama.cpp's ``convert_hf_to_gguf.py`` does for the families below, reduced to what they need: the
architecture's hyperparameters as GGUF keys, every tensor under llama.cpp's name, and for Llama-style
rotary embeddings the query and key rows permuted from transformers' half-split layout to the interleaved
one llama.cpp's ``llama`` architecture rotates. Tensors are written in float32; ``llama_model_quantize``
turns the file into the requested type afterwards.

The vocabulary is added separately (``copy_with_vocabulary``) from a saved ``tokenizer.json``: a smashed
model only learns its tokenizer when it is saved, and llama.cpp runs a vocabulary-less file from token ids.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

# model_type -> (GGUF architecture, whether q/k rows are permuted to llama.cpp's interleaved rotary layout)
FAMILIES: dict[str, tuple[str, bool]] = {
    "llama": ("llama", True),
    "mistral": ("llama", True),
    "qwen2": ("qwen2", False),
}

_LAYER_TENSORS = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_TOP_TENSORS = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}

# How llama.cpp names a BPE pre-tokenizer: the sha256 of the token ids of CHECK_TEXT, as the conversion
# script of llama-cpp-python 0.3.36's vendored llama.cpp computes it (a few of its entries).
CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple "
    "emojis concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333"
    " 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天"
    "\uff5e ------======= нещо на Български ''''''```````\"\"\"\"......!!!"
    "!!!?????? I've been 'told he's there, 'RE you sure? 'M not s"
    "ure I'll make it, 'D you like some tea? We'Ve a'lL"
)
PRE_TOKENIZERS = {
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",
}


@dataclass(frozen=True)
class Shape:
    """The hyperparameters llama.cpp reads, from a transformers config."""

    arch: str
    permute: bool
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    context: int
    rope_theta: float
    rms_eps: float
    vocab: int
    tied: bool
    rope: Mapping[str, Any]


def _rope(config: Any) -> dict[str, Any]:
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    params = dict(params)
    params.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    params.setdefault("rope_type", params.get("type", "default"))
    return params


def unsupported_reason(config: Any) -> str | None:
    """None when ``config`` describes a model this module converts, otherwise why it does not."""
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        return f"GGUF export supports model types {', '.join(sorted(FAMILIES))}, not {model_type!r}"
    if getattr(config, "attention_bias", False) and model_type != "qwen2":
        return "attention biases are not exported for Llama-style models"
    if getattr(config, "mlp_bias", False):
        return "MLP biases are not exported"
    window = getattr(config, "sliding_window", None)
    if window is not None and (model_type != "qwen2" or getattr(config, "use_sliding_window", False)):
        return f"sliding-window attention (window {window}) is not exported: llama.cpp would attend to all"
    if _rope(config)["rope_type"] not in ("default", "llama3"):
        return f"rope_type {_rope(config)['rope_type']!r} is not exported (only 'default' and 'llama3')"
    return None


def shape_of(config: Any) -> Shape:
    arch, permute = FAMILIES[config.model_type]
    heads = int(config.num_attention_heads)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return Shape(
        arch=arch,
        permute=permute,
        layers=int(config.num_hidden_layers),
        hidden=int(config.hidden_size),
        intermediate=int(config.intermediate_size),
        heads=heads,
        kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
        head_dim=int(head_dim),
        context=int(config.max_position_embeddings),
        rope_theta=float(_rope(config)["rope_theta"]),
        rms_eps=float(config.rms_norm_eps),
        vocab=int(config.vocab_size),
        tied=bool(getattr(config, "tie_word_embeddings", False)),
        rope=_rope(config),
    )


def permute_rows(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """transformers' rotate-half row order to llama.cpp's interleaved pairs (convert_hf_to_gguf's permute)."""
    return (
        weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def gguf_tensors(model: nn.Module, shape: Shape) -> Iterator[tuple[str, np.ndarray]]:
    """(GGUF name, float32 array) of every tensor llama.cpp needs, in a stable order."""
    state = model.state_dict()
    for key, name in _TOP_TENSORS.items():
        if key in state and not (shape.tied and key == "lm_head.weight"):
            yield name, _array(state[key])
    for i in range(shape.layers):
        for suffix, name in _LAYER_TENSORS.items():
            tensor = state.get(f"model.layers.{i}.{suffix}")
            if tensor is None:
                continue
            if shape.permute and suffix == "self_attn.q_proj.weight":
                tensor = permute_rows(tensor, shape.heads)
            elif shape.permute and suffix == "self_attn.k_proj.weight":
                tensor = permute_rows(tensor, shape.kv_heads)
            yield f"blk.{i}.{name}", _array(tensor)
    factors = llama3_rope_factors(shape)
    if factors is not None:
        yield "rope_freqs.weight", factors


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()


def llama3_rope_factors(shape: Shape) -> np.ndarray | None:
    """Llama 3.1's frequency-dependent rotary scaling as llama.cpp reads it (a ``rope_freqs`` tensor)."""
    if shape.rope.get("rope_type") != "llama3":
        return None
    factor = float(shape.rope.get("factor", 8.0))
    low, high = float(shape.rope.get("low_freq_factor", 1.0)), float(shape.rope.get("high_freq_factor", 4.0))
    old = float(shape.rope.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / (shape.rope_theta ** (np.arange(0, shape.head_dim, 2, dtype=np.float64) / shape.head_dim))
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


def write_float_gguf(model: nn.Module, path: Path) -> Shape:
    """Write the model as an F32 GGUF without a vocabulary; returns the shape it wrote."""
    import gguf

    shape = shape_of(model.config)
    writer = gguf.GGUFWriter(str(path), arch=shape.arch)
    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.hidden)
    writer.add_block_count(shape.layers)
    writer.add_feed_forward_length(shape.intermediate)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_key_length(shape.head_dim)
    writer.add_value_length(shape.head_dim)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_rope_freq_base(shape.rope_theta)
    writer.add_layer_norm_rms_eps(shape.rms_eps)
    writer.add_vocab_size(shape.vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("none")
    for name, array in gguf_tensors(model, shape):
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return shape


# --- the vocabulary ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vocabulary:
    """What llama.cpp's GPT-2 style (byte-level BPE) tokenizer reads from a GGUF."""

    pre: str
    tokens: list[str]
    types: list[int]
    merges: list[str]
    special: dict[str, int]
    add_bos: bool
    chat_template: str | None


def read_vocabulary(folder: Path, vocab_size: int) -> Vocabulary | None:
    """The byte-level BPE vocabulary of a saved tokenizer, or None when the folder holds another kind.

    Only JSON is read. The pre-tokenizer is named as llama.cpp names it when the tokenization of
    ``CHECK_TEXT`` is one it knows, else ``default`` (GPT-2's splitting).
    """
    path = folder / "tokenizer.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text("utf-8"))
    model = data.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        return None
    config = _json(folder / "tokenizer_config.json")
    added = {int(t["id"]): t for t in data.get("added_tokens", []) if isinstance(t, dict)}
    by_id = {int(i): tok for tok, i in model["vocab"].items()}
    by_id.update({i: t["content"] for i, t in added.items()})
    tokens, types = [], []
    for i in range(vocab_size):
        tokens.append(by_id.get(i, f"[PAD{i}]"))
        types.append(_token_type(i, by_id, added))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return Vocabulary(
        pre=_pre_tokenizer(folder),
        tokens=tokens,
        types=types,
        merges=merges,
        special=_special_ids(config, {t: i for i, t in by_id.items()}),
        add_bos=bool(config.get("add_bos_token", False)),
        chat_template=config.get("chat_template") if isinstance(config.get("chat_template"), str) else None,
    )


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text("utf-8"))
    return data if isinstance(data, dict) else {}


def _token_type(i: int, by_id: Mapping[int, str], added: Mapping[int, Mapping[str, Any]]) -> int:
    import gguf

    if i not in by_id:
        return int(gguf.TokenType.UNUSED)
    if i in added:
        special = added[i].get("special") or (by_id[i].startswith("<|") and by_id[i].endswith("|>"))
        return int(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
    return int(gguf.TokenType.NORMAL)


def _special_ids(config: Mapping[str, Any], ids: Mapping[str, int]) -> dict[str, int]:
    out = {}
    for role in ("bos", "eos", "unk", "pad"):
        token = config.get(f"{role}_token")
        if isinstance(token, dict):
            token = token.get("content")
        if isinstance(token, str) and token in ids:
            out[role] = ids[token]
    return out


def _pre_tokenizer(folder: Path) -> str:
    from transformers import PreTrainedTokenizerFast

    try:
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
        digest = sha256(str(tokenizer.encode(CHECK_TEXT)).encode()).hexdigest()
    except Exception:  # an unreadable tokenizer gets GPT-2's default splitting
        return "default"
    return PRE_TOKENIZERS.get(digest, "default")


def copy_with_vocabulary(source: Path, dest: Path, vocab: Vocabulary) -> None:
    """Copy a vocabulary-less GGUF with ``vocab`` added; tensors are copied byte for byte."""
    import gguf

    reader = gguf.GGUFReader(str(source))
    arch = str(reader.fields["general.architecture"].contents())
    writer = gguf.GGUFWriter(str(dest), arch=arch)
    for field in reader.fields.values():
        if field.name.startswith(("GGUF.", "tokenizer.")) or field.name == "general.architecture":
            continue
        types = field.types
        sub = types[-1] if types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), types[0], sub_type=sub)
    _add_vocabulary(writer, vocab)
    for tensor in reader.tensors:
        writer.add_tensor_info(
            tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes, tensor.tensor_type
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        writer.write_tensor_data(tensor.data)
    writer.close()


def _add_vocabulary(writer: Any, vocab: Vocabulary) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)
    adders = {
        "bos": writer.add_bos_token_id,
        "eos": writer.add_eos_token_id,
        "unk": writer.add_unk_token_id,
        "pad": writer.add_pad_token_id,
    }
    for role, token_id in vocab.special.items():
        adders[role](token_id)
    writer.add_add_bos_token(vocab.add_bos)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)
