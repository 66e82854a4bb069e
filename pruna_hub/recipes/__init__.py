"""Recipes: declarative TOML files that say how models of some families are smashed, gated and published.

A recipe file ``<name>.toml`` (the file stem is the recipe's name)::

    description = "Llama family on CPU: 8-bit HQQ weights, compiled, static KV cache."
    version = 1            # bump to republish every model made with it (it is part of the content hash)
    priority = 100         # the highest-priority matching recipe is chosen; ties are a load-time error,
    rank_by = "decode_latency"  # unless each tied recipe sets this: the sync then times them on its host
    device = "cpu"         # or "cuda"

    [match]                # every criterion given must hold (pruna_hub.recipes.profile reads config.json)
    model_types = ["llama"]        # families: config.json's model_type
    architectures = []             # optional: class names, any of config.json's architectures
    attention = ["full"]           # optional: full, sliding, hybrid (sliding and full layers)
    moe = false                    # optional: true only mixture-of-experts models, false none

    [smash.hqq]            # one table per algorithm: its hyperparameters (checked by smash.SmashConfig)
    weight_bits = 8
    group_size = 64
    [smash.torch_compile]

    [evaluation]           # optional: keyword arguments of smash.evaluation.Settings (not `device`,
    generation_lengths = [32, 64, 128]   # which is the recipe's own), checked by Settings itself
    quality_prompts = 16
    [quality_gate]         # at least one of recipe.GATE_CHECKS; a threshold without its measurement fails
    min_generation_prefix = 0.5    # greedy generate() against the base's: matching prefix, share of tokens
    min_generation_agreement = 1.0 # ... token agreement (1.0: identical, for lossless recipes)
    min_top1_agreement = 0.95      # teacher-forced next-token agreement; also max_kl, max_perplexity_ratio
    min_cosine = 0.99              # encoders: pooled-output cosine (minimum over the prompts)
    min_label_agreement = 0.95     # classifiers: share of inputs whose top label is the base's
    max_decode_ratio = 1.0         # speed: smashed decode median over the base's (slower: not published)
    max_latency_ratio = 1.0        # speed of models that do not decode: forward time over the base's
    [budget]               # at least one of max_parameters, max_bytes (of the base model)
    max_parameters = 3_000_000_000
    [publish]              # {target_org}/ first, {name} required; also {author}, {recipe}
    repo_template = "{target_org}/{name}-smashed-hqq-8bit"

Every file is validated when loaded (``RecipeError`` names the file and the dotted field), its SmashConfig
is ordered with ``determine_algorithm_order`` at load, and ``Recipe.content_hash`` (sha256 of a canonical
JSON of the validated content, without ``description``, ``priority`` and ``rank_by``) identifies it in the
catalogue. How a ``rank_by`` tie is measured and decided: ``pruna_hub.recipes.ranking``.
User directories are loaded after the built-ins; a user recipe with a built-in's name overrides it.
"""

from pruna_hub.recipes.book import RecipeBook, builtin_dir, load_directory, load_recipes, model_signature
from pruna_hub.recipes.recipe import QualityGate, Recipe, SizeBudget, parse_recipe, parse_recipe_file

__all__ = [
    "QualityGate",
    "Recipe",
    "RecipeBook",
    "SizeBudget",
    "builtin_dir",
    "load_directory",
    "load_recipes",
    "model_signature",
    "parse_recipe",
    "parse_recipe_file",
]
