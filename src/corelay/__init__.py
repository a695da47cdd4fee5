"""corelay: typed storage of analysis-pipeline results.

The storage layer lives in :mod:`corelay.io`; :mod:`corelay.plugboard` and :mod:`corelay.base`
hold the typed keyword parameters the storages are configured with.
"""
