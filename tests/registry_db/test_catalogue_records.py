"""Records and queries: upserts converge, artifacts adopt the runs of their job, and list/show/best/export
answer from a seeded catalogue on both backends."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from registry_db.errors import CatalogueValueError, NotFoundError
from registry_db.jobs import claim_next_job, create_or_get_job
from registry_db.queries import Filters, best_artifacts, export_table, list_entries, show_artifact
from registry_db.records import (
    MetricValue,
    record_artifact,
    record_benchmark_run,
    set_verification,
    upsert_base_model,
    upsert_recipe,
)
from registry_db.session import Catalogue
from registry_db.testing import BASE_LATENCY_MS, LATENCIES, seed_catalogue

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def seeded(catalogue: Catalogue) -> dict[str, object]:
    with catalogue.session() as session:
        return seed_catalogue(session, catalogue.namespace)


def test_base_model_upsert_refreshes_facts_and_keeps_first_seen(catalogue: Catalogue) -> None:
    ns = catalogue.namespace
    with catalogue.session() as session:
        first = upsert_base_model(session, namespace=ns, repo_id="o/m", revision="r", license=None, now=T0)
        again = upsert_base_model(
            session,
            namespace=ns,
            repo_id="o/m",
            revision="r",
            license="mit",
            architectures=["A", "B"],
            now=T0 + timedelta(days=1),
        )
    assert again.id == first.id
    assert (again.license, again.architecture, again.architectures) == ("mit", "A", ["A", "B"])
    assert again.first_seen_at == T0 and again.last_checked_at == T0 + timedelta(days=1)


def test_recipe_keeps_algorithms_in_run_order_and_edits_make_a_new_row(catalogue: Catalogue) -> None:
    ns = catalogue.namespace
    config = {"format_version": 1, "algorithms": {"torch_compile": {}, "hqq": {"weight_bits": 4}}}
    with catalogue.session() as session:
        recipe = upsert_recipe(
            session,
            namespace=ns,
            name="x",
            content_hash="1",
            smash_config=config,
            algorithms=["hqq", "torch_compile"],
        )
        same = upsert_recipe(session, namespace=ns, name="x", content_hash="1", smash_config=config)
        edited = upsert_recipe(session, namespace=ns, name="x", content_hash="2", smash_config=config)
        assert [a.algorithm for a in recipe.algorithms] == ["hqq", "torch_compile"]
        assert same.id == recipe.id and edited.id != recipe.id
        assert [a.algorithm for a in edited.algorithms] == ["torch_compile", "hqq"]  # the config's own order
        assert edited.smash_config == config


def test_artifact_adopts_runs_recorded_before_it_and_is_idempotent(catalogue: Catalogue) -> None:
    ns = catalogue.namespace
    with catalogue.session() as session:
        base = upsert_base_model(session, namespace=ns, repo_id="o/m", revision="r")
        recipe = upsert_recipe(session, namespace=ns, name="x", content_hash="1", smash_config={})
        job, _ = create_or_get_job(session, base, recipe)
        run = record_benchmark_run(
            session,
            subject="smashed",
            base_model_id=base.id,
            job_id=job.id,
            namespace=ns,
            metrics={"decode_latency_ms": 11.5},
            hardware={"device": "cuda", "name": "H100", "memory_bytes": 80},
            library_versions={"torch": "2.13.0", "hqq": "0.2.8"},
        )
        assert (run.device, run.device_name, run.torch_version, run.hqq_version) == (
            "cuda",
            "H100",
            "2.13.0",
            "0.2.8",
        )
        files = {"model.safetensors": 100, "README.md": 5}
        artifact = record_artifact(session, job_id=job.id, repo_id="s/m", commit_sha="c1", files=files)
        again = record_artifact(session, job_id=job.id, repo_id="s/m", commit_sha="c2", files=files, tag="t")
        assert again.id == artifact.id and again.commit_sha == "c2" and again.tag == "t"
        assert (again.total_bytes, again.file_count, again.smashed_run_id) == (105, 2, run.id)
        later = record_benchmark_run(
            session,
            subject="smashed",
            base_model_id=base.id,
            job_id=job.id,
            namespace=ns,
            metrics={"decode_latency_ms": 10.0},
        )
        set_verification(session, artifact.id, verified=False, message="forward pass produced NaN")
        detail = show_artifact(session, "s/m", namespace=ns)
    assert detail["artifact"]["verified"] is False
    assert detail["lineage"] == [{"parent": "o/m", "parent_revision": "r", "relation": "quantized"}]
    assert [(r["id"], r["current"]) for r in detail["benchmark_runs"]] == [(later.id, True), (run.id, False)]


@pytest.mark.parametrize("bad", [math.nan, math.inf, "12", True])
def test_metric_values_must_be_finite_numbers(catalogue: Catalogue, bad: object) -> None:
    with catalogue.session() as session:
        base = upsert_base_model(session, namespace=catalogue.namespace, repo_id="o/m", revision="r")
        with pytest.raises(CatalogueValueError, match="decode_latency_ms"):
            record_benchmark_run(
                session,
                subject="base",
                base_model_id=base.id,
                namespace=catalogue.namespace,
                metrics=[MetricValue("decode_latency_ms", bad)],
            )  # type: ignore[arg-type]
        with pytest.raises(CatalogueValueError, match="subject"):
            record_benchmark_run(session, subject="quantized", base_model_id=base.id, metrics={})


def test_list_filters_and_sorts_by_metric(catalogue: Catalogue, seeded: dict[str, object]) -> None:
    ns = catalogue.namespace
    with catalogue.read_session() as session:
        by_latency = list_entries(session, Filters(ns), sort_metric="decode_latency_ms")
        by_throughput = list_entries(session, Filters(ns), sort_metric="decode_tokens_per_s")
        worst_first = list_entries(
            session, Filters(ns), sort_metric="decode_latency_ms", descending=True, limit=2
        )
        llama_hqq = list_entries(session, Filters(ns, architecture="LlamaForCausalLM", algorithm="hqq"))
        skipped = list_entries(session, Filters(ns, state="skipped"))
        failed = list_entries(session, Filters(ns, state="failed"))
        of_base = list_entries(session, Filters(ns, base_repo="org/llama-a"))
        other_namespace = list_entries(session, Filters(ns + "-other"))
    expected = sorted(LATENCIES.values())
    assert [e.value for e in by_latency[:4]] == expected
    assert [e.value for e in by_latency[4:]] == [None, None, None]  # entries without the metric come last
    assert [e.value for e in by_throughput[:4]] == pytest.approx(
        [1000 / v for v in expected]
    )  # higher is better
    assert [e.value for e in worst_first] == [30.0, 25.0]
    assert {(e.base_repo_id, e.algorithms[0]) for e in llama_hqq} == {
        ("org/llama-a", "hqq"),
        ("org/llama-b", "hqq"),
        ("org/gated", "hqq"),
    }
    assert [(e.state, e.skip_reason) for e in skipped] == [("skipped", "gated: token cannot read it")]
    assert [(e.error_type, e.error_message) for e in failed] == [
        ("QualityGateError", "top1_agreement 0.41 < 0.9")
    ]
    assert {e.recipe for e in of_base} == {"llama-hqq-4bit", "llama-int8"}
    assert other_namespace == []


def test_list_rejects_unknown_state_and_limits(catalogue: Catalogue) -> None:
    with catalogue.read_session() as session:
        with pytest.raises(CatalogueValueError, match="'done'"):
            list_entries(session, Filters(catalogue.namespace, state="done"))
        with pytest.raises(CatalogueValueError, match="limit"):
            list_entries(session, Filters(catalogue.namespace), limit=0)


def test_best_artifact_per_base(catalogue: Catalogue, seeded: dict[str, object]) -> None:
    ns = catalogue.namespace
    with catalogue.read_session() as session:
        best = best_artifacts(
            session, metric="decode_latency_ms", architecture="LlamaForCausalLM", namespace=ns
        )
        fastest_everywhere = best_artifacts(session, metric="decode_latency_ms", namespace=ns)
        most_faithful = best_artifacts(
            session, metric="top1_agreement", architecture="LlamaForCausalLM", namespace=ns
        )
        nothing = best_artifacts(session, metric="no_such_metric", namespace=ns)
    assert [(b.base_repo_id, b.artifact_repo_id, b.value, b.candidates) for b in best] == [
        ("org/llama-a", "smashed/llama-a-llama-hqq-4bit", 12.0, 2),
        ("org/llama-b", "smashed/llama-b-llama-hqq-4bit", 14.0, 1),
    ]
    assert all(b.base_value == BASE_LATENCY_MS and b.unit == "ms" for b in best)
    assert [b.base_repo_id for b in fastest_everywhere] == ["org/llama-a", "org/llama-b", "org/qwen"]
    assert most_faithful[0].artifact_repo_id == "smashed/llama-a-llama-int8"  # 0.99 beats 0.95
    assert nothing == []


def test_show_artifact_has_everything(catalogue: Catalogue, seeded: dict[str, object]) -> None:
    with catalogue.read_session() as session:
        detail = show_artifact(session, "smashed/llama-a-llama-hqq-4bit", namespace=catalogue.namespace)
        with pytest.raises(NotFoundError, match="catalogue list"):
            show_artifact(session, "smashed/nope", namespace=catalogue.namespace)
    assert detail["base"]["repo_id"] == "org/llama-a" and detail["base"]["license"] == "apache-2.0"
    assert detail["recipe"]["algorithms"] == ["hqq", "torch_compile"]
    assert detail["recipe"]["smash_config"]["algorithms"]["hqq"] == {"weight_bits": 4}
    assert detail["job"]["state"] == "published" and detail["job"]["attempts"] == 1
    assert [f["path"] for f in detail["artifact"]["files"]] == ["model.safetensors", "smash_config.json"]
    current = {r["subject"]: r for r in detail["benchmark_runs"] if r["current"]}
    assert {m["name"]: m["value"] for m in current["smashed"]["metrics"]}["decode_latency_ms"] == 12.0
    assert {m["name"]: m["value"] for m in current["base"]["metrics"]}["decode_latency_ms"] == BASE_LATENCY_MS
    assert current["smashed"]["library_versions"]["torch"] == "2.13.0"


def test_export_streams_every_job_with_its_metrics(catalogue: Catalogue, seeded: dict[str, object]) -> None:
    with catalogue.read_session() as session:
        table = export_table(session, Filters(catalogue.namespace), chunk=3)  # several chunks
        rows = list(table.rows)
    assert table.smashed_metrics == ["decode_latency_ms", "decode_tokens_per_s", "top1_agreement"]
    assert table.base_metrics == ["decode_latency_ms", "decode_tokens_per_s"]
    assert len(rows) == 7 and len({r["job_id"] for r in rows}) == 7
    published = {(r["base_repo_id"], r["recipe"]): r for r in rows if r["state"] == "published"}
    assert {k: r["smashed_metrics"]["decode_latency_ms"] for k, r in published.items()} == LATENCIES
    assert all(r["base_metrics"]["decode_latency_ms"] == BASE_LATENCY_MS for r in published.values())


def test_claim_returns_nothing_for_an_empty_queue(catalogue: Catalogue) -> None:
    with catalogue.session() as session:
        assert claim_next_job(session, "w", namespace=catalogue.namespace) is None
