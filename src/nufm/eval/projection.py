"""2D embeddings of feature vectors for visual inspection (t-SNE or PCA).

This file owns the reduction used by :func:`nufm.eval.plots.plot_embedding_2d`. t-SNE
(van der Maaten & Hinton, JMLR 2008) runs on a PCA pre-reduction (default 50 dims), the usual
recipe for speed and noise suppression. UMAP (arXiv:1802.03426) is not a dependency of nufm and
is not installed, so it is not offered. Neither map preserves global distances: use them to
look, never to score.
"""

from __future__ import annotations

import numpy as np

from nufm.eval.metrics import ArrayLike, to_numpy


def embed_2d(
    x: ArrayLike,
    method: str = "tsne",
    seed: int = 0,
    *,
    pca_dims: int = 50,
    perplexity: float = 30.0,
    max_iter: int = 1000,
) -> np.ndarray:
    """Reduce (N, D) features to (N, 2).

    Args:
        x: (N, D) float features (N >= 3 for PCA; N > perplexity for t-SNE, else it is lowered).
        method: ``tsne`` (PCA to ``pca_dims`` first, then t-SNE) or ``pca``.
        seed: random state of PCA's solver and t-SNE; same seed, same map.
        pca_dims: dimensions kept by the PCA pre-reduction for t-SNE.
        perplexity: t-SNE perplexity, clipped to (N - 1) / 3.
        max_iter: t-SNE optimisation iterations (scikit-learn needs >= 250).

    Returns:
        (N, 2) float32 coordinates.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    arr = to_numpy(x).astype(np.float32)
    if arr.ndim != 2 or arr.shape[0] < 3:
        raise ValueError(f"embed_2d needs (N, D) features with N >= 3, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("embed_2d features contain NaN or inf")
    N, D = arr.shape
    match method:
        case "pca":
            if D < 2:
                raise ValueError(f"PCA to 2D needs D >= 2, got D={D}")
            return PCA(n_components=2, random_state=seed).fit_transform(arr).astype(np.float32)
        case "tsne":
            n_pre = min(pca_dims, D, N)
            pre = (
                PCA(n_components=n_pre, random_state=seed).fit_transform(arr) if n_pre < D else arr
            )
            tsne = TSNE(
                n_components=2,
                perplexity=min(perplexity, (N - 1) / 3.0),
                init="pca",
                random_state=seed,
                max_iter=max_iter,
            )
            return tsne.fit_transform(pre).astype(np.float32)
        case _:
            raise ValueError(
                f"embed_2d method must be 'tsne' or 'pca' (UMAP is not installed), got {method!r}"
            )
