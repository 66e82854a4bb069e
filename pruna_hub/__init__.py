"""pruna_hub: the service that keeps a model hub stocked with smashed copies of new models."""

__version__ = "0.1.0"
