"""Benchmarks of nufm components (run as modules, e.g. ``python -m nufm.benchmarks.models``)."""
