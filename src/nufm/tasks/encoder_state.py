"""Loading pretrained encoder weights into a task's encoder: find the encoder's tensors in any
state dict (encoder, objective, task or DDP-wrapped) and copy the ones that fit, with a report.

Owns :func:`extract_encoder_state` and :func:`load_encoder_state`; reading weights from files
is :mod:`nufm.workflows.load`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping

from torch import Tensor, nn

from nufm.hub import LoadReport, match_state

log = logging.getLogger(__name__)


def extract_encoder_state(
    state: Mapping[str, Tensor], encoder: nn.Module, prefix: str | None = None
) -> tuple[dict[str, Tensor], str]:
    """Pick the encoder's tensors out of a larger state dict.

    ``state`` may be an encoder state dict (prefix ""), an objective's (``encoder.``), a task's
    (``backbone.encoder.``) or a DDP-wrapped one (``module.…``). With ``prefix=None`` the
    prefix under which most keys end in an encoder key is chosen (ties: the shortest, so a
    student ``encoder.`` wins over ``teacher.encoder.``; pass ``prefix`` to choose).

    Returns:
        (the tensors under the prefix with the prefix stripped, the prefix used).
    """
    own = set(encoder.state_dict())
    if prefix is None:
        votes: Counter[str] = Counter()
        for key in state:
            if key in own:
                votes[""] += 1
            for i, ch in enumerate(key):
                if ch == "." and key[i + 1 :] in own:
                    votes[key[: i + 1]] += 1
        if not votes:
            return {}, ""
        best = max(votes.values())
        tied = sorted((p for p, v in votes.items() if v == best), key=len)
        prefix = tied[0]
        if len(tied) > 1:
            log.warning(
                "encoder weights found under several prefixes %s; using %r (pass "
                "prefix= to choose)",
                tied,
                prefix,
            )
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, prefix


def load_encoder_state(
    encoder: nn.Module,
    state: Mapping[str, Tensor],
    *,
    prefix: str | None = None,
    source: str = "<state dict>",
    strict: bool = False,
) -> LoadReport:
    """Copy pretrained weights into ``encoder``, skipping (and reporting) bad keys.

    Args:
        encoder: the randomly initialised encoder.
        state: a state dict holding the encoder weights (see :func:`extract_encoder_state`).
        prefix: key prefix of the encoder weights in ``state``; None = detect.
        source: where ``state`` came from, for messages.
        strict: True = raise unless every encoder key loads and nothing is left over.

    Returns:
        A :class:`nufm.hub.LoadReport` (loaded / missing / unexpected / shape-mismatched).

    Raises:
        ValueError: no tensor fits the encoder, or ``strict`` and the load is not exact.
    """
    sub, used = extract_encoder_state(state, encoder, prefix)
    usable, report = match_state(encoder.state_dict(), sub)
    if not usable:
        raise ValueError(
            f"{source}: no tensor fits the {type(encoder).__name__} "
            f"({len(state)} tensors given, prefix {used!r}; the encoder config "
            f"must match the pretrained one)\n{report}"
        )
    if strict and not report.is_exact:
        raise ValueError(f"{source}: encoder load is not exact (prefix {used!r})\n{report}")
    encoder.load_state_dict(usable, strict=False)
    level = logging.INFO if report.is_exact else logging.WARNING
    log.log(level, "%s: encoder weights (prefix %r): %s", source, used, report)
    return report
