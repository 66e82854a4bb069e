"""The sync service: discovery -> jobs in the catalogue -> smash, evaluate, publish, verify.

``discovery`` decides per model revision (queued or skipped with a reason), ``job`` runs one claimed
job, ``service`` loops over both; ``SyncContext`` carries settings, Hub adapter, catalogue and recipes.
"""
