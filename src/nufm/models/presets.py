"""Named model sizes as literal dicts of configs (no registry; see STYLE.md section 3).

PTv3 sizes follow Panda (arXiv:2512.01324); ViT and tokenizer sizes follow PoLAr-MAE
(arXiv:2502.02558) and live next to their code. Parameter counts: docs/references.md.
"""

from __future__ import annotations

from nufm.models.ptv3 import PTv3Config
from nufm.models.tokenizers import TOKENIZER_PRESETS
from nufm.models.vit import VIT_PRESETS

PTV3_PRESETS: dict[str, PTv3Config] = {
    # CPU-trainable in minutes: ~2-3 M parameters.
    "tiny": PTv3Config(
        stride=(2, 2, 2),
        enc_depths=(1, 1, 2, 1),
        enc_channels=(32, 64, 128, 256),
        enc_num_head=(2, 4, 8, 16),
        enc_patch_size=(128, 128, 128, 128),
        dec_depths=(1, 1, 1),
        dec_channels=(32, 64, 128),
        dec_num_head=(2, 4, 8),
        dec_patch_size=(128, 128, 128),
        drop_path=0.1,
    ),
    "small": PTv3Config(
        stride=(2, 2, 2, 2),
        enc_depths=(2, 2, 2, 4, 2),
        enc_channels=(32, 64, 128, 256, 384),
        enc_num_head=(2, 4, 8, 16, 24),
        enc_patch_size=(256,) * 5,
        dec_depths=(1, 1, 1, 1),
        dec_channels=(48, 64, 128, 256),
        dec_num_head=(3, 4, 8, 16),
        dec_patch_size=(256,) * 4,
        drop_path=0.2,
    ),
    # Panda-Base: the pretrained encoder.
    "panda-base": PTv3Config(enc_mode=True, layer_scale=1e-5),
    # Panda-Semantic backbone: encoder + semseg decoder.
    "panda-semantic": PTv3Config(enc_mode=False),
}
"""PTv3 sizes: tiny -> panda-base / panda-semantic."""

__all__ = ["PTV3_PRESETS", "TOKENIZER_PRESETS", "VIT_PRESETS"]
