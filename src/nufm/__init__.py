"""nufm: self-supervised foundation models for particle-detector data.

Layout (one folder per concern, dependencies point one way):
``cli -> train, eval -> ssl, tasks -> models -> geometry``; ``data -> sim``.

- ``batch.py``: :class:`PointBatch`, the one packed-batch contract.
- ``data/``: the event record, PILArNet-M HDF5 read/write, real-sample readers, transforms, collate.
- ``sim/``: the built-in LArTPC event simulator.
- ``geometry/``: parameter-free tensor ops (offsets, FPS, kNN, ball query, serialization).
- ``models/``: tokenizers and encoders (never compute a loss).
- ``ssl/``: pretraining objectives. ``tasks/``: fine-tuning tasks. ``train/``: the loop.
- ``eval/``: metrics and probes. ``viz/``: event displays and plots.
"""

from nufm._version import __version__

__all__ = ["__version__"]
