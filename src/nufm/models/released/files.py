"""Read the field's released checkpoint files and build the model they hold.

Formats, told apart by their content (``shared/reference/released-models/README.md`` §3):

* **pimm raw checkpoint** (``.pth``): ``{"state_dict": ...}``, keys possibly under
  ``module.``, ``student.`` / ``teacher.`` and ``backbone.``; the student backbone is used, the
  teacher and the pretraining heads are ignored (and listed). The architecture comes from the
  experiment's ``config.py`` beside it (read, never executed), else from the weight shapes
  matched to a known released model.
* **pimm / Hugging Face export folder**: ``model.safetensors`` + ``config.json`` (the backbone
  keyword arguments, at the top or under any key), bare or prefixed keys.
* **Sonata** ``.pth``: ``{"config": <PointTransformerV3 kwargs>, "state_dict": <bare keys>}``.
* **PoLAr-MAE Lightning** ``.ckpt``: ``{"state_dict": "encoder.*" ..., "hyper_parameters"}``;
  the encoder is used, decoder, mask token and heads ignored (and listed).
  :func:`load_polarmae_pretrain` instead builds the whole pretraining model of a
  PoLAr-MAE-Pretrain file, every key used.

Owns :class:`ReleasedCheckpoint`, :func:`is_released`, :func:`read_released`,
:func:`build_released` and :func:`load_polarmae_pretrain`. A load refuses
(``nufm.errors.InputError``) when no known layout fits, when a model key is missing or has the
wrong shape; it logs what loaded and what was ignored.
"""

from __future__ import annotations

import ast
import json
import logging
import pickle
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from nufm.errors import InputError, NotFoundError
from nufm.hub import FORMAT, LoadReport, match_state
from nufm.models.released.encoders import (
    ReleasedPolarMAEConfig,
    ReleasedPolarMAEEncoder,
    ReleasedPTv3Config,
    ReleasedPTv3Encoder,
)
from nufm.models.released.panda import (
    PandaConfig,
    PandaSegmentor,
    PandaSegmentorConfig,
)
from nufm.models.released.polarmae import ARCHS, PolarMAEConfig
from nufm.models.released.polarmae_pretrain import PolarMAEPretrain, PolarMAEPretrainConfig
from nufm.models.released.polarmae_semantic import PolarMAESegmentor, PolarMAESegmentorConfig

log = logging.getLogger(__name__)

Format = Literal["pimm-raw", "pimm-export", "sonata", "polarmae-lightning"]

KNOWN_PTV3: dict[str, PandaConfig] = {
    "panda-base": PandaConfig(),
    "sonata": PandaConfig(
        in_channels=9,
        order=("z", "z-trans", "hilbert", "hilbert-trans"),
        enc_depths=(3, 3, 3, 12, 3),
        enc_patch_size=(1024,) * 5,
        layer_scale=None,
    ),
    "panda-semantic": PandaConfig(
        dec_depths=(2, 2, 2, 2),
        dec_channels=(64, 96, 192, 384),
        dec_num_head=(4, 6, 12, 24),
        dec_patch_size=(256,) * 4,
        layer_scale=0.0,
        enc_mode=False,
        mask_token=False,
    ),
}
"""Released PTv3 configurations (Panda arXiv:2512.01324 configs, Sonata's pretraining
config); a checkpoint without a config is matched to one of these by its weight shapes."""


@dataclass
class ReleasedCheckpoint:
    """A released file, read: what it holds and the weights under the model's key names."""

    format: Format
    kind: Literal["ptv3", "ptv3-segmentor", "polarmae", "polarmae-segmentor"]
    config: PandaConfig | PandaSegmentorConfig | PolarMAEConfig | PolarMAESegmentorConfig
    state: dict[str, Tensor]
    """Tensors under the key names of the model :func:`build_released` builds."""
    source: str
    ignored: list[str] = field(default_factory=list)
    """File keys left out on purpose (teacher copy, pretraining heads, decoder)."""


def _torch_load(path: Path, allow_pickle: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as e:
        raise InputError(
            f"{path}: holds Python objects besides tensors, which are not loaded unless you "
            f"trust the file (Python: read_released(path, allow_pickle=True)): {e}"
        ) from e
    except (RuntimeError, EOFError, OSError) as e:
        raise InputError(f"{path}: not a readable torch checkpoint (truncated?): {e}") from e


def is_released(path: str | Path) -> bool:
    """True when ``path`` looks like a released file of a supported format (by name and, for
    folders, by a ``config.json`` that is not nufm's own)."""
    p = Path(path)
    if p.is_dir():
        cfg = p / "config.json"
        if not (p / "model.safetensors").is_file() or not cfg.is_file():
            return False
        try:
            return json.loads(cfg.read_text()).get("format") != FORMAT
        except (json.JSONDecodeError, AttributeError):
            return False
    return p.is_file() and p.suffix in (".pth", ".ckpt", ".tar")


def _literal(node: ast.AST) -> Any:
    """Value of a constant expression of a pimm ``config.py`` (``dict(...)``, lists, tuples,
    numbers, strings, None); anything else is refused (the file is never executed)."""
    match node:
        case ast.Constant():
            return node.value
        case ast.Tuple() | ast.List():
            return [_literal(e) for e in node.elts]
        case ast.Dict():
            return {
                _literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True) if k
            }
        case ast.Call(func=ast.Name(id="dict"), args=[]):
            return {kw.arg: _literal(kw.value) for kw in node.keywords if kw.arg}
        case ast.UnaryOp(op=ast.USub()):
            return -_literal(node.operand)
        case _:
            raise ValueError(f"not a constant: {ast.dump(node)[:80]}")


def pimm_config_py(path: Path) -> dict | None:
    """The ``model = dict(...)`` of the pimm experiment ``config.py`` beside a raw checkpoint
    (pimm saves ``exp/<name>/model/model_last.pth`` and ``exp/<name>/config.py``), else None."""
    for folder in (path.parent, path.parent.parent):
        file = folder / "config.py"
        if not file.is_file():
            continue
        try:
            tree = ast.parse(file.read_text(), str(file))
            for stmt in tree.body:
                if (
                    isinstance(stmt, ast.Assign)
                    and len(stmt.targets) == 1
                    and isinstance(stmt.targets[0], ast.Name)
                    and stmt.targets[0].id == "model"
                ):
                    return _literal(stmt.value)
        except (SyntaxError, ValueError) as e:
            raise InputError(f"{file}: cannot read its model = dict(...): {e}") from e
    return None


def _strip(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _find_dict_with(obj: Any, key: str, depth: int = 0) -> dict | None:
    """The first dict (breadth-first, up to depth 4) that has ``key``."""
    if not isinstance(obj, dict) or depth > 4:
        return None
    if key in obj:
        return obj
    for v in obj.values():
        found = _find_dict_with(v, key, depth + 1)
        if found is not None:
            return found
    return None


def _infer_ptv3(state: dict[str, Tensor], source: str) -> PandaConfig:
    """Match the weight shapes of a backbone to a :data:`KNOWN_PTV3` entry."""
    if "embedding.stem.linear.weight" not in state:
        raise InputError(f"{source}: no PTv3 stem (embedding.stem.linear.weight) in the weights")
    stages = sorted({int(m.group(1)) for k in state if (m := re.match(r"enc\.enc(\d+)\.", k))})
    depths = tuple(
        len({m.group(1) for k in state if (m := re.match(rf"enc\.enc{s}\.block(\d+)\.", k))})
        for s in stages
    )
    channels = tuple(int(state[f"enc.enc{s}.block0.norm1.0.weight"].shape[0]) for s in stages)
    in_ch = int(state["embedding.stem.linear.weight"].shape[1])
    has_dec = any(k.startswith("dec.") for k in state)
    for name, known in KNOWN_PTV3.items():
        if (known.in_channels, known.enc_depths, known.enc_channels, not known.enc_mode) == (
            in_ch,
            depths,
            channels,
            has_dec,
        ):
            cfg = replace(
                known,
                mask_token="embedding.mask_token" in state,
                layer_scale=known.layer_scale if any(".ls1.0.gamma" in k for k in state) else None,
            )
            log.info("%s: no config in the file; weights match the released %s", source, name)
            return cfg
    raise InputError(
        f"{source}: no config in the file and the weights (in_channels {in_ch}, depths "
        f"{depths}, channels {channels}, decoder {has_dec}) match no released PTv3 "
        f"({', '.join(KNOWN_PTV3)}); put the model's keyword arguments in a config.json "
        "beside model.safetensors"
    )


def _ptv3_checkpoint(
    fmt: Format, state: dict[str, Tensor], config: dict | None, source: str
) -> ReleasedCheckpoint:
    state = _strip(state, "module.") if all(k.startswith("module.") for k in state) else state
    ignored: list[str] = []
    if any(k.startswith("student.") for k in state):
        ignored += [k for k in state if not k.startswith("student.")]
        state = _strip(state, "student.")
    seg_cfg = _find_dict_with(config, "num_classes") if config else None
    if "seg_head.weight" in state or seg_cfg is not None:
        if seg_cfg is None:
            backbone = _infer_ptv3(_strip(state, "backbone."), source)
            w = state["seg_head.weight"]
            seg = PandaSegmentorConfig(
                backbone=backbone,
                num_classes=int(w.shape[0]),
                backbone_out_channels=int(w.shape[1]),
            )
        else:
            seg = PandaSegmentorConfig.from_reference(seg_cfg)
        return ReleasedCheckpoint(fmt, "ptv3-segmentor", seg, state, source, ignored)
    if any(k.startswith("backbone.") for k in state):
        ignored += [k for k in state if not k.startswith("backbone.")]
        state = _strip(state, "backbone.")
    kwargs = _find_dict_with(config, "enc_channels") if config else None
    try:
        cfg = PandaConfig.from_reference(kwargs) if kwargs else _infer_ptv3(state, source)
    except ValueError as e:
        raise InputError(f"{source}: {e}") from e
    return ReleasedCheckpoint(fmt, "ptv3", cfg, state, source, ignored)


ENCODER_PARTS = ("tokenizer.", "pos_embed.", "transformer.")


SEGMENTOR_PARTS = ("upsampler.", "seg_head.", "loss_func.")


def _polarmae_checkpoint(
    state: dict[str, Tensor], hparams: dict | None, source: str
) -> ReleasedCheckpoint:
    state = {
        ("encoder." + k[len("student.") :] if k.startswith("student.") else k): v
        for k, v in state.items()
    }
    enc = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
    enc = {k: v for k, v in enc.items() if k.startswith(ENCODER_PARTS)}
    if not enc:
        raise InputError(f"{source}: no PoLAr-MAE encoder weights (encoder.tokenizer.* ...)")
    kwargs = _find_dict_with(hparams, "arch") if hparams else None
    if kwargs is not None:
        try:
            cfg = PolarMAEConfig.from_encoder_config(kwargs)
        except ValueError as e:
            raise InputError(f"{source}: {e}") from e
    else:
        width = int(enc["pos_embed.pos_enc.2.weight"].shape[0])
        arch = next((a for a, (w, _, _) in ARCHS.items() if w == width), None)
        if arch is None:
            raise InputError(f"{source}: encoder width {width} matches no PoLAr-MAE arch")
        depth = len({k.split(".")[2] for k in enc if k.startswith("transformer.blocks.")})
        cfg = PolarMAEConfig.from_encoder_config(
            {"arch": arch, "transformer_kwargs": {"depth": depth}}
        )
        log.warning("%s: no encoder hyper-parameters; inferred %s, depth %d", source, arch, depth)
    if any(k.startswith(("upsampler.", "seg_head.")) for k in state):
        kept = {"encoder." + k: v for k, v in enc.items()}
        kept |= {k: v for k, v in state.items() if k.startswith(SEGMENTOR_PARTS)}
        ignored = sorted(set(state) - set(kept))
        head = _find_dict_with(hparams, "seg_head_fetch_layers") if hparams else None
        if head is None:
            conv1 = state["seg_head.conv1.weight"]
            head = {
                "num_classes": int(state["seg_head.conv3.weight"].shape[0]),
                "seg_head_dim": int(conv1.shape[0]),
                "condition_global_features": int(conv1.shape[1]) == 3 * cfg.width,
            }
            log.warning("%s: no head hyper-parameters; fetch layers default (3, 7, 11)", source)
        try:
            seg = PolarMAESegmentorConfig.from_hyper_parameters(head, cfg)
        except ValueError as e:
            raise InputError(f"{source}: {e}") from e
        return ReleasedCheckpoint(
            "polarmae-lightning", "polarmae-segmentor", seg, kept, source, ignored
        )
    ignored = sorted(k for k in state if k.removeprefix("encoder.") not in enc)
    return ReleasedCheckpoint("polarmae-lightning", "polarmae", cfg, enc, source, ignored)


def read_released(path: str | Path, allow_pickle: bool = False) -> ReleasedCheckpoint:
    """Read a released file or folder (module docstring) without building the model.

    Raises:
        nufm.errors.NotFoundError: nothing at ``path``.
        nufm.errors.InputError: unreadable, or no supported layout fits.
    """
    p = Path(path)
    if not p.exists():
        raise NotFoundError(f"{p}: no such released checkpoint file or folder")
    source = str(p)
    if p.is_dir():
        if not (p / "model.safetensors").is_file() or not (p / "config.json").is_file():
            raise InputError(f"{p}: a released export folder needs model.safetensors + config.json")
        try:
            config = json.loads((p / "config.json").read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"{p / 'config.json'}: not valid JSON: {e}") from e
        state = load_file(str(p / "model.safetensors"))
        if any(".tokenizer.embedding." in k or k.startswith("tokenizer.") for k in state):
            keyed = (
                state
                if any(k.startswith("encoder.") for k in state)
                else {"encoder." + k: v for k, v in state.items()}
            )
            return _polarmae_checkpoint(keyed, config, source)
        return _ptv3_checkpoint("pimm-export", state, config, source)
    raw = _torch_load(p, allow_pickle)
    if not isinstance(raw, dict) or not isinstance(raw.get("state_dict"), dict):
        raise InputError(
            f"{p}: not a released checkpoint (expected a dict with 'state_dict'; found "
            f"{sorted(raw)[:8] if isinstance(raw, dict) else type(raw).__name__})"
        )
    state = {k: v for k, v in raw["state_dict"].items() if isinstance(v, Tensor)}
    if "hyper_parameters" in raw or any(k.startswith("encoder.tokenizer.") for k in state):
        return _polarmae_checkpoint(state, raw.get("hyper_parameters"), source)
    if isinstance(raw.get("config"), dict):
        return _ptv3_checkpoint("sonata", state, raw["config"], source)
    return _ptv3_checkpoint("pimm-raw", state, pimm_config_py(p), source)


def build_released(ckpt: ReleasedCheckpoint) -> tuple[nn.Module, LoadReport]:
    """The model ``ckpt`` describes with its weights loaded: a nufm encoder
    (:class:`ReleasedPTv3Encoder` / :class:`ReleasedPolarMAEEncoder`), a
    :class:`PandaSegmentor` or a :class:`PolarMAESegmentor`; eval mode.

    Raises:
        nufm.errors.InputError: a model key is missing or has another shape in the file.
    """
    model: nn.Module
    match ckpt.config:
        case PandaSegmentorConfig():
            model, prefix = PandaSegmentor(ckpt.config), ""
        case PandaConfig():
            model, prefix = ReleasedPTv3Encoder(ReleasedPTv3Config(ptv3=ckpt.config)), "model."
        case PolarMAEConfig():
            model = ReleasedPolarMAEEncoder(ReleasedPolarMAEConfig(polarmae=ckpt.config))
            prefix = "model."
        case PolarMAESegmentorConfig():
            model, prefix = PolarMAESegmentor(ckpt.config), ""
    state = {prefix + k: v for k, v in ckpt.state.items()}
    usable, report = match_state(model.state_dict(), state)
    if report.missing or report.mismatched or report.unexpected:
        raise InputError(
            f"{ckpt.source}: the {ckpt.kind} weights do not fit the model the file describes\n"
            f"{report}"
        )
    model.load_state_dict(usable, strict=False)
    log.info(
        "%s (%s, %s): %s; ignored %d file keys (teacher, heads, decoder)",
        ckpt.source,
        ckpt.format,
        ckpt.kind,
        report,
        len(ckpt.ignored),
    )
    report.unexpected = sorted(set(report.unexpected) | set(ckpt.ignored))
    return model.eval(), report


def load_polarmae_pretrain(
    path: str | Path, allow_pickle: bool = False
) -> tuple[PolarMAEPretrain, LoadReport]:
    """The whole PoLAr-MAE-Pretrain model of a Lightning ``.ckpt`` (encoder, decoder, mask
    token and reconstruction heads), every file key used; eval mode.

    Raises:
        nufm.errors.NotFoundError: no file at ``path``.
        nufm.errors.InputError: not a PoLAr-MAE pretraining checkpoint (no ``decoder.*``: a
            fine-tuned or encoder-only file), or a key missing, left over or of another shape.
    """
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"{p}: no such PoLAr-MAE checkpoint file")
    ckpt = read_released(p, allow_pickle)
    if ckpt.kind != "polarmae":
        raise InputError(f"{p}: a {ckpt.kind} checkpoint, not PoLAr-MAE-Pretrain")
    raw = _torch_load(p, allow_pickle)
    state = {
        ("encoder." + k[len("student.") :] if k.startswith("student.") else k): v
        for k, v in raw["state_dict"].items()
        if isinstance(v, Tensor)
    }
    if "increase_dim.weight" not in state or not any(k.startswith("decoder.") for k in state):
        raise InputError(
            f"{p}: no PoLAr-MAE decoder (decoder.*, increase_dim.*): a fine-tuned or "
            "encoder-only file; nufm.load reads its encoder"
        )
    assert isinstance(ckpt.config, PolarMAEConfig)
    try:
        found = _find_dict_with(raw.get("hyper_parameters"), "masking_ratio")
        ratio = 0.6 if found is None else float(found["masking_ratio"])
        cfg = PolarMAEPretrainConfig.from_weights(state, ckpt.config, ratio)
    except ValueError as e:
        raise InputError(f"{p}: {e}") from e
    model = PolarMAEPretrain(cfg)
    usable, report = match_state(model.state_dict(), state)
    if report.missing or report.mismatched or report.unexpected:
        raise InputError(f"{p}: the weights do not fit PoLAr-MAE-Pretrain\n{report}")
    model.load_state_dict(usable, strict=True)
    log.info("%s (PoLAr-MAE-Pretrain, decoder depth %d): %s", p, cfg.decoder_depth, report)
    return model.eval(), report
