"""`pruna-hub bench` on a real (tiny, random-weight) model folder, through click's runner and main()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from pruna_hub.cli import cli, main
from smash.evaluation import EvaluationReport

FAST = [
    "--prompt-length",
    "8",
    "--gen-length",
    "3",
    "--gen-length",
    "6",
    "--runs",
    "1",
    "--quality-prompts",
    "3",
]


@pytest.fixture
def model_dir(tiny_llama: torch.nn.Module, tmp_path: Path) -> Path:
    path = tmp_path / "tiny"
    tiny_llama.save_pretrained(path)
    return path


def test_bench_json_is_a_full_report(model_dir: Path, tmp_path: Path) -> None:
    plot = tmp_path / "sweep.png"
    args = ["bench", str(model_dir), "--config", '{"half": {"dtype": "bfloat16"}}', *FAST]
    result = CliRunner().invoke(
        cli, [*args, "--format", "json", "--plot", str(plot), "--output", str(tmp_path / "r.json")]
    )
    assert result.exit_code == 0, result.output
    report = EvaluationReport.from_json(result.stdout)
    assert report.settings.generation_lengths == (3, 6) and report.settings.measured_runs == 1
    assert (report.base.dtype, report.smashed.dtype) == ("float32", "bfloat16")
    assert report.base.disk_bytes is not None and report.smashed.disk_bytes is not None
    assert report.smashed.disk_bytes < report.base.disk_bytes
    assert report.quality is not None and report.quality.prompts == 3 and report.quality.top1_agreement > 0.8
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert EvaluationReport.from_json((tmp_path / "r.json").read_text()) == report


def test_bench_table_reads_config_from_a_file(model_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "smash_config.json"
    config.write_text(json.dumps({"format_version": 1, "algorithms": {"half": {"dtype": "float16"}}}))
    result = CliRunner().invoke(
        cli, ["bench", str(model_dir), "--config", str(config), *FAST, "--no-quality"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [cell.strip() for cell in lines[0].split("|")[1:-1]] == ["metric", "base", "smashed"]
    assert any(line.startswith("| prefill (TTFT) mean / std / max s") for line in lines)
    assert any("float16 / loop" in line for line in lines)
    assert not any("KL" in line for line in lines)


def test_bench_bad_config_is_one_message_naming_the_algorithm(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", str(model_dir), "--config", '{"nosuch": {}}', *FAST])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "unknown algorithm 'nosuch'" in err and "Traceback" not in err


def test_bench_config_that_is_neither_json_nor_file(model_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["bench", str(model_dir), "--config", "missing.json"])
    assert result.exit_code == 2
    assert "neither inline JSON nor an existing file" in result.output


def test_bench_takes_a_hub_repo_id(model_dir: Path, tmp_path: Path) -> None:
    """A repo id is downloaded through the project's HubClient (here from the local store), pinned to
    --revision, with the files a sync downloads."""
    from huggingface_hub import HfApi

    from pruna_hub.hubstore import LocalHub

    store = tmp_path / "store"
    with LocalHub(store).install():
        api = HfApi()
        api.create_repo("acme/tiny")
        commit = api.upload_folder(repo_id="acme/tiny", folder_path=model_dir).oid
    args = ["bench", "acme/tiny", "--local-hub", str(store), "--revision", commit]
    result = CliRunner().invoke(
        cli, [*args, "--config", '{"half": {"dtype": "bfloat16"}}', *FAST, "--no-quality", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    report = EvaluationReport.from_json(result.stdout)
    assert (report.base.dtype, report.smashed.dtype) == ("float32", "bfloat16")

    result = CliRunner().invoke(cli, ["bench", "not a repo!", "--config", "{}", "--local-hub", str(store)])
    assert result.exit_code == 2 and "neither a folder nor a Hub repo id" in result.output
