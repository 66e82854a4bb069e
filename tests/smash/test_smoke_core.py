from pathlib import Path

import torch

from smash import PrunaModel, SmashConfig, smash


def test_half_round_trip(tiny_llama: torch.nn.Module, tmp_path: Path) -> None:
    smashed = smash(tiny_llama, SmashConfig({"half": {"dtype": "bfloat16"}}))
    ids = torch.randint(0, 256, (1, 12))
    with torch.no_grad():
        before = smashed(ids).logits
    smashed.save_pretrained(tmp_path)
    loaded = PrunaModel.from_pretrained(tmp_path)
    with torch.no_grad():
        after = loaded(ids).logits
    assert before.dtype == torch.bfloat16
    assert torch.equal(before, after)
    assert next(tiny_llama.parameters()).dtype == torch.float32  # input untouched
