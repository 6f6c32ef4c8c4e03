"""nn.Modules that turn a PointBatch into features (never losses): the PoLAr-MAE tokenizer and
ViT, the PTv3 serialized transformer, the causal serialized-patch encoder of forecasting, the
Perceiver-IO stream fusion block and the token-to-point upsampler. Import from the submodules,
e.g. ``from nufm.models.encoders import build_encoder``."""
