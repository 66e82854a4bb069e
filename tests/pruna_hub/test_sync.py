"""The sync service end to end: the local store through the real huggingface_hub client, a real catalogue
(SQLite and PostgreSQL), real tiny transformers models smashed with real hqq."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from huggingface_hub import HfApi, ModelCard
from sync_support import ACME, card, local_store, open_context, publish_base, write_recipe, write_tied_recipes

from pruna_hub.card import extract_snippet
from pruna_hub.cli import cli
from pruna_hub.hubstore import LocalHub
from pruna_hub.recipes.ranking import RecipeTiming, TimingStore, choose, rank
from pruna_hub.sync.context import SyncContext
from pruna_hub.sync.discovery import discover, full_config
from pruna_hub.sync.service import sync_once
from registry_db.models import Job
from registry_db.models import Recipe as RecipeRow
from registry_db.queries import show_artifact

TARGET = "PrunaAI/tiny-llama-smashed-test"


def acme() -> HfApi:
    return HfApi(token=ACME)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[LocalHub, str]]:
    hub = local_store(tmp_path / "hub")
    with hub.install() as endpoint:
        yield hub, endpoint


@pytest.fixture
def make_ctx(
    store: tuple[LocalHub, str],
    tmp_path: Path,
    db_url: str,
    namespace: str,
) -> Iterator[Any]:
    contexts: list[SyncContext] = []

    def make(recipe_dir: Path | None = None, **flags: Any) -> SyncContext:
        ctx = open_context(
            store[1],
            tmp_path / "work",
            recipe_dir=recipe_dir or write_recipe(tmp_path / "recipes"),
            database_url=db_url,
            namespace=namespace,
            **flags,
        )
        contexts.append(ctx)
        return ctx

    yield make
    for ctx in contexts:
        ctx.close()


def _job_states(ctx: SyncContext) -> list[str]:
    with ctx.catalogue.read_session() as session:
        return [j.state for j in session.query(Job).filter(Job.namespace == ctx.catalogue.namespace)]


def _sample(name: str, **labels: str) -> float:
    from pruna_hub.metrics import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_sync_publishes_a_verified_artifact_with_a_card_and_is_idempotent(
    make_ctx: Any, tmp_path: Path
) -> None:
    api = acme()
    revision = publish_base(api, "acme/tiny-llama", tmp_path / "base")
    ctx = make_ctx()
    steps = ("discover", "smash", "evaluate", "publish", "verify")
    before = {s: _sample("pruna_hub_step_duration_seconds_count", step=s, outcome="ok") for s in steps}
    published_before = _sample("pruna_hub_jobs_finished_total", state="published")

    summary = sync_once(ctx)
    for step in steps:  # the service's Prometheus metrics (what `--metrics-port` serves)
        assert _sample("pruna_hub_step_duration_seconds_count", step=step, outcome="ok") == before[step] + 1
    assert _sample("pruna_hub_jobs_finished_total", state="published") == published_before + 1

    assert [(d.repo_id, d.action) for d in summary.decisions] == [("acme/tiny-llama", "queued")]
    [outcome] = summary.outcomes
    assert outcome.state == "published", outcome.error
    assert outcome.metrics["top1_agreement"] >= 0.8
    files = set(api.list_repo_files(TARGET))
    assert {"README.md", "smash_config.json", "model.safetensors", "config.json", "benchmark.json"} <= files
    assert "benchmark.png" in files
    refs = api.list_repo_refs(TARGET)
    assert [t.name for t in refs.tags] == [f"base-{revision}"]
    assert refs.tags[0].target_commit == outcome.commit_sha

    with ctx.catalogue.read_session() as session:
        entry = show_artifact(session, TARGET, namespace=ctx.catalogue.namespace)
    assert entry["artifact"]["verified"] is True
    assert entry["base"]["license"] == "mit"
    assert entry["job"]["state"] == "published"
    assert {run["subject"] for run in entry["benchmark_runs"]} == {"base", "smashed"}
    assert entry["lineage"][0]["relation"] == "quantized"

    commits_before = len(api.list_repo_commits(TARGET))
    again = sync_once(ctx)
    assert [d.action for d in again.decisions] == ["seen"]
    assert again.outcomes == []
    assert len(api.list_repo_commits(TARGET)) == commits_before


def test_a_rank_by_tie_is_decided_by_measuring_on_this_host_then_published(
    make_ctx: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRUNA_HUB_HOME", str(tmp_path / "home"))
    publish_base(acme(), "acme/tiny-llama", tmp_path / "base")
    ctx = make_ctx(write_tied_recipes(tmp_path / "tied"))

    [planned] = discover(ctx, dry_run=True)  # a dry run names the tie and times nothing
    assert planned.action == "would_queue"
    assert "would time tiny-hqq8 against tiny-int8 by decode latency on this host" in str(planned.detail)
    assert not TimingStore().path.exists()

    summary = sync_once(ctx)
    entries = json.loads(TimingStore().path.read_text())["entries"].values()
    timings = [RecipeTiming(**{k: v for k, v in e.items() if k != "host"}) for e in entries]
    assert sorted(t.recipe for t in timings) == ["tiny-hqq8", "tiny-int8"]
    assert all(t.decode_ms is not None and t.decode_ms > 0 for t in timings)
    measured = choose(ctx.book.top_tier({"architectures": ["LlamaForCausalLM"]}, "cpu"), timings)
    [decision] = summary.decisions
    assert (decision.action, decision.recipe) == ("queued", measured.name)
    assert "by decode latency on this host: tiny-hqq8 " in str(decision.detail)
    [outcome] = summary.outcomes
    assert outcome.state == "published", outcome.error
    assert outcome.recipe == measured.name
    assert outcome.target_repo_id == measured.repo_id("acme/tiny-llama", target_org="PrunaAI")


def _seed_timings(ctx: SyncContext, repo_id: str, revision: str, milliseconds: dict[str, float]) -> None:
    """Store decode timings for the tie on ``repo_id``'s config, as a measurement on this host would."""
    config = full_config(ctx, repo_id, revision)  # the config discovery ranks on
    tie = ctx.book.top_tier(config, "cpu")
    rank(
        tie,
        config,
        measure=lambda _config, recipes: ({r.name: milliseconds[r.name] / 1e3 for r in recipes}, {}),
        store=TimingStore(),
        device="cpu",
    )


def _jobs(ctx: SyncContext) -> list[tuple[str, str, str | None]]:
    with ctx.catalogue.read_session() as session:
        query = session.query(Job, RecipeRow).join(RecipeRow, Job.recipe_id == RecipeRow.id)
        rows = query.filter(Job.namespace == ctx.catalogue.namespace).order_by(Job.id)
        return [(recipe.name, job.state, job.last_error_type) for job, recipe in rows]


def test_a_tie_winner_that_fails_its_gate_hands_the_base_to_the_next_tied_recipe(
    make_ctx: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRUNA_HUB_HOME", str(tmp_path / "home"))
    revision = publish_base(acme(), "acme/tiny-llama", tmp_path / "base")
    ctx = make_ctx(write_tied_recipes(tmp_path / "tied", failing=("tiny-int8",)))
    # int8 decodes fastest, so discovery queues it first
    _seed_timings(ctx, "acme/tiny-llama", revision, {"tiny-int8": 1.0, "tiny-hqq8": 2.0})

    summary = sync_once(ctx)

    assert [(d.action, d.recipe) for d in summary.decisions] == [("queued", "tiny-int8")]
    first, second = summary.outcomes
    assert (first.recipe, first.state) == ("tiny-int8", "failed")
    assert "QualityGateError" in (first.error or "")
    assert first.next_job_id == second.job_id
    assert (second.recipe, second.state) == ("tiny-hqq8", "published"), second.error
    assert HfApi().repo_exists(second.target_repo_id)
    assert not HfApi().repo_exists(str(first.target_repo_id))
    assert _jobs(ctx) == [("tiny-int8", "failed", "QualityGateError"), ("tiny-hqq8", "published", None)]

    again = sync_once(ctx)  # the base revision is settled: nothing is tried again
    assert [d.action for d in again.decisions] == ["seen"]
    assert again.outcomes == []


def test_a_tie_whose_every_recipe_fails_its_gate_tries_each_once_and_publishes_nothing(
    make_ctx: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRUNA_HUB_HOME", str(tmp_path / "home"))
    revision = publish_base(acme(), "acme/tiny-llama", tmp_path / "base")
    ctx = make_ctx(write_tied_recipes(tmp_path / "tied", failing=("tiny-int8", "tiny-hqq8")))
    _seed_timings(ctx, "acme/tiny-llama", revision, {"tiny-int8": 2.0, "tiny-hqq8": 1.0})

    first, second = sync_once(ctx).outcomes

    failed = [("tiny-hqq8", "failed", "QualityGateError"), ("tiny-int8", "failed", "QualityGateError")]
    assert [(o.recipe, o.state) for o in (first, second)] == [row[:2] for row in failed]
    assert (first.next_job_id, second.next_job_id) == (second.job_id, None)
    assert _jobs(ctx) == failed
    assert not any(HfApi().repo_exists(str(o.target_repo_id)) for o in (first, second))


def test_the_published_card_carries_the_base_metadata_and_its_snippet_runs(
    make_ctx: Any, tmp_path: Path
) -> None:
    api = acme()
    publish_base(api, "acme/tiny-llama", tmp_path / "base", card_text=card("apache-2.0", tags=["chat"]))
    [outcome] = sync_once(make_ctx()).outcomes
    assert outcome.state == "published", outcome.error

    loaded = ModelCard.load(TARGET)
    header = yaml.safe_load(str(loaded).split("---")[1])
    assert header["base_model"] == "acme/tiny-llama"
    assert header["base_model_relation"] == "quantized"
    assert header["license"] == "apache-2.0"
    assert header["pipeline_tag"] == "text-generation"
    assert "chat" in header["tags"] and "hqq" in header["tags"]
    assert "library_name" in header
    snippet = extract_snippet(str(loaded))
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "card-snippet", "exec"), namespace)  # the snippet loads the repo from the store
    assert "model" in namespace


def test_a_new_base_revision_publishes_again_in_the_same_repo(make_ctx: Any, tmp_path: Path) -> None:
    api = acme()
    first = publish_base(api, "acme/tiny-llama", tmp_path / "base")
    ctx = make_ctx()
    assert sync_once(ctx).outcomes[0].state == "published"
    second = publish_base(api, "acme/tiny-llama", tmp_path / "base2", seed=1)

    summary = sync_once(ctx)

    assert [(d.revision, d.action) for d in summary.decisions] == [(second, "queued")]
    assert summary.outcomes[0].state == "published"
    tags = {t.name: t.target_commit for t in api.list_repo_refs(TARGET).tags}
    assert set(tags) == {f"base-{first}", f"base-{second}"}
    assert len(set(tags.values())) == 2


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ({"config_extra": {"auto_map": {"AutoModelForCausalLM": "evil.Model"}}}, "remote_code"),
        ({"extra_files": {"modeling_evil.py": "import os\n"}}, "remote_code"),
        ({"pickle_only": True}, "no_safetensors"),
        ({"card_text": card(base_model="x/y", base_model_relation="quantized")}, "derived"),
        ({"config_extra": {"architectures": ["OPTForCausalLM"], "model_type": "opt"}}, "no_recipe"),
    ],
)
def test_each_skip_reason_is_recorded(
    make_ctx: Any, tmp_path: Path, setup: dict[str, Any], reason: str
) -> None:
    publish_base(acme(), "acme/candidate", tmp_path / "base", **setup)
    ctx = make_ctx()

    [decision] = sync_once(ctx).decisions

    assert (decision.action, decision.reason) == ("skipped", reason)
    assert not HfApi().repo_exists("PrunaAI/candidate-smashed-test")
    if decision.job_id is not None:
        assert _job_states(ctx) == ["skipped"]
    [candidate] = ctx.store.candidates()  # recorded whether or not it has a job (no_recipe has none)
    assert (candidate.repo_id, candidate.action, candidate.reason) == ("acme/candidate", "skipped", reason)
    assert candidate.detail == decision.detail
    url, namespace = ctx.settings.database_url, ctx.catalogue.namespace
    shown = CliRunner().invoke(
        cli, ["catalogue", "candidates", "--database-url", url, "--namespace", namespace, "--format", "json"]
    )
    assert shown.exit_code == 0, shown.output
    assert [(c["repo_id"], c["reason"]) for c in json.loads(shown.output)] == [("acme/candidate", reason)]


def test_discovery_pages_through_everything_new_since_its_last_pass(make_ctx: Any, tmp_path: Path) -> None:
    """A cursor per filter set: a pass takes the oldest `limit` models created since the last one, so a
    busy Hub is worked through in order instead of only its newest page being seen."""
    api = acme()
    for name in ("m0", "m1", "m2"):
        publish_base(api, f"acme/{name}", tmp_path / name)
    ctx = make_ctx(limit=2)
    first = {d.repo_id for d in discover(ctx) if d.action == "queued"}
    assert first == {"acme/m1", "acme/m2"}  # a first pass starts from the newest page
    for name in ("m3", "m4", "m5"):
        publish_base(api, f"acme/{name}", tmp_path / name)
    second = {d.repo_id for d in discover(ctx) if d.action == "queued"}
    third = {d.repo_id for d in discover(ctx) if d.action == "queued"}
    assert (second, third) == ({"acme/m3", "acme/m4"}, {"acme/m5"})
    assert {d.action for d in discover(ctx)} <= {"seen"}


def test_several_pipeline_tags_are_listed(make_ctx: Any, tmp_path: Path) -> None:
    api = acme()
    publish_base(api, "acme/chat", tmp_path / "chat")
    publish_base(api, "acme/embed", tmp_path / "embed", card_text=card(pipeline_tag="feature-extraction"))
    assert {d.repo_id for d in discover(make_ctx(pipeline_tag="text-generation"), dry_run=True)} == {
        "acme/chat"
    }
    both = make_ctx(pipeline_tag="text-generation,feature-extraction")
    assert {d.repo_id for d in discover(both, dry_run=True)} == {"acme/chat", "acme/embed"}


def test_a_config_claiming_a_huge_model_over_tiny_weights_is_skipped_and_the_pass_goes_on(
    make_ctx: Any, tmp_path: Path
) -> None:
    """The budget is checked on config.json's own sizes too (counted on the meta device: nothing is
    allocated), per candidate; an unreadable config is one error, never the end of the pass."""
    api = acme()
    huge = {"hidden_size": 65536, "intermediate_size": 262144, "num_hidden_layers": 512}
    publish_base(api, "acme/huge", tmp_path / "huge", config_extra=huge)
    publish_base(api, "acme/broken", tmp_path / "broken", config_extra={"hidden_size": "wide"})
    publish_base(api, "acme/fine", tmp_path / "fine")
    decisions = {d.repo_id: d for d in discover(make_ctx())}
    assert (decisions["acme/huge"].action, decisions["acme/huge"].reason) == ("skipped", "too_large")
    assert "config.json" in (decisions["acme/huge"].detail or "")
    assert (
        decisions["acme/broken"].action in ("skipped", "error") and decisions["acme/fine"].action == "queued"
    )


def test_gated_and_too_large_models_are_skipped(
    make_ctx: Any, store: tuple[LocalHub, str], tmp_path: Path
) -> None:
    api = acme()
    publish_base(api, "acme/gated", tmp_path / "gated")
    store[0].storage.update_repo("acme/gated", gated="auto")
    publish_base(api, "acme/big", tmp_path / "big")
    ctx = make_ctx(write_recipe(tmp_path / "small-budget", budget=1000))

    decisions = {d.repo_id: d for d in sync_once(ctx).decisions}

    assert decisions["acme/gated"].reason == "gated"
    assert decisions["acme/big"].reason == "too_large"
    assert "token" not in (decisions["acme/gated"].detail or "").replace("configured token", "")


def test_a_gated_model_is_smashed_once_the_token_is_granted(
    make_ctx: Any, store: tuple[LocalHub, str], tmp_path: Path
) -> None:
    publish_base(acme(), "acme/tiny-llama", tmp_path / "gated")
    store[0].storage.update_repo("acme/tiny-llama", gated="manual", grants=("pruna",))

    [outcome] = sync_once(make_ctx()).outcomes

    assert outcome.state == "published", outcome.error


def test_the_quality_gate_blocks_a_bad_recipe_and_records_its_numbers(make_ctx: Any, tmp_path: Path) -> None:
    publish_base(acme(), "acme/tiny-llama", tmp_path / "base")
    ctx = make_ctx(write_recipe(tmp_path / "harsh", bits=2, gate=0.999))

    [outcome] = sync_once(ctx).outcomes

    assert outcome.state == "failed"
    assert "QualityGateError" in (outcome.error or "")
    assert outcome.next_job_id is None  # no tie: nothing to fall back to
    assert outcome.metrics["top1_agreement"] < 0.999
    assert not HfApi().repo_exists(TARGET)
    with ctx.catalogue.read_session() as session:
        job = session.query(Job).filter(Job.namespace == ctx.catalogue.namespace).one()
        assert job.last_error_type == "QualityGateError"
        assert job.attempts == 1


def test_transient_hub_errors_are_retried_within_the_budget_then_fail_the_job(
    make_ctx: Any, store: tuple[LocalHub, str], tmp_path: Path
) -> None:
    hub, _ = store
    ctx = make_ctx()
    publish_base(acme(), "acme/tiny-llama", tmp_path / "a")
    hub.faults.add("commit", 503, times=2)  # absorbed by the client adapter's own retries
    assert [o.state for o in sync_once(ctx).outcomes] == ["published"]

    publish_base(acme(), "acme/second-llama", tmp_path / "b")
    hub.faults.add("commit", 503, times=5)  # outlasts one attempt's retries: the job is queued again
    assert [o.state for o in sync_once(ctx).outcomes] == ["queued", "published"]

    publish_base(acme(), "acme/third-llama", tmp_path / "c")
    hub.faults.add("commit", 503, times=1000)  # never recovers: the attempt budget (3) runs out
    outcomes = sync_once(ctx).outcomes
    assert [o.state for o in outcomes] == ["queued", "queued", "failed"]
    assert "HubTransientError" in (outcomes[-1].error or "")
    hub.faults.clear()
    assert not acme().list_repo_refs("PrunaAI/third-llama-smashed-test").tags
    with ctx.catalogue.read_session() as session:
        job = session.query(Job).filter(Job.namespace == ctx.catalogue.namespace, Job.state == "failed").one()
        assert (job.attempts, job.last_error_type) == (3, "HubTransientError")


def _smash_commits(repo_id: str) -> list[str]:
    return [c.title for c in acme().list_repo_commits(repo_id) if c.title.startswith("Smash ")]


@pytest.mark.parametrize(("operation", "status"), [("commit", 409), ("commit", 412), ("tag", 409)])
def test_a_transient_conflict_while_publishing_is_retried_and_publishes_once(
    make_ctx: Any, store: tuple[LocalHub, str], tmp_path: Path, operation: str, status: int
) -> None:
    hub, _ = store
    publish_base(acme(), "acme/tiny-llama", tmp_path / "base")
    hub.faults.add(operation, status, times=1)
    [outcome] = sync_once(make_ctx()).outcomes
    assert outcome.state == "published", outcome.error
    assert hub.faults.pending == 0
    assert len(_smash_commits(TARGET)) == 1 and len(acme().list_repo_refs(TARGET).tags) == 1


def test_a_hub_error_while_verifying_retries_the_job_which_adopts_the_publication(
    make_ctx: Any, store: tuple[LocalHub, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 500 during the load-back is the Hub's, not the model's: the job is queued again (not marked
    VerificationFailed), and the rerun adopts the tagged commit and verifies it."""
    import time

    hub, _ = store
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # huggingface_hub's own retry waits
    publish_base(acme(), "acme/tiny-llama", tmp_path / "base")
    ctx = make_ctx()
    verifications: list[str] = []

    def fail_the_first_load_back(message: str) -> None:
        if "verifying" not in message:
            return
        if not verifications:
            hub.faults.add("tree", 500, times=6)  # past huggingface_hub's own five retries
        verifications.append(message)

    ctx.report = fail_the_first_load_back
    outcomes = sync_once(ctx).outcomes
    assert [o.state for o in outcomes] == ["queued", "published"], [o.error for o in outcomes]
    assert "HubTransientError" in (outcomes[0].error or "")
    assert len(_smash_commits(TARGET)) == 1
    with ctx.catalogue.read_session() as session:
        entry = show_artifact(session, TARGET, namespace=ctx.catalogue.namespace)
    assert entry["artifact"]["verified"] is True and entry["job"]["state"] == "published"


def test_a_job_whose_lease_was_taken_over_before_its_commit_publishes_nothing(
    make_ctx: Any, tmp_path: Path
) -> None:
    """The fence: right before the commit the worker renews its lease in its own transaction; a worker
    that was paused past it (here: its lease expires and a successor claims the job just as it starts
    publishing) stops there instead of committing over the successor's work."""
    from datetime import timedelta

    from registry_db.jobs import claim_next_job
    from registry_db.models import utcnow

    publish_base(acme(), "acme/tiny-llama", tmp_path / "base")
    ctx = make_ctx()

    def successor_takes_over(message: str) -> None:
        if "publishing" in message:
            later = utcnow() + timedelta(hours=1)  # the paused worker's lease has long expired
            with ctx.catalogue.session() as session:
                claim_next_job(session, "successor", namespace=ctx.catalogue.namespace, now=later)

    ctx.report = successor_takes_over
    [outcome] = sync_once(ctx).outcomes
    assert outcome.state == "lease_lost", outcome
    assert _smash_commits(TARGET) == []  # the repo was created, nothing committed to it
    with ctx.catalogue.read_session() as session:
        job = session.query(Job).filter(Job.namespace == ctx.catalogue.namespace).one()
        assert (job.lease_owner, job.attempts) == ("successor", 2)


def test_dry_run_changes_nothing(make_ctx: Any, tmp_path: Path) -> None:
    publish_base(acme(), "acme/tiny-llama", tmp_path / "base")
    ctx = make_ctx()

    summary = sync_once(ctx, dry_run=True)

    assert [d.action for d in summary.decisions] == ["would_queue"]
    assert TARGET in (summary.decisions[0].detail or "")
    assert _job_states(ctx) == []
    assert not HfApi().repo_exists(TARGET)


def test_cli_dry_run_prints_json_and_never_the_token(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from pruna_hub.cli import cli

    with LocalHub(tmp_path / "hub").install():
        publish_base(HfApi(), "acme/tiny-llama", tmp_path / "base")
    env = {
        "HF_TOKEN": "hf_secret_never_shown",
        "PRUNA_HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}",
        "PRUNA_HUB_RECIPE_DIRS": str(write_recipe(tmp_path / "recipes")),
        "PRUNA_HUB_DEVICE": "cpu",
    }
    args = ["sync", "--dry-run", "--local-hub", str(tmp_path / "hub"), "--format", "json"]

    result = CliRunner().invoke(cli, args, env=env)

    assert result.exit_code == 0, result.output
    assert "hf_secret_never_shown" not in result.output
    data = json.loads(result.stdout)
    assert [(d["repo_id"], d["action"]) for d in data["decisions"]] == [("acme/tiny-llama", "would_queue")]
    assert data["jobs"] == [] and data["published"] == []
