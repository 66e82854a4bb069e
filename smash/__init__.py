"""smash: the model-optimization engine.

``smash(model, SmashConfig)`` validates the requested algorithms, orders them from their declared
constraints (``determine_algorithm_order``), applies them and returns a ``PrunaModel``.
This package never imports pruna_hub, registry_db, sqlalchemy or click.
"""

from smash.registry import Registry, load_builtins, load_plugins, registry

__version__ = "0.1.0"

load_builtins()
load_plugins()

from smash.config import SmashConfig  # noqa: E402
from smash.engine import smash  # noqa: E402
from smash.model import PrunaModel  # noqa: E402
from smash.ordering import determine_algorithm_order  # noqa: E402

__all__ = [
    "PrunaModel",
    "Registry",
    "SmashConfig",
    "__version__",
    "determine_algorithm_order",
    "registry",
    "smash",
]
