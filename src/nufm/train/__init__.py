"""The pretraining engine: one explicit loop, schedules, checkpoints, DDP, logging.

What objectives and tasks return, :class:`~nufm.step.StepOutput`, lives at the package root
(``nufm/step.py``) beside the batch contract, so ``ssl`` and ``tasks`` never import ``train``.

Modules (import them directly; nothing is re-exported, so ``import nufm.train`` stays light):

- ``loop``: :func:`~nufm.train.loop.train`, the training loop.
- ``schedules``: precomputed lr / weight-decay / EMA-momentum arrays.
- ``optim``: AdamW with weight decay only on weight matrices.
- ``data``: the deterministic, resumable event stream.
- ``checkpoint``: atomic, verified checkpoints and RNG capture.
- ``distributed``: torchrun process groups and Slurm scripts.
- ``logging``: progress bar, JSONL, TensorBoard, W&B.
- ``components``: ``build_objective`` / ``build_dataset`` / ``build_transform`` dispatch (named
  runs are :mod:`nufm.presets`).
- ``run``: ``run_pretrain`` and the ``nufm pretrain`` argument parser.
"""
