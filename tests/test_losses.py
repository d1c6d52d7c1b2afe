"""Tests of ostransfer.losses: finite differences, sanity values, array_api_strict, torch."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from ostransfer.method import losses as L

PRESETS = ("paper", "strotss")
N, M, D = 7, 9, 12
H = 1e-6  # central-difference step (float64)
MARGIN = 1e-4  # minimum distance from every kink in the chosen test inputs


# ---------------------------------------------------------------------------------------
# test inputs, chosen away from kinks


def _costs(X, S, preset):
    """Dense reference cost matrices (cosine REMD, palette) in NumPy, for margin checks."""
    def dcos(A, B):
        an = A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), L.EPS)
        bn = B / np.maximum(np.linalg.norm(B, axis=1, keepdims=True), L.EPS)
        return 1.0 - an @ bn.T

    x, s = X[:, :3], S[:, :3]
    e = np.linalg.norm(x[:, None, :] - s[None, :, :], axis=2)
    kp = e if preset == "paper" else dcos(x, s) + e / np.sqrt(3.0)
    return dcos(X, S), kp


def _remd_margin(K):
    """(which branch is larger, distance from every kink of the REMD of cost K)."""
    r_rows, r_cols = K.min(1).mean(), K.min(0).mean()
    axis = 1 if r_rows >= r_cols else 0
    srt = np.sort(K, axis=axis)
    gap = (srt[:, 1] - srt[:, 0]) if axis == 1 else (srt[1, :] - srt[0, :])
    return ("rows" if axis == 1 else "cols"), min(gap.min(), abs(r_rows - r_cols))


def _selfsim(X):
    u = X / np.linalg.norm(X, axis=1, keepdims=True)
    Dm = 1.0 - u @ u.T
    return Dm / Dm.sum(0, keepdims=True)


def _sample(rng, mode):
    """X, C, S with the REMD and palette row branch (mode 'rows') or column branch
    ('cols') the larger one: the set that is spread out has the larger branch."""
    def feats(k, spread, centre):
        Z = centre + spread * rng.normal(size=(k, D))
        Z[:, :3] = np.clip(0.5 + spread * 0.35 * rng.uniform(-1, 1, size=(k, 3)), 0, 1)
        return Z

    centre = rng.normal(size=D)
    if mode == "rows":  # style clustered, output spread
        S, X = feats(M, 0.6, centre), feats(N, 1.4, centre)
    else:  # output clustered, style spread
        X, S = feats(N, 0.6, centre), feats(M, 1.4, centre)
    C = feats(N, 1.0, rng.normal(size=D))
    return X, C, S


@functools.lru_cache(maxsize=None)
def case(mode):
    """The first seed whose inputs are away from every kink and give the wanted branches."""
    for seed in range(500):
        X, C, S = _sample(np.random.default_rng(seed), mode)
        ok = True
        for preset in PRESETS:
            for K in _costs(X, S, preset):
                branch, margin = _remd_margin(K)
                ok &= branch == mode and margin > MARGIN
        Sc, Xc = S - S.mean(0), X - X.mean(0)
        ok &= np.abs(Xc.T @ Xc / N - Sc.T @ Sc / M).min() > MARGIN
        ok &= np.abs(X.mean(0) - S.mean(0)).min() > MARGIN
        dA = np.abs(_selfsim(X) - _selfsim(C))
        ok &= (dA + np.eye(N)).min() > MARGIN  # the diagonal is ~0 on both sides
        if ok:
            return X, C, S
    raise RuntimeError(f"no kink-free case for {mode}")


# ---------------------------------------------------------------------------------------
# finite differences


def _terms(preset, a=1.7, w=0.8):
    """name -> f(X, C, S) returning (value, grad (N, D)) in NumPy float64; the total with
    colour weight w."""
    def remd(X, C, S):
        return L.remd_style_loss(X, L.style_target(S))

    def moment(X, C, S):
        return L.moment_loss(X, L.style_target(S))

    def palette(X, C, S):
        v, g = L.palette_loss(X, L.style_target(S), preset)
        assert g.shape == (X.shape[0], 3)
        return v, np.concatenate([g, np.zeros((X.shape[0], X.shape[1] - 3))], axis=1)

    def color(X, C, S):
        v, g = L.color_loss(X, L.style_target(S))
        assert g.shape == (X.shape[0], 3)
        return v, np.concatenate([g, np.zeros((X.shape[0], X.shape[1] - 3))], axis=1)

    def content(X, C, S):
        return L.content_loss(X, L.content_target(C), preset)

    def total(X, C, S):
        v, g, _ = L.total_loss(X, L.content_target(C), L.style_target(S), preset, a,
                               color_weight=w)
        return v, g

    return {"remd": remd, "moment": moment, "palette": palette, "color": color,
            "content": content, "total": total}


def _fd_check(f, X, C, S, full):
    v0, g = f(X, C, S)
    assert np.isfinite(float(v0)) and g.shape == X.shape and g.dtype == X.dtype
    rng = np.random.default_rng(123)
    for _ in range(3):  # random directional derivatives
        V = rng.normal(size=X.shape)
        fd = (float(f(X + H * V, C, S)[0]) - float(f(X - H * V, C, S)[0])) / (2 * H)
        an = float(np.sum(g * V))
        assert abs(fd - an) <= 1e-5 * max(abs(an), 1e-300), (fd, an)
    if full:  # every entry
        fd = np.zeros_like(X)
        for idx in np.ndindex(*X.shape):
            E = np.zeros_like(X)
            E[idx] = H
            fd[idx] = (float(f(X + E, C, S)[0]) - float(f(X - E, C, S)[0])) / (2 * H)
        err = np.linalg.norm(fd - g) / np.linalg.norm(g)
        assert err < 1e-5, err


@pytest.mark.parametrize("mode", ["rows", "cols"])
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("term", ["remd", "moment", "palette", "color", "content", "total"])
def test_gradient_matches_finite_differences(term, preset, mode):
    if term in ("moment", "color") and preset == "strotss":
        pytest.skip("the moment and colour losses do not depend on the preset")
    X, C, S = case(mode)
    _fd_check(_terms(preset)[term], X, C, S, full=True)


@pytest.mark.parametrize("mode", ["rows", "cols"])
def test_remd_branches(mode):
    """The test inputs do exercise both REMD branches, for the style and both palettes."""
    X, C, S = case(mode)
    for preset in PRESETS:
        for K in _costs(X, S, preset):
            assert _remd_margin(K)[0] == mode
    st = L.style_target(S)
    K, _ = _costs(X, S, "paper")
    want = K.min(1).mean() if mode == "rows" else K.min(0).mean()
    assert float(L.remd_style_loss(X, st)[0]) == pytest.approx(want, rel=1e-12)
    for preset in PRESETS:
        _, Kp = _costs(X, S, preset)
        want = Kp.min(1).mean() if mode == "rows" else Kp.min(0).mean()
        assert float(L.palette_loss(X, st, preset)[0]) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("a", [0.3, 4.0])
@pytest.mark.parametrize("w", [0.0, 1.5])
def test_total_weighting(preset, a, w):
    X, C, S = case("rows")
    st, ct = L.style_target(S), L.content_target(C)
    v, g, t = L.total_loss(X, ct, st, preset, a, color_weight=w)
    assert set(t) == {"content", "remd", "moment", "palette", "color"}
    assert all(type(x) is float for x in t.values())
    assert t["color"] > 0
    if preset == "paper":
        want = (a * t["content"] + t["moment"] + t["remd"] + t["palette"] / a
                + w * t["color"]) / (2 + a + 1 / a)
    else:
        want = (a * t["content"] + t["remd"] + t["moment"] + t["palette"] / max(a, 1)
                + w * t["color"]) / (a + 2)
    assert float(v) == pytest.approx(want, rel=1e-12)
    _fd_check(_terms(preset, a, w)["total"], X, C, S, full=False)


def test_color_loss_is_the_moment_loss_of_the_rgb_columns():
    """l_col compares the colours' mean and covariance only: 0 for any output whose three
    colour columns have the style's statistics, whatever its other columns."""
    X, C, S = case("cols")
    v, g = L.color_loss(X, L.style_target(S))
    want, _ = L.moment_loss(X[:, :3], L.style_target(S[:, :3]))
    assert float(v) == pytest.approx(float(want), rel=1e-12)
    Y = X.copy()
    Y[:, :3] = S[:N, :3]  # N rows of the style's colours, M = N rows of a style
    assert float(L.color_loss(Y, L.style_target(S[:N]))[0]) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="color_weight"):
        L.total_loss(X, L.content_target(C), L.style_target(S), "strotss", 2.0,
                     color_weight=-1.0)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("w", [0.0, 1.0, 2.5])
def test_palette_weight_replaces_the_presets_factor(preset, w):
    X, C, S = case("cols")
    st, ct, a = L.style_target(S), L.content_target(C), 4.0
    v, g, t = L.total_loss(X, ct, st, preset, a, palette_weight=w)
    den = 2 + a + 1 / a if preset == "paper" else a + 2
    want = (a * t["content"] + t["moment"] + t["remd"] + w * t["palette"]) / den
    assert float(v) == pytest.approx(want, rel=1e-12)

    def total(X, C, S):
        return L.total_loss(X, L.content_target(C), L.style_target(S), preset, a, w)[:2]
    _fd_check(total, X, C, S, full=False)
    with pytest.raises(ValueError, match="palette_weight"):
        L.total_loss(X, ct, st, preset, a, palette_weight=-1.0)


# ---------------------------------------------------------------------------------------
# sanity


def test_moment_zero_for_equal_statistics():
    X, C, S = case("rows")
    st = L.style_target(S)
    v, g = L.moment_loss(S, st)
    assert float(v) == 0.0
    perm = np.random.default_rng(0).permutation(M)
    v, _ = L.moment_loss(S[perm], st)  # same statistics, summed in another order
    assert float(v) < 1e-14


@pytest.mark.parametrize("preset", PRESETS)
def test_content_zero_for_content(preset):
    X, C, S = case("rows")
    v, g = L.content_loss(C, L.content_target(C), preset)
    assert float(v) == 0.0
    assert np.all(np.isfinite(g))


@pytest.mark.parametrize("preset", PRESETS)
def test_remd_of_set_with_itself_is_zero(preset):
    X, C, S = case("rows")
    st = L.style_target(S)
    assert abs(float(L.remd_style_loss(S, st)[0])) < 1e-14
    v, g = L.palette_loss(S, st, preset)
    assert abs(float(v)) < 1e-14
    assert np.all(np.isfinite(g))  # zero Euclidean distance: gradient 0, not NaN
    if preset == "paper":
        assert np.all(g == 0.0)


def test_content_loss_scaling():
    X, C, S = case("rows")
    ct = L.content_target(C)
    vp, gp = L.content_loss(X, ct, "paper")
    vs, gs = L.content_loss(X, ct, "strotss")
    assert float(vs) == pytest.approx(N * float(vp), rel=1e-12)
    np.testing.assert_allclose(gs, N * gp, rtol=1e-12, atol=0)


def test_zero_rows_are_finite():
    """eps = 1e-8 keeps black pixels / zero hypercolumns finite."""
    X, C, S = case("rows")
    X, S = X.copy(), S.copy()
    X[0] = 0.0
    S[1, :3] = 0.0
    for preset in PRESETS:
        v, g, _ = L.total_loss(X, L.content_target(C), L.style_target(S), preset, 1.0)
        assert np.isfinite(float(v)) and np.all(np.isfinite(g))


def test_float32_stays_float32():
    X, C, S = case("cols")
    X32, C32, S32 = (np.asarray(A, dtype=np.float32) for A in (X, C, S))
    st, ct = L.style_target(S32), L.content_target(C32)
    assert st.cov.dtype == np.float32 and ct.A.dtype == np.float32
    for preset in PRESETS:
        v, g, t = L.total_loss(X32, ct, st, preset, 2.0)
        v64, g64, _ = L.total_loss(X, L.content_target(C), L.style_target(S), preset, 2.0)
        assert v.dtype == np.float32 and g.dtype == np.float32
        assert float(v) == pytest.approx(float(v64), rel=1e-5)
        np.testing.assert_allclose(g, g64, rtol=1e-3, atol=1e-5 * np.abs(g64).max())


def test_bad_preset():
    X, C, S = case("rows")
    with pytest.raises(ValueError):
        L.content_loss(X, L.content_target(C), "nope")
    with pytest.raises(ValueError):
        L.total_loss(X, L.content_target(C), L.style_target(S), "paper", 0.0)


# ---------------------------------------------------------------------------------------
# array_api_strict: nothing outside the standard


def _namespace(name):
    if name == "array_api_strict":
        return pytest.importorskip("array_api_strict")
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            pytest.skip("no CUDA device")
    except cupy.cuda.runtime.CUDARuntimeError:
        pytest.skip("no CUDA device")
    return cupy


def _host(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


@pytest.mark.parametrize("namespace", ["array_api_strict", "cupy"])
@pytest.mark.parametrize("mode", ["rows", "cols"])
@pytest.mark.parametrize("preset", PRESETS)
def test_other_namespaces_match_numpy(preset, mode, namespace):
    """array_api_strict proves the code uses only the standard; CuPy runs it on a GPU."""
    xps = _namespace(namespace)
    X, C, S = case(mode)
    st, ct = L.style_target(S), L.content_target(C)
    sts, cts = L.style_target(xps.asarray(S)), L.content_target(xps.asarray(C))
    Xs = xps.asarray(X)
    pairs = [
        (L.remd_style_loss(X, st), L.remd_style_loss(Xs, sts)),
        (L.moment_loss(X, st), L.moment_loss(Xs, sts)),
        (L.palette_loss(X, st, preset), L.palette_loss(Xs, sts, preset)),
        (L.color_loss(X, st), L.color_loss(Xs, sts)),
        (L.content_loss(X, ct, preset), L.content_loss(Xs, cts, preset)),
        (L.total_loss(X, ct, st, preset, 1.5, color_weight=0.7)[:2],
         L.total_loss(Xs, cts, sts, preset, 1.5, color_weight=0.7)[:2]),
    ]
    for (v, g), (vs, gs) in pairs:
        assert isinstance(gs, type(Xs)) and isinstance(vs, type(Xs)) and vs.shape == ()
        assert float(vs) == pytest.approx(float(v), rel=1e-12, abs=1e-15)
        np.testing.assert_allclose(_host(gs), g, rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------------------------------
# torch autograd of the same formulas


def _torch_terms(torch, X, C, S, preset, a, w=0.8):
    eps = L.EPS

    def dcos(A, B):
        an = A / torch.linalg.vector_norm(A, dim=1, keepdim=True).clamp_min(eps)
        bn = B / torch.linalg.vector_norm(B, dim=1, keepdim=True).clamp_min(eps)
        return 1.0 - an @ bn.T

    def remd(K):
        r_rows, r_cols = K.min(dim=1).values.mean(), K.min(dim=0).values.mean()
        return r_rows if r_rows >= r_cols else r_cols

    n, d = X.shape
    l_r = remd(dcos(X, S))
    mu_x, mu_s = X.mean(0), S.mean(0)
    cov_x = (X - mu_x).T @ (X - mu_x) / n
    cov_s = (S - mu_s).T @ (S - mu_s) / S.shape[0]
    l_m = (mu_x - mu_s).abs().sum() / d + (cov_x - cov_s).abs().sum() / d**2
    x, s = X[:, :3], S[:, :3]
    e = (x[:, None, :] - s[None, :, :]).pow(2).sum(-1).sqrt()
    l_p = remd(e if preset == "paper" else dcos(x, s) + e / np.sqrt(3.0))

    def selfsim(Z):
        Dm = dcos(Z, Z)
        return Dm / Dm.sum(0, keepdim=True)

    l_c = (selfsim(X) - selfsim(C)).abs().sum() / (n * n if preset == "paper" else n)
    cov3_x = (x - x.mean(0)).T @ (x - x.mean(0)) / n
    cov3_s = (s - s.mean(0)).T @ (s - s.mean(0)) / S.shape[0]
    l_col = (x.mean(0) - s.mean(0)).abs().sum() / 3 + (cov3_x - cov3_s).abs().sum() / 9
    if preset == "paper":
        total = (a * l_c + l_m + l_r + l_p / a + w * l_col) / (2 + a + 1 / a)
    else:
        total = (a * l_c + l_r + l_m + l_p / max(a, 1.0) + w * l_col) / (a + 2)
    return {"content": l_c, "remd": l_r, "moment": l_m, "palette": l_p, "color": l_col,
            "total": total}


@pytest.mark.parametrize("mode", ["rows", "cols"])
@pytest.mark.parametrize("preset", PRESETS)
def test_matches_torch_autograd(preset, mode):
    torch = pytest.importorskip("torch")
    a = 1.3
    X, C, S = case(mode)
    ours = _terms(preset, a)
    for name in ("content", "remd", "moment", "palette", "color", "total"):
        Xt = torch.tensor(X, dtype=torch.float64, requires_grad=True)
        ref = _torch_terms(torch, Xt, torch.tensor(C), torch.tensor(S), preset, a)[name]
        (gt,) = torch.autograd.grad(ref, Xt)
        v, g = ours[name](X, C, S)
        assert float(v) == pytest.approx(ref.item(), rel=1e-12), name
        np.testing.assert_allclose(g, gt.numpy(), rtol=1e-9, atol=1e-13, err_msg=name)
