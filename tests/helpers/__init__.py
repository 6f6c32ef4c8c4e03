"""Helpers shared by the test folders: tiny configs (:mod:`helpers.configs`) and small synthetic
events and packed batches (:mod:`helpers.events`).

``tests/`` is on ``sys.path`` through ``pythonpath`` in pyproject.toml, so a test imports them
as ``from helpers.events import make_batch`` from any folder (pytest runs with
``--import-mode=importlib``; test files are not packages). Fixtures built from them live in
``tests/conftest.py``.
"""
