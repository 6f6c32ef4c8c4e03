"""The field's released models, re-implemented to reproduce the reference outputs exactly and
to load the released checkpoints under their own key names: the PoLAr-MAE encoder
(:mod:`.polarmae`) and the Panda / Sonata PTv3 (:mod:`.panda`). nufm's own encoders stay in
:mod:`nufm.models`; these copy the references' quirks on purpose (documented per module)."""
