"""Self-supervised pretraining objectives (``nn.Module``s with ``forward(PointBatch) ->
StepOutput``): masked autoencoding (PoLAr-MAE, arXiv:2502.02558) in ``mae``, multi-view
prototype self-distillation (Sonata arXiv:2503.16429 / Panda arXiv:2512.01324) in ``distill``,
next-patch forecasting along a space-filling curve or FM4NPP's radial cells (arXiv:2508.14087)
in ``forecast``; shared pieces in ``masking``, ``views``, ``ema`` and ``losses``; dispatch in
``build``; a tiny test objective in ``toy``. Import from the submodules, e.g.
``from nufm.ssl.build import build_ssl_objective``; named objectives are in :mod:`nufm.presets`.
"""
