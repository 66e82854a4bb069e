"""Weight bytes read per decoded token count what the operators read, not what the model keeps."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from smash import smash
from smash.evaluation.bandwidth import read_bandwidth, weight_bytes_read_per_token
from smash.evaluation.efficiency import weight_bytes


def test_a_plain_model_reads_every_weight_but_only_rows_of_its_embedding(
    make_tiny_llama: Callable[..., torch.nn.Module],
) -> None:
    model = make_tiny_llama(tie_word_embeddings=False)
    named = dict(model.named_parameters())
    expected = sum(p.nbytes for name, p in named.items() if not name.startswith("model.embed_tokens"))
    expected += model.model.rotary_emb.inv_freq.nbytes  # the frequencies are read; the original copy is not
    assert weight_bytes_read_per_token(model) == expected


def test_a_tied_head_reads_the_shared_table_once(make_tiny_llama: Callable[..., torch.nn.Module]) -> None:
    model = make_tiny_llama(tie_word_embeddings=True)
    expected = sum(p.nbytes for p in model.parameters()) + model.model.rotary_emb.inv_freq.nbytes
    assert weight_bytes_read_per_token(model) == expected  # parameters() lists the tied table once


def test_quantized_layers_count_their_kernel_layout_not_the_saved_copy(tiny_llama: torch.nn.Module) -> None:
    base_read = weight_bytes_read_per_token(tiny_llama)
    linears = sum(p.nbytes for name, p in tiny_llama.named_parameters() if name.endswith("proj.weight"))
    smashed = smash(tiny_llama, {"hqq": {"weight_bits": 4, "group_size": 32}})
    read = weight_bytes_read_per_token(smashed)
    assert read < weight_bytes(smashed)  # the packed copy kept for saving is resident but not read
    # fp32 -> 4 bits is 8x on the linears; scales and zeros add a little back
    assert base_read - linears < read < base_read - linears + linears / 4


def test_read_bandwidth_is_a_finite_positive_rate() -> None:
    rate = read_bandwidth(megabytes=16, repeats=3)
    assert rate > 0 and math.isfinite(rate)
