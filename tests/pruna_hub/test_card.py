"""Model cards: the YAML header parses with huggingface_hub and carries what the Hub reads, hostile base-card
text never reaches the header (nor live Markdown/HTML in the body), and the how-to-use snippet runs against a
model published to the local Hub store through the real huggingface_hub client.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from huggingface_hub import HfApi, ModelCard

from pruna_hub.card import (
    PROMPT,
    SNIPPET_START,
    AppliedAlgorithm,
    BaseCard,
    CardInput,
    applied_algorithms,
    extract_snippet,
    flatten_efficiency,
    render_card,
)
from pruna_hub.errors import CardError
from pruna_hub.recipes import load_recipes
from smash import SmashConfig, smash

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
REPO = "PrunaAI/SmolLM2-135M-Instruct-smashed-hqq-8bit-cpu"
REVISION = "12fd25f77366fa6b3b4b768ec3050bf629380bac"
HEADER_KEYS = {
    "base_model",
    "base_model_relation",
    "library_name",
    "license",
    "license_name",
    "license_link",
    "pipeline_tag",
    "tags",
    "language",
    "model-index",
}


def make_input(base: BaseCard | None = None, **overrides: Any) -> CardInput:
    """A card input built from the real built-in CPU Llama recipe and plausible measurements."""
    recipe = load_recipes().get("llama-cpu-hqq8")
    config = recipe.smash_config()
    data = CardInput(
        repo_id=REPO,
        base_repo_id=BASE,
        base_revision=REVISION,
        base=base
        or BaseCard(license="apache-2.0", pipeline_tag="text-generation", tags=["safetensors", "chat"]),
        recipe_name=recipe.name,
        recipe_version=recipe.version,
        recipe_hash=recipe.content_hash,
        device=recipe.device,
        algorithms=applied_algorithms(config, recipe.order),
        smash_config_json=config.to_json(),
        metrics={
            "base": {"ttft_s.mean": 0.05, "decode_latency_s.mean": 0.057, "weight_bytes": 538_000_000},
            "smashed": {"ttft_s.mean": 0.03, "decode_latency_s.mean": 0.030, "weight_bytes": 160_000_000},
        },
        quality={
            "top1_agreement": 0.98,
            "kl_mean": 0.0012,
            "perplexity_base": 18.8,
            "perplexity_smashed": 19.0,
        },
        quality_gate=recipe.quality_gate.to_dict(),
        hardware={"cpu": "x86_64, 2 cores"},
        versions={"smash": "0.1.0", "torch": torch.__version__},
        plot_filename="benchmark/latency_memory.png",
    )
    return dataclasses.replace(data, **overrides)


def header_of(text: str) -> dict[str, Any]:
    assert text.startswith("---\n")
    header = yaml.safe_load(text.split("---\n")[1])
    assert isinstance(header, dict)
    return header


def test_header_parses_and_carries_the_hub_fields(tmp_path: Path) -> None:
    text = str(
        render_card(
            make_input(
                base=BaseCard(
                    license="apache-2.0",
                    pipeline_tag="text-generation",
                    tags=["safetensors", "chat", "transformers"],
                    language=["en"],
                )
            )
        )
    )
    path = tmp_path / "README.md"
    path.write_text(text)
    card = ModelCard.load(path)  # huggingface_hub's own parser
    data = card.data.to_dict()
    assert data["base_model"] == BASE
    assert data["base_model_relation"] == "quantized"
    assert data["license"] == "apache-2.0"
    assert data["library_name"] == "smash"
    assert data["pipeline_tag"] == "text-generation"
    assert data["language"] == ["en"]
    assert data["tags"] == ["chat", "pruna-hub", "smashed", "hqq", "static_cache", "torch_compile"]
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["top1_agreement"] == pytest.approx(0.98) and results["kl_mean"] == pytest.approx(0.0012)
    assert results["decode_latency_s_mean"] == pytest.approx(0.030)
    assert card.data.model_name == REPO
    assert set(header_of(text)) <= HEADER_KEYS


def test_body_has_what_was_done_benchmark_quality_and_provenance() -> None:
    data = make_input()
    body = render_card(data).text
    assert "| 1 | `hqq` | `quantizer` | `weight_bits=8`, `group_size=64`" in body
    assert (
        body.index("| 1 | `hqq`") < body.index("| 2 | `static_cache`") < body.index("| 3 | `torch_compile`")
    )
    assert "| Decode latency per token, mean | 57.000 ms | 30.000 ms | 0.526x |" in body
    assert "| Weight bytes | 538.000 MB | 160.000 MB | 0.297x |" in body
    assert "![Latency and peak memory against generation length](benchmark/latency_memory.png)" in body
    assert "| Top-1 agreement with the base | 0.9800 |" in body
    assert "`min_top1_agreement 0.95`" in body
    assert f"content hash `{data.recipe_hash}`" in body and f"revision `{REVISION}`" in body
    assert '"weight_bits": 8' in body  # the SmashConfig JSON for reproduction
    assert "`cpu: x86_64, 2 cores`" in body and f"`torch {torch.__version__}`" in body


@pytest.mark.parametrize(
    ("base", "expected", "body_fragment"),
    [
        (BaseCard(license="mit"), {"license": "mit"}, "Same license as"),
        (BaseCard(), {"license": "unknown"}, "declares no license"),
        (BaseCard(license="Apache 2.0"), {"license": "unknown"}, "does not recognise (`Apache 2.0`)"),
        (
            BaseCard(license="other", license_name="llama3-community", license_link="LICENSE"),
            {
                "license": "other",
                "license_name": "llama3-community",
                "license_link": f"https://huggingface.co/{BASE}/blob/{REVISION}/LICENSE",
            },
            "`llama3-community`",
        ),
        (
            BaseCard(license="other", license_link="https://example.com/terms"),
            {"license": "other", "license_link": "https://example.com/terms"},
            "see [the license](https://example.com/terms)",
        ),
        (
            BaseCard(license="other", license_name="Evil Name", license_link="javascript:alert(1)"),
            {"license": "other", "license_link": f"https://huggingface.co/{BASE}"},
            "a custom license",
        ),
    ],
)
def test_license_comes_from_the_base_and_is_never_defaulted(
    base: BaseCard, expected: dict[str, str], body_fragment: str
) -> None:
    text = str(render_card(make_input(base=base)))
    header = header_of(text)
    assert {k: v for k, v in header.items() if k.startswith("license")} == expected
    assert body_fragment in text


HOSTILE = BaseCard(
    license="apache-2.0\ninjected: true",
    license_name="x\n---\ninjected: true",
    pipeline_tag="text-generation\ninjected: 1",
    tags=[
        "ok-tag",
        "x\n- injected: 1",
        "<script>alert(1)</script>",
        "base_model:adapter:evil/x",
        "a b",
        7,
        "-dash",
    ],
    language=["en", "fr\ninjected: 1", "<b>"],
)


def test_hostile_base_card_text_does_not_reach_the_header() -> None:
    text = str(render_card(make_input(base=HOSTILE)))
    header = header_of(text)
    assert set(header) <= HEADER_KEYS and "injected" not in text.split("---\n")[1]
    assert header["tags"] == ["ok-tag", "pruna-hub", "smashed", "hqq", "static_cache", "torch_compile"]
    assert header["license"] == "unknown" and "pipeline_tag" not in header and header["language"] == ["en"]
    assert ModelCard(text).data.base_model == BASE


def test_hostile_text_in_the_body_renders_as_plain_text() -> None:
    from markdown_it import MarkdownIt  # CommonMark renderer (installed with transformers' CLI deps)

    attack = (
        "<img src=x onerror=alert(1)> [click](https://evil.example) `code` | cell | "
        "![i](https://evil.example/i.png) www.evil.example\n# heading"
    )
    data = make_input(
        base=BaseCard(license=attack),
        hardware={"cpu": attack, attack: "x"},
        versions={"smash": attack},
        recipe_name=attack,
        dataset_name=attack,
    )
    card = render_card(data)
    html = MarkdownIt("commonmark").enable("table").render(card.text)
    images = [part.split('"')[0] for part in html.split('<img src="')[1:]]
    assert images == ["benchmark/latency_memory.png"] and "<img src=x" not in html
    assert "<h1>heading" not in html and "<code>code</code>" not in html
    assert html.count("<table>") == 3 and "<td>cell</td>" not in html
    # GFM (the Hub's flavour) autolinks bare URLs, but never inside a code span: every hostile string is one
    outside_code = re.sub(r"<code>.*?</code>", "", html, flags=re.DOTALL)
    assert "evil" not in outside_code and "alert" not in outside_code
    hrefs = [part.split('"')[0] for part in html.split('href="')[1:]]
    assert hrefs and all(h.startswith(f"/{BASE}") for h in hrefs), hrefs
    assert "\\" not in card.text.split("## Reproducibility")[0].replace("\\|", "")  # no backslash escapes


def test_links_point_at_the_hub_the_repo_lives_on() -> None:
    """Body links are root-relative, so the Hub showing the card resolves them on itself; the endpoint the
    service uploaded through (in-process ``http://hub.local``, a loopback port) never shows in the body."""
    for hub_url in ("http://hub.local", "http://127.0.0.1:8080/"):
        text = str(render_card(make_input(hub_url=hub_url, base=BaseCard(license="mit"))))
        body = text.split("---\n", 2)[2]
        assert "hub.local" not in body and "127.0.0.1" not in body
        assert f"[{BASE}](/{BASE})" in body
    text = str(render_card(make_input(hub_url="http://127.0.0.1:8080/", base=BaseCard(license="other"))))
    assert header_of(text)["license_link"] == f"http://127.0.0.1:8080/{BASE}"  # the Hub needs it absolute


def test_relation_follows_the_algorithm_groups() -> None:
    pruned = [AppliedAlgorithm("magnitude_pruning", "pruner", {"sparsity": 0.5})]
    assert "base_model_relation" not in header_of(str(render_card(make_input(algorithms=pruned))))
    halved = [AppliedAlgorithm("half", "quantizer", {"dtype": "bfloat16"})]
    assert header_of(str(render_card(make_input(algorithms=halved))))["base_model_relation"] == "quantized"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("repo_id", "not a repo id"),
        ("base_repo_id", "a/b/c"),
        ("base_revision", "main\nx"),
        ("recipe_hash", "abc"),
        ("plot_filename", "../../etc/passwd.png"),
        ("plot_filename", "plot.png)<script>"),
        ("device", "tpu"),
        ("hub_url", "javascript:alert(1)"),
        ("hub_url", "https://huggingface.co/x)"),
        ("smash_config_json", "{not json"),
    ],
)
def test_bad_card_input_is_a_typed_error(field: str, value: str) -> None:
    with pytest.raises(CardError) as info:
        render_card(make_input(**{field: value}))
    assert info.value.field == field


def test_flatten_efficiency_reads_an_efficiency_report_dict() -> None:
    stats = {
        "count": 3,
        "mean": 0.03,
        "median": 0.029,
        "std": 0.001,
        "min": 0.028,
        "max": 0.032,
        "p99": 0.032,
    }
    report = {
        "label": "smashed",
        "weight_bytes": 160_000_000,
        "ttft_s": stats,
        "decode_latency_s": stats,
        "peak_memory_bytes": None,
        "decode_tokens_per_s": 33.3,
        "compilations": 0,
        "memory_per_token_bytes": None,
    }
    flat = flatten_efficiency(report)
    assert flat["decode_latency_s.p99"] == 0.032 and flat["ttft_s.mean"] == 0.03
    assert flat["compilations"] == 0.0 and "peak_memory_bytes.mean" not in flat
    assert "memory_per_token_bytes" not in flat


def test_extract_snippet_needs_the_markers() -> None:
    snippet = extract_snippet(str(render_card(make_input())))
    assert snippet.startswith("from smash import PrunaModel\n") and f'from_pretrained("{REPO}")' in snippet
    with pytest.raises(CardError, match="no how-to-use snippet"):
        extract_snippet("# a card\n```python\nprint(1)\n```\n")


# --- the snippet runs against the local Hub store ---------------------------------------------------------


@pytest.fixture
def tiny_tokenizer(tmp_path: Path) -> Any:
    """A byte-level BPE tokenizer trained here (no download), so the snippet's text round-trips exactly."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator([PROMPT, "small models are fast", "the best thing"] * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>")


def publish(model: torch.nn.Module, tokenizer: Any, config: SmashConfig, repo: str) -> str:
    """Smash, render the card for it and push both in one commit; returns the card text."""
    smashed = smash(model, config, tokenizer=tokenizer)
    card = render_card(
        make_input(
            repo_id=repo,
            algorithms=applied_algorithms(config, smashed.order),
            smash_config_json=config.to_json(),
            plot_filename=None,
        )
    )
    smashed.push_to_hub(repo, card=card)
    return str(card)


def run_snippet(snippet: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippet, "<card snippet>", "exec"), {})
    return out.getvalue()


def test_card_snippet_runs_against_the_published_repo(
    tmp_path: Path, make_tiny_llama: Callable[..., torch.nn.Module], tiny_tokenizer: Any
) -> None:
    from pruna_hub.hubstore import LocalHub

    model = make_tiny_llama(vocab_size=len(tiny_tokenizer))
    config = SmashConfig({"hqq": {"weight_bits": 8, "group_size": 64}})
    hub = LocalHub(tmp_path / "store")
    with hub.install(cache_dir=str(tmp_path / "cache")):
        text = publish(model, tiny_tokenizer, config, "PrunaAI/tiny-smashed")
        output = run_snippet(extract_snippet(text))
        card_data = HfApi().model_info("PrunaAI/tiny-smashed").card_data  # what the Hub parsed from it
        published = ModelCard.load("PrunaAI/tiny-smashed")
    assert card_data is not None and card_data.base_model == BASE and card_data.license == "apache-2.0"
    assert published.text == ModelCard(text).text
    assert output.startswith(PROMPT), output
    assert len(tiny_tokenizer(output.strip())["input_ids"]) > len(tiny_tokenizer(PROMPT)["input_ids"])
    downloads = hub.operations()[hub.operations().index("commit") :]
    assert any(op.startswith("resolve") for op in downloads), downloads  # the snippet read the store


@pytest.mark.slow
def test_card_snippet_of_the_cpu_llama_recipe_runs_in_a_fresh_process(
    tmp_path: Path, make_tiny_llama: Callable[..., torch.nn.Module], tiny_tokenizer: Any
) -> None:
    """The user's view: a new interpreter that only has HF_ENDPOINT, running the built-in CPU Llama recipe's
    artifact (HQQ 8-bit + the static-cache runtime re-attached at load). torch.compile is left out here:
    it compiles cold graphs twice (smash and load), 2+ minutes on this CPU; the sync's end-to-end test
    publishes the full recipe."""
    from pruna_hub.hubstore import LocalHub, point_client_at

    recipe = load_recipes().get("llama-cpu-hqq8")
    model = make_tiny_llama(vocab_size=len(tiny_tokenizer))
    hub = LocalHub(tmp_path / "store")
    with hub.serve(port=0) as endpoint:
        with point_client_at(endpoint, cache_dir=str(tmp_path / "cache")):
            config = SmashConfig({k: v for k, v in recipe.smash.items() if k != "torch_compile"})
            text = publish(model, tiny_tokenizer, config, "PrunaAI/tiny-llama-smashed")
        env = {
            **os.environ,
            "HF_ENDPOINT": endpoint,
            "HF_HOME": str(tmp_path / "hf-home"),
            "HF_HUB_DISABLE_XET": "1",
            "OMP_WAIT_POLICY": "PASSIVE",
        }
        done = subprocess.run(
            [sys.executable, "-c", extract_snippet(text)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(PROMPT), done.stdout


def test_card_from_a_real_evaluation_report(make_tiny_llama: Callable[..., torch.nn.Module]) -> None:
    """The plain-data card input is filled from smash.evaluation's report dict; the recipe gate reads it."""
    from pruna_hub.card import measurements_from_report
    from pruna_hub.recipes import QualityGate
    from smash.evaluation import Settings, evaluate

    base = make_tiny_llama()
    config = SmashConfig({"hqq": {"weight_bits": 2, "group_size": 64}})
    smashed = smash(base, config)
    settings = Settings(
        prompt_lengths=(16,),
        generation_lengths=(8,),
        warmup_runs=0,
        measured_runs=2,
        quality_prompts=4,
        quality_new_tokens=8,
        use_chat_template=False,
    )
    report = evaluate(base, smashed, settings=settings).to_dict()
    measured = measurements_from_report(report)
    assert measured["versions"]["torch"] == torch.__version__ and measured["hardware"]["threads"]
    assert measured["metrics"]["smashed"]["weight_bytes"] < measured["metrics"]["base"]["weight_bytes"]
    assert 0.0 <= measured["quality"]["top1_agreement"] <= 1.0 and measured["quality"]["kl_mean"] > 0
    data = make_input(
        algorithms=applied_algorithms(config, smashed.order), smash_config_json=config.to_json()
    )
    card = render_card(dataclasses.replace(data, **measured))
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["top1_agreement"] == pytest.approx(measured["quality"]["top1_agreement"], abs=1e-6)
    assert "| Weight bytes |" in card.text and "| Decode latency per token, mean |" in card.text
    agreement, kl = measured["quality"]["top1_agreement"], measured["quality"]["kl_mean"]
    assert QualityGate(min_top1_agreement=agreement, max_kl=kl * 2).failures_from(report["quality"]) == []
    assert QualityGate(max_kl=kl / 2).failures_from(report["quality"]) == [
        f"KL divergence {kl:.4g} is not <= {kl / 2:.4g}"
    ]
    assert QualityGate(max_perplexity_ratio=1.1).failures_from(report["quality"]) == [
        "perplexity ratio was not measured (gate 1.1)"  # no evaluation text was given
    ]


# --- what the card claims is true ---------------------------------------------------------------------------


def test_the_install_line_says_how_to_install() -> None:
    """pruna-hub is not on PyPI and PyPI's `smash` is another project: the card says to install from the
    source repository or a wheel built there, never `pip install pruna-hub` or `pip install smash`."""
    body = render_card(make_input()).text
    how_to = body.split("## How to use")[1].split(SNIPPET_START)[0]
    assert "`pip install pruna-hub`, then" not in body
    assert "not published on PyPI" in how_to and "unrelated package" in how_to
    assert "`pip install .`" in how_to and "`pip install dist/pruna_hub-0.1.0-py3-none-any.whl`" in how_to


def test_size_on_disk_is_the_published_files_card_included() -> None:
    files = {
        "model.safetensors": 160_000_000,
        "config.json": 700,
        "benchmark.json": 9_000,
        "plot.png": 80_000,
    }
    metrics = {"base": {"disk_bytes": 538_000_000.0}, "smashed": {"disk_bytes": 150_000_000.0}}
    card = render_card(make_input(metrics=metrics, published_files=files))
    size = sum(files.values()) + len(str(card).encode())
    assert f"| Size on disk | 538.000 MB | {size / 1e6:,.3f} MB |" in card.text
    assert "the files of this repo's commit" in card.text
    without = render_card(make_input(metrics=metrics)).text
    assert "| Size on disk | 538.000 MB | 150.000 MB |" in without and "before the card" in without


def test_size_on_disk_matches_a_folder_written_like_the_artifact(tmp_path: Path) -> None:
    from pruna_hub.card import folder_files

    (tmp_path / "model.safetensors").write_bytes(b"x" * 123_456)
    (tmp_path / "benchmark").mkdir()
    (tmp_path / "benchmark" / "plot.png").write_bytes(b"y" * 7_890)
    card = render_card(make_input(published_files=folder_files(tmp_path)))
    (tmp_path / "README.md").write_text(str(card))
    total = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert f"| {total / 1e3:,.3f} KB |" in card.text.split("| Size on disk |")[1].splitlines()[0]


def test_negative_memory_per_token_is_never_shown_as_a_cost() -> None:
    metrics = {
        "base": {"memory_per_token_bytes": -113_664.0},
        "smashed": {"memory_per_token_bytes": 2_048.0},
    }
    body = render_card(make_input(metrics=metrics)).text
    [row] = [line for line in body.splitlines() if line.startswith("| Memory per generated token |")]
    assert "~0 KB (measured -113.664 KB, see note) | 2.048 KB | n/a |" in row  # the unit that fits the row
    assert "A negative slope means peak memory did not grow measurably" in body
    cells = [c.strip() for line in body.splitlines() if line.startswith("| ") for c in line.split("|")]
    assert not any(re.fullmatch(r"-[0-9.,]+ ?(MB|GB|ms|x)?", c) for c in cells)


def test_our_text_is_not_backslash_escaped() -> None:
    data = make_input(repo_id="PrunaAI/tiny-llama-smashed", base_repo_id="acme/tiny-llama", recipe_name="a-b")
    body = render_card(data).text
    assert "\\-" not in body and "\\_" not in body and "\\=" not in body and "\\." not in body
    assert body.startswith("# tiny-llama-smashed\n") or "\n# tiny-llama-smashed\n" in body
    assert "[acme/tiny-llama](/acme/tiny-llama)" in body and "`a-b`" in body


def test_the_plot_starts_memory_at_zero_with_whole_token_ticks_and_a_fitting_unit(
    make_tiny_llama: Callable[..., torch.nn.Module],
) -> None:
    from smash.evaluation import Settings, evaluate
    from smash.evaluation.plot import memory_unit, sweep_figure

    base = make_tiny_llama()
    smashed = smash(base, SmashConfig({"hqq": {"weight_bits": 8, "group_size": 64}}))
    settings = Settings(
        prompt_lengths=(8,), generation_lengths=(3, 7), warmup_runs=0, measured_runs=1, quality=False
    )
    report = evaluate(base, smashed, settings=settings)
    figure = sweep_figure({"base": report.base, "smashed": report.smashed}, title="t")
    figure.canvas.draw()
    latency, memory = figure.axes
    assert memory.get_ylim()[0] == 0 and latency.get_ylim()[0] == 0
    for axes in (latency, memory):
        ticks = [t for t in axes.get_xticks() if axes.get_xlim()[0] <= t <= axes.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    peak = max(p.peak_memory_bytes.mean for p in report.base.points if p.peak_memory_bytes is not None)
    unit, scale = memory_unit(peak)
    assert memory.get_ylabel() == f"peak memory ({unit})" and 1 <= peak / scale < 1000
    assert memory_unit(1.2e9) == ("GB", 1e9) and memory_unit(5e5) == ("KB", 1e3)


def test_byte_rows_use_the_unit_that_fits() -> None:
    metrics = {
        "base": {"peak_memory_bytes.mean": 716_096.0, "weight_bytes": 1_120_000_000.0},
        "smashed": {"peak_memory_bytes.mean": 506_176.0, "weight_bytes": 160_000_000.0},
    }
    body = render_card(make_input(metrics=metrics)).text
    assert "| Peak memory, mean | 716.096 KB | 506.176 KB | 0.707x |" in body
    assert "| Weight bytes | 1.120 GB | 0.160 GB | 0.143x |" in body
