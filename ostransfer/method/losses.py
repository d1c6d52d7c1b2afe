"""STROTSS losses with hand-written gradients (docs/algorithm.md §4), on any Array API namespace.

Shapes: X (N, D) output hypercolumns, C (N, D) content hypercolumns at the same locations,
S (M, D) style hypercolumns; columns 0..2 are raw RGB in [0, 1].

Every loss function returns ``(value, dX)``: ``value`` is a 0-d array of X's dtype (on X's
device; ``float(value)`` brings it to the host), ``dX`` the gradient with respect to X.
``palette_loss`` and ``color_loss`` return an (N, 3) gradient (the RGB columns only);
``total_loss`` pads them. Style and content targets (``style_target``, ``content_target``)
hold everything that does not depend on X and are built once per scale / per sample set.

Conventions: cosine distance d_cos(v, w) = 1 - v.w / (max(|v|, eps) max(|w|, eps)) with
eps = 1e-8; REMD gradients flow through the larger branch (the row branch on a tie) and the
arg-min pairs only (first index on ties, like argmin); the Euclidean distance has gradient 0
at distance exactly 0; sign(0) = 0 for the L1 terms. Array API as SciPy writes it: each
public function resolves ``xp = array_namespace(X)`` once; the helpers take ``*, xp``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..arrays import Array, array_namespace
from ..presets import check_preset
from .products import matmul
from .segments import SegmentSum

EPS = 1e-8
_SQRT3 = math.sqrt(3.0)


# ---------------------------------------------------------------------------------------
# helpers


def _normalise_rows(A: Array, *, xp) -> tuple[Array, Array, Array]:
    """Rows of A (K, C) divided by max(|row|, eps).

    Returns (unit (K, C), clipped norm (K, 1), mask (K, 1): 1 where |row| > eps else 0,
    in A's dtype); the mask and norm feed ``_unit_backward``.
    """
    norm = xp.linalg.vector_norm(A, axis=1, keepdims=True)
    mask = xp.astype(norm > EPS, A.dtype)
    norm = xp.clip(norm, min=EPS)
    return A / norm, norm, mask


def _sum64(A: Array, axis: int | None = None, scale: float = 1.0, *, xp) -> Array:
    """scale * (sum of A over ``axis``; all axes: None), accumulated in float64, in A's dtype.

    A float32 sum of K terms along a non-contiguous axis (NumPy adds the rows one by one)
    or through BLAS drifts by up to ~K float32 ulps; float64 accumulation leaves one
    rounding, to A's dtype at the end. Costs one pass over A (a few ms at 2179^2)."""
    total = xp.sum(A, axis=axis, dtype=xp.float64)
    return xp.astype(total * scale if scale != 1.0 else total, A.dtype)


def _unit_backward(g_unit: Array, unit: Array, norm: Array, mask: Array, *, xp) -> Array:
    """Pull a gradient (K, C) w.r.t. unit = A / max(|A|, eps) back to A (K, C)."""
    radial = xp.vecdot(g_unit, unit)[:, None] * mask
    return (g_unit - radial * unit) / norm


# ---------------------------------------------------------------------------------------
# targets


@dataclass(frozen=True)
class StyleTarget:
    """Everything about the style set S (M, D) that the losses need; build once per scale.

    feats (M, D); unit (M, D) rows over max(|row|, eps); mean (D,); cov (D, D), 1/M;
    rgb (M, 3) the raw RGB columns; rgb_unit (M, 3) their unit rows; rgb_aug (M, 5) the rows
    [-2 s', 1, |s'|^2] of the colours centred on their mean, s' = s - mean[:3], so that
    [x', |x'|^2, 1] @ rgb_aug.T is the squared distance |x - s|^2 (centred, the float32
    product is 4 times closer to it: fewer arg-min pairs picked wrongly).
    """

    feats: Array
    unit: Array
    mean: Array
    cov: Array
    rgb: Array
    rgb_unit: Array
    rgb_aug: Array


def style_target(S: Array) -> StyleTarget:
    """Precompute the style statistics of S (M, D); costs one D x D x M product."""
    xp = array_namespace(S)
    m = S.shape[0]
    unit, _, _ = _normalise_rows(S, xp=xp)
    # once per scale, so in float64 (0.4 s at M = 5000, D = 2179 on two cores): the float32
    # product's rounding would be half of d_cov's error in moment_loss
    Sc = xp.astype(S, xp.float64)
    mean64 = xp.sum(Sc, axis=0) * (1.0 / m)  # as moment_loss's mu(X): 0 loss at X = S
    Sc -= mean64
    mean = xp.astype(mean64, S.dtype)
    cov = xp.astype(matmul(Sc.T, Sc, xp=xp) / m, S.dtype)
    del Sc
    rgb = S[:, :3]
    rgb_unit, _, _ = _normalise_rows(rgb, xp=xp)
    rgb_c = rgb - mean[:3]
    rgb_aug = xp.concat([-2.0 * rgb_c, xp.ones_like(rgb[:, :1]),
                         xp.sum(rgb_c * rgb_c, axis=1, keepdims=True)], axis=1)
    return StyleTarget(feats=S, unit=unit, mean=mean, cov=cov, rgb=rgb, rgb_unit=rgb_unit,
                       rgb_aug=rgb_aug)


@dataclass(frozen=True)
class ContentTarget:
    """The content's column-normalised cosine self-similarity matrix A (N, N).

    feats (N, D): C itself and unit_sum (D,): the sum of C's unit rows in float64, from
    which ``content_loss`` recomputes single entries of A in float64 (at its kinks);
    without them (None) it does not."""

    A: Array
    feats: Array | None = None
    unit_sum: Array | None = None


def _column_normalised(unit: Array, *, xp) -> tuple[Array, Array]:
    """A (N, N) = D / s with D = 1 - U U^T from unit rows U (N, D) and s (N,) its column
    sums; returns (A, s).

    The column sums accumulate in float64: a float32 sum down the N rows is off by up to
    ~N ulps, which shifts every A_ij by as much and flips sign(A^X - A^C) wherever the two
    agree to a few ulps (the content term's kinks)."""
    Dm = 1.0 - matmul(unit, unit.T, xp=xp)
    colsum = _sum64(Dm, axis=0, xp=xp)
    return Dm / colsum[None, :], colsum


def content_target(C: Array) -> ContentTarget:
    """Precompute the content self-similarity of C (N, D); once per sample set."""
    xp = array_namespace(C)
    unit, _, _ = _normalise_rows(C, xp=xp)
    return ContentTarget(A=_column_normalised(unit, xp=xp)[0], feats=C,
                         unit_sum=xp.sum(unit, axis=0, dtype=xp.float64))


# Entries of A^X - A^C closer to 0 than this fraction of A are treated as kinks whose sign
# float32 cannot settle (its error there is ~2e-7 of A, rms): their signs are recomputed
# in float64 from the hypercolumns, unless there are more than _KINK_MAX_PER_ROW * N of them
# (X = C, or nearly: then the float32 signs stand).
_KINK_TOL = 2.0 ** -17
_KINK_MAX_PER_ROW = 4
_KINK_CHUNK = 1024


def _pair_distances64(F: Array, unit_sum64: Array, i: Array, j: Array, *, xp) -> Array:
    """A_ij in float64 for rows F (N, D) and index pairs i, j (K,), given the float64 sum
    of F's unit rows (D,): D_ij = 1 - f_i . f_j, s_j = sum_k D_kj = N - unit_sum . f_j."""
    parts = []
    for start in range(0, i.shape[0], _KINK_CHUNK):
        fi, fj = (xp.astype(xp.take(F, k[start:start + _KINK_CHUNK], axis=0), xp.float64)
                  for k in (i, j))
        ni = xp.clip(xp.sqrt(xp.vecdot(fi, fi)), min=EPS)
        nj = xp.clip(xp.sqrt(xp.vecdot(fj, fj)), min=EPS)
        colsum = F.shape[0] - xp.vecdot(fj, unit_sum64[None, :]) / nj
        parts.append((1.0 - xp.vecdot(fi, fj) / (ni * nj)) / colsum)
    return xp.concat(parts)


def _kink_signs(diff: Array, abs_diff: Array, A: Array, X: Array, unit: Array,
                content: ContentTarget, *, xp) -> Array:
    """sign(A^X - A^C) (N, N), with the entries near 0 recomputed in float64."""
    sign = xp.sign(diff)
    if content.feats is None or content.unit_sum is None:
        return sign
    near = abs_diff < _KINK_TOL * A
    i, j = xp.nonzero(near)  # row-major, the order of sign[near]
    if i.shape[0] == 0 or i.shape[0] > _KINK_MAX_PER_ROW * diff.shape[0]:
        return sign
    d64 = (_pair_distances64(X, xp.sum(unit, axis=0, dtype=xp.float64), i, j, xp=xp)
           - _pair_distances64(content.feats, content.unit_sum, i, j, xp=xp))
    sign[near] = xp.astype(xp.sign(d64), sign.dtype)
    return sign


# ---------------------------------------------------------------------------------------
# losses


def _remd_unit_grad(unit: Array, style: StyleTarget, *, xp) -> tuple[Array, Array]:
    """REMD(X, S; d_cos) from X's unit rows (N, D): (0-d value, gradient w.r.t. unit)."""
    n, m = unit.shape[0], style.unit.shape[0]
    cos = matmul(unit, style.unit.T, xp=xp)  # (N, M); d_cos = 1 - cos
    # argmin of 1 - cos == argmax of cos (first index on ties); the means and 1 - mean in
    # float64, rounded once (a float32 mean, then 1 - mean, rounded twice: up to 0.8 ulp)
    r_rows = 1.0 - xp.mean(xp.astype(xp.max(cos, axis=1), xp.float64))
    r_cols = 1.0 - xp.mean(xp.astype(xp.max(cos, axis=0), xp.float64))
    if bool(r_rows >= r_cols):
        j_star = xp.argmax(cos, axis=1)  # (N,)
        return xp.astype(r_rows, unit.dtype), xp.take(style.unit, j_star, axis=0) * (-1.0 / n)
    i_star = xp.argmax(cos, axis=0)  # (M,)
    return xp.astype(r_cols, unit.dtype), SegmentSum(i_star, n)(style.unit) * (-1.0 / m)


def remd_style_loss(X: Array, style: StyleTarget) -> tuple[Array, Array]:
    """l_r = REMD(X, S; d_cos) over all D channels. X (N, D) -> (0-d value, dX (N, D)).

    One N x M x D product (the cosine matrix); the row branch gathers the arg-min style rows,
    the column branch scatter-adds them onto their arg-min output rows.
    """
    xp = array_namespace(X)
    unit, norm, mask = _normalise_rows(X, xp=xp)
    value, g_unit = _remd_unit_grad(unit, style, xp=xp)
    return value, _unit_backward(g_unit, unit, norm, mask, xp=xp)


def moment_loss(X: Array, style: StyleTarget) -> tuple[Array, Array]:
    """l_m = |mu(X) - mu(S)|_1 / D + |Sigma(X) - Sigma(S)|_1 / D^2, covariances 1/N.

    X (N, D) -> (0-d value, dX (N, D)); one D x D x N product for Sigma(X), one N x D x D
    for the gradient.
    """
    return _moment(X, style.mean, style.cov, xp=array_namespace(X))


def color_loss(X: Array, style: StyleTarget) -> tuple[Array, Array]:
    """l_col: ``moment_loss`` of the three RGB columns alone, against the style's RGB mean
    and covariance (docs/algorithm.md §4.4b). X (N, D) -> (0-d value, dX_rgb (N, 3)), the
    gradient w.r.t. the RGB columns only, as ``palette_loss``'s."""
    return _color(X, style, xp=array_namespace(X))


def _color(X: Array, style: StyleTarget, *, xp) -> tuple[Array, Array]:
    """``color_loss`` in the namespace xp (slices are views: nothing is copied)."""
    return _moment(X[:, :3], style.mean[:3], style.cov[:3, :3], xp=xp)


def _moment(X: Array, mean: Array, cov: Array, *, xp) -> tuple[Array, Array]:
    """``moment_loss`` of X (N, d) against a style mean (d,) and covariance (d, d)."""
    n, d = X.shape
    mu = _sum64(X, axis=0, scale=1.0 / n, xp=xp)  # a float32 mean down N rows drifts ~N ulps
    Xc = X - mu
    # divided after the product: scaling Xc by a rounded 1/sqrt(N) first would bias every
    # entry of Sigma(X) the same way, and sum |d_cov| with them
    d_cov = matmul(Xc.T, Xc, xp=xp) / n - cov
    sign_cov = xp.sign(d_cov)
    d_mu = mu - mean
    # the D^2 = 4.7M terms of |d_cov| summed in float64 (a float32 BLAS dot of them was
    # off by ~1e-6 relative)
    value = xp.astype(xp.sum(xp.abs(d_mu), dtype=xp.float64) / d
                      + xp.sum(xp.abs(d_cov), dtype=xp.float64) / (d * d), X.dtype)
    # dl/dXc = Xc (G + G^T) / N with G = sign(d_cov) / D^2; d_cov is symmetric, so
    # G + G^T = 2G (up to entries that are zero to rounding, i.e. at the kinks). The mean's
    # dependence of Sigma cancels because the rows of Xc sum to 0.
    dX = (matmul(Xc, sign_cov, xp=xp) * (2.0 / (n * d * d))
          + (xp.sign(d_mu) * (1.0 / (n * d)))[None, :])
    return value, dX


def _palette_pairs(x: Array, s: Array, preset: str, *, xp) -> tuple[Array, Array]:
    """Distance and its gradient w.r.t. x for paired RGB rows x, s (K, 3).

    Returns (d (K,), dd/dx (K, 3)), in the dtype of x and s.
    """
    diff = x - s
    e = xp.linalg.vector_norm(diff, axis=1)
    # the gradient at exactly zero distance is 0 (diff is then exactly 0 too)
    safe = xp.where(e > 0, e, xp.ones_like(e))
    g = diff / safe[:, None]
    if preset == "paper":
        return e, g
    unit, norm, mask = _normalise_rows(x, xp=xp)
    s_unit, _, _ = _normalise_rows(s, xp=xp)
    c = xp.sum(unit * s_unit, axis=1)
    d = (1.0 - c) + e / _SQRT3
    g_cos = _unit_backward(-s_unit, unit, norm, mask, xp=xp)
    return d, g_cos + g / _SQRT3


def palette_loss(X: Array, style: StyleTarget, preset: str) -> tuple[Array, Array]:
    """l_p = REMD(X_rgb, S_rgb; d) on the raw RGB columns 0..2.

    ``paper``: d = Euclidean distance; ``strotss``: d = d_cos + |v - w|_2 / sqrt(3).
    X (N, D) -> (0-d value, dX_rgb (N, 3)): the gradient w.r.t. the RGB columns only
    (the other D - 3 columns get 0; ``total_loss`` pads it). The N x M cost matrix only
    selects the arg-min pairs; values and gradients are recomputed exactly on those pairs,
    in float64 (N + M rows of 3: cheap), then rounded to X's dtype: in float32 the strotss
    distance's 1 - cos, which cancels for nearly parallel colours, came out biased by
    ~1e-8 per pair, 3e-7 of the term after a run.
    """
    check_preset(preset)
    return _palette(X, style, preset, xp=array_namespace(X))


def _palette(X: Array, style: StyleTarget, preset: str, *, xp) -> tuple[Array, Array]:
    """``palette_loss`` in the namespace xp, for a checked preset."""
    n, m = X.shape[0], style.rgb.shape[0]
    x = X[:, :3]
    x_c = x - style.mean[:3]  # centred like style.rgb_aug
    x_aug = xp.concat([x_c, xp.sum(x_c * x_c, axis=1, keepdims=True),
                       xp.ones_like(x[:, :1])], axis=1)
    if preset == "paper":
        # |x - s|^2 (N, M): the same arg-mins as the Euclidean distance
        K = xp.matmul(x_aug, style.rgb_aug.T)
    else:
        # d - 1 = |x - s| / sqrt(3) - cos(x, s), from |x - s|^2 / 3
        sq3 = xp.matmul(x_aug * (1.0 / 3.0), style.rgb_aug.T)
        x_unit, _, _ = _normalise_rows(x, xp=xp)
        K = xp.sqrt(xp.clip(sq3, min=0.0)) - xp.matmul(x_unit, style.rgb_unit.T)
    j_star = xp.argmin(K, axis=1)  # (N,)
    i_star = xp.argmin(K, axis=0)  # (M,)
    x64, rgb64 = xp.astype(x, xp.float64), xp.astype(style.rgb, xp.float64)
    d_rows, g_rows = _palette_pairs(x64, xp.take(rgb64, j_star, axis=0), preset, xp=xp)
    d_cols, g_cols = _palette_pairs(xp.take(x64, i_star, axis=0), rgb64, preset, xp=xp)
    r_rows = xp.mean(d_rows)
    r_cols = xp.mean(d_cols)
    if bool(r_rows >= r_cols):
        return xp.astype(r_rows, X.dtype), xp.astype(g_rows * (1.0 / n), X.dtype)
    return (xp.astype(r_cols, X.dtype),
            xp.astype(SegmentSum(i_star, n)(g_cols) * (1.0 / m), X.dtype))


def _content_unit_grad(X: Array, unit: Array, content: ContentTarget, preset: str, *, xp):
    """Content loss from X (N, D) and its unit rows: (0-d value, gradient w.r.t. unit)."""
    n = unit.shape[0]
    w = 1.0 / (n * n) if preset == "paper" else 1.0 / n
    A, colsum = _column_normalised(unit, xp=xp)  # the same arithmetic as content.A
    diff = A - content.A
    abs_diff = xp.abs(diff)
    value = _sum64(abs_diff, scale=w, xp=xp)
    G = _kink_signs(diff, abs_diff, A, X, unit, content, xp=xp) * w  # dl/dA
    # A_ij = D_ij / s_j, s_j = sum_k D_kj  =>  dl/dD_ij = (G_ij - sum_k G_kj A_kj) / s_j
    Hm = (G - _sum64(G * A, axis=0, xp=xp)[None, :]) / colsum[None, :]
    # D = 1 - U U^T  =>  dl/dU = -(H + H^T) U
    return value, matmul(Hm + Hm.T, unit, xp=xp) * -1.0


def content_loss(X: Array, content: ContentTarget, preset: str) -> tuple[Array, Array]:
    """Self-similarity content loss. X (N, D) -> (0-d value, dX (N, D)).

    A^X: cosine self-similarity of X, each column divided by its sum; l_c = w sum |A^X - A^C|
    with w = 1/N^2 (``paper``) or 1/N (``strotss``). One N x N x D product for A^X and one
    for the gradient (which includes the column normalisation's derivative).
    """
    check_preset(preset)
    xp = array_namespace(X)
    unit, norm, mask = _normalise_rows(X, xp=xp)
    value, g_unit = _content_unit_grad(X, unit, content, preset, xp=xp)
    return value, _unit_backward(g_unit, unit, norm, mask, xp=xp)


def _weights(preset: str, a: float, palette: float | None, color: float
             ) -> tuple[float, float, float, float, float]:
    """Weights of (content, remd, moment, palette, colour) in the total, denominator
    included; ``palette`` replaces the preset's palette factor (1/a, 1/max(a, 1)) when given."""
    if preset == "paper":
        den, factor = 2.0 + a + 1.0 / a, 1.0 / a
    else:
        den, factor = a + 2.0, 1.0 / max(a, 1.0)
    return (a / den, 1.0 / den, 1.0 / den, (factor if palette is None else palette) / den,
            color / den)


def total_loss(X: Array, content: ContentTarget, style: StyleTarget, preset: str,
               content_weight: float, palette_weight: float | None = None,
               color_weight: float = 0.0) -> tuple[Array, Array, dict[str, float]]:
    """The weighted total (docs/algorithm.md §4). X (N, D) -> (0-d value, dX (N, D), terms).

    ``paper``:   (a l_c + l_m + l_r + l_p / a + w l_col) / (2 + a + 1/a);
    ``strotss``: (a l_c + l_r + l_m + l_p / max(a, 1) + w l_col) / (a + 2);
    with w = ``color_weight`` (0: the preset's own formula); ``palette_weight`` (>= 0), when
    given, replaces l_p's factor 1/a or 1/max(a, 1).
    terms = {"content", "remd", "moment", "palette", "color"} as Python floats (unweighted).
    """
    check_preset(preset)
    a = float(content_weight)
    if not a > 0:
        raise ValueError(f"content_weight must be > 0, got {content_weight!r}")
    for name, w in (("palette_weight", palette_weight), ("color_weight", color_weight)):
        if w is not None and not w >= 0:
            raise ValueError(f"{name} must be >= 0, got {w!r}")
    xp = array_namespace(X)
    wc, wr, wm, wp, wl = _weights(preset, a, palette_weight, float(color_weight))
    # the content and REMD terms share X's unit rows and their backward pass
    unit, norm, mask = _normalise_rows(X, xp=xp)
    l_c, g_c = _content_unit_grad(X, unit, content, preset, xp=xp)
    l_r, g_r = _remd_unit_grad(unit, style, xp=xp)
    l_m, g_m = _moment(X, style.mean, style.cov, xp=xp)
    l_p, g_p = _palette(X, style, preset, xp=xp)
    l_l, g_l = _color(X, style, xp=xp)
    # combined in float64 and rounded once (in float32, nine roundings)
    value = xp.astype(sum(w * xp.astype(t, xp.float64) for w, t in
                          ((wc, l_c), (wr, l_r), (wm, l_m), (wp, l_p), (wl, l_l))), X.dtype)
    dX = _unit_backward(wc * g_c + wr * g_r, unit, norm, mask, xp=xp) + wm * g_m
    dX[:, :3] += wp * g_p + wl * g_l
    terms = {"content": float(l_c), "remd": float(l_r), "moment": float(l_m),
             "palette": float(l_p), "color": float(l_l)}
    return value, dX, terms
