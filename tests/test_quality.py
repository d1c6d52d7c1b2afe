"""The quality measures: LPIPS AlexNet in ONNX, LPIPS, sliced Wasserstein, CIELAB.

The torch reference below is written from the LPIPS reference code (torchvision AlexNet
``features``, ``ScalingLayer``, ``normalize_tensor``, ``NetLinLayer``) and from the
documented conventions of ``ostransfer.research.quality`` (directions, quantile levels,
subsets).
"""

from __future__ import annotations

import numpy as np
import pytest

from ostransfer.files import sample_image
from ostransfer.imaging.io import load_pil, resize, scaled_size, to_array
from ostransfer.nets import alexnet
from ostransfer.nets.provision import ensure_alexnet, fetch_weights
from ostransfer.nets.weights import ALEXNET_MEMBER, WeightsError, load_alexnet_weights
from ostransfer.research import quality


@pytest.fixture(scope="module")
def ckpt():
    return fetch_weights(member=ALEXNET_MEMBER)


@pytest.fixture(scope="module")
def weights(ckpt):
    return load_alexnet_weights(ckpt)


@pytest.fixture(scope="module")
def net(weights):
    return alexnet.AlexNetFeatures(alexnet.build_alexnet_model(*weights), threads=2)


def _image(name: str, long_side: int = 128, size: tuple[int, int] | None = None) -> np.ndarray:
    pil = load_pil(sample_image(f"{name}.jpg"))
    return to_array(resize(pil, size or scaled_size(pil.size, long_side)))


@pytest.fixture(scope="module")
def images():
    content = _image("content_coffee")  # 85 x 128
    size = (content.shape[1], content.shape[0])
    small = to_array(resize(resize(load_pil(content), (43, 64)), size))  # a blurred content
    return {
        "content": content,
        "content_blurred": small,
        "style": _image("style_starry_night"),  # 80 x 128
        "style_96": _image("style_starry_night", 96),
        "style_as_content": _image("style_starry_night", size=size),
    }


# ---- torch reference ------------------------------------------------------------------------

class TorchLPIPSAlexNet:
    def __init__(self, torch, convs, lins, dtype):
        nn = torch.nn
        self.torch, self.dtype = torch, dtype
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(),
        ).to(dtype)
        conv_layers = [m for m in self.features if isinstance(m, nn.Conv2d)]
        with torch.no_grad():
            for layer, (kernel, bias) in zip(conv_layers, convs, strict=True):
                layer.weight.copy_(torch.from_numpy(kernel))
                layer.bias.copy_(torch.from_numpy(bias))
        self.taps = [1, 4, 7, 9, 11]  # the ReLUs after each conv
        self.lins = [torch.from_numpy(w).to(dtype).reshape(1, -1, 1, 1) for w in lins]
        self.shift = torch.tensor([-.030, -.088, -.188], dtype=dtype)[None, :, None, None]
        self.scale = torch.tensor([.458, .448, .450], dtype=dtype)[None, :, None, None]

    def maps(self, image_hwc):
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(image_hwc)).to(self.dtype).permute(2, 0, 1)[None]
        x = (2 * x - 1 - self.shift) / self.scale
        out = []
        with torch.no_grad():
            for i, module in enumerate(self.features):
                x = module(x)
                if i in self.taps:
                    out.append(x)
        return out

    def lpips(self, maps0, maps1):
        torch = self.torch

        def normalize_tensor(x, eps=1e-10):
            return x / (torch.sqrt(torch.sum(x ** 2, dim=1, keepdim=True)) + eps)

        total = 0
        for f0, f1, lin in zip(maps0, maps1, self.lins, strict=True):
            d = (normalize_tensor(f0) - normalize_tensor(f1)) ** 2
            total = total + torch.nn.functional.conv2d(d, lin).mean(dim=[2, 3], keepdim=True)
        return float(total.squeeze())


def torch_swd(torch, a, b, directions=256, seed=0):
    """Sliced W1 with torch.quantile (which reads sample j at level j / (n - 1))."""
    units = np.random.default_rng(seed).standard_normal((a.shape[1], directions))
    units = torch.from_numpy(units / np.sqrt((units ** 2).sum(axis=0)))
    a, b = (torch.as_tensor(x, dtype=torch.float64) for x in (a, b))
    count = max(len(a), len(b))
    levels = (torch.arange(count, dtype=torch.float64) + 0.5) / count

    def quantiles(p):
        n = len(p)
        q = ((levels * n - 0.5) / (n - 1)).clamp(0, 1)
        return torch.quantile(p, q, dim=0, interpolation="linear")

    return float((quantiles(a @ units) - quantiles(b @ units)).abs().mean())


def torch_subset(x, cap=8192, seed=0):
    if len(x) <= cap:
        return x
    rows = np.random.default_rng(seed).choice(len(x), size=cap, replace=False)
    return x[np.sort(rows)]


def torch_lab(torch, image):
    rgb = torch.as_tensor(np.asarray(image), dtype=torch.float64)
    lin = torch.where(rgb > 0.04045, ((rgb.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = torch.tensor([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                      [0.0193339, 0.1191920, 0.9503041]], dtype=torch.float64)
    xyz = torch.einsum("ij,hwj->hwi", m, lin) / m.sum(dim=1)
    f = torch.where(xyz > (6 / 29) ** 3, xyz.pow(1 / 3), xyz * (29 / 6) ** 2 / 3 + 4 / 29)
    return torch.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                        200 * (f[..., 1] - f[..., 2])], dim=-1)


@pytest.fixture(scope="module")
def torch_nets(weights):
    torch = pytest.importorskip("torch")
    convs, lins = weights
    return torch, {dt: TorchLPIPSAlexNet(torch, convs, lins, dt)
                   for dt in (torch.float32, torch.float64)}


def _cloud(m):
    return m.reshape(m.shape[0], -1).T


# ---- tests ----------------------------------------------------------------------------------

def test_weights_are_checked(ckpt, tmp_path, weights):
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 1
    (tmp_path / "alexnet.ckpt").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        load_alexnet_weights(tmp_path / "alexnet.ckpt")
    convs, lins = weights
    assert [k.shape for k, _ in convs] == [(64, 3, 11, 11), (192, 64, 5, 5), (384, 192, 3, 3),
                                           (256, 384, 3, 3), (256, 256, 3, 3)]
    assert [w.shape for w in lins] == [(64,), (192,), (384,), (256,), (256,)]
    assert all(w.min() >= 0 and w.max() > 0 for w in lins)


def test_model_bytes_are_deterministic(weights, net, images):
    model = alexnet.build_alexnet_model(*weights)
    assert model == alexnet.build_alexnet_model(*weights)
    from_file = alexnet.AlexNetFeatures(ensure_alexnet())  # the provisioned file: these bytes
    assert ensure_alexnet().read_bytes() == model
    for a, b in zip(from_file.forward(images["style"]), net.forward(images["style"]), strict=True):
        np.testing.assert_array_equal(a, b)
    for stored, lin in zip(from_file.lins, weights[1], strict=True):  # LPIPS weights in the file
        np.testing.assert_array_equal(stored, lin)
    with pytest.raises(ValueError, match="smaller"):
        net.forward(np.zeros((30, 64, 3), np.float32))


def test_onnx_maps_match_torch(net, torch_nets, images):
    torch, nets = torch_nets
    for name in ("content", "style"):
        ours = net.forward(images[name])
        ref = nets[torch.float64].maps(images[name].astype(np.float64))
        assert [m.shape for m in ours] == [tuple(r.shape[1:]) for r in ref]
        if name == "content":  # 85 x 128
            assert [m.shape for m in ours] == [(64, 20, 31), (192, 9, 15), (384, 4, 7),
                                               (256, 4, 7), (256, 4, 7)]
        for m, r in zip(ours, ref, strict=True):
            r = r[0].numpy()
            assert np.abs(m - r).max() <= 2e-6 * np.abs(r).max(), np.abs(m - r).max()


def test_identical_images_score_zero(net, weights, images):
    image = images["content"]
    maps = net.forward(image)
    assert quality.lpips(maps, maps, weights[1]) == 0
    assert quality.style_distance(maps, maps) == 0
    assert quality.colour_distance(image, image) == 0


def test_measures_rank_real_images(net, weights, images):
    maps = {name: net.forward(img) for name, img in images.items()}
    lins = weights[1]
    blurred = quality.lpips(maps["content_blurred"], maps["content"], lins)
    other = quality.lpips(maps["style_as_content"], maps["content"], lins)
    assert 0.05 < blurred < other < 1.0, (blurred, other)
    near = quality.style_distance(maps["style_96"], maps["style"])
    far = quality.style_distance(maps["content"], maps["style"])
    assert 0 < near < 0.6 * far, (near, far)  # 0.70 against 1.60: AlexNet sees scale
    near = quality.colour_distance(images["style_96"], images["style"])
    far = quality.colour_distance(images["content"], images["style"])
    assert 0 < near < 0.1 * far, (near, far)
    assert 10 < far < 60


def test_measures_match_torch(net, torch_nets, weights, images):
    torch, nets = torch_nets
    lins = weights[1]
    content, style = images["content"], images["style"]
    # The same maps: the NumPy measures against torch's, in float64.
    mc, ms, mx = (net.forward(images[k]) for k in ("content", "style", "style_as_content"))
    ref = nets[torch.float64]
    as_t = [[torch.from_numpy(m.astype(np.float64))[None] for m in maps] for maps in (mc, mx)]
    assert quality.lpips(mc, mx, lins) == pytest.approx(ref.lpips(*as_t), rel=1e-10)
    layers = [torch_swd(torch, _cloud(a), _cloud(b)) for a, b in zip(mc, ms, strict=True)]
    assert len(_cloud(mc[0])) != len(_cloud(ms[0]))  # the interpolated quantiles are used
    assert quality.style_distance(mc, ms) == pytest.approx(np.mean(layers), rel=1e-10)
    clouds = [torch_subset(torch_lab(torch, x).reshape(-1, 3).numpy()) for x in (content, style)]
    assert quality.colour_distance(content, style) == pytest.approx(
        torch_swd(torch, *clouds), rel=1e-10)
    # The whole pipeline: a float32 torch AlexNet against ONNX Runtime.
    t32 = nets[torch.float32]
    tc, tx = t32.maps(content), t32.maps(images["style_as_content"])
    assert quality.lpips(mc, mx, lins) == pytest.approx(t32.lpips(tc, tx), rel=1e-5)
    ts = t32.maps(style)
    layers = [torch_swd(torch, _cloud(a[0].double()), _cloud(b[0].double()))
              for a, b in zip(tc, ts, strict=True)]
    assert quality.style_distance(mc, ms) == pytest.approx(np.mean(layers), rel=1e-5)


def test_sliced_wasserstein_of_a_shift():
    a = ((np.arange(100) + 0.5) / 100)[:, None]
    b = ((np.arange(37) + 0.5) / 37)[:, None] + 5
    # in one dimension every direction is +-1: W1 of a shift is the shift (ends held: +2e-4)
    assert quality.sliced_wasserstein(a, b, directions=8) == pytest.approx(5, abs=1e-3)
    assert quality.sliced_wasserstein(b, a, directions=8) == quality.sliced_wasserstein(a, b, 8)
    # in 3-D, E|v . u| over unit u is |v| / 2
    cloud = np.random.default_rng(1).standard_normal((2000, 3))
    shifted = cloud[:1500] + np.array([3.0, 0.0, 4.0])
    assert quality.sliced_wasserstein(cloud, shifted) == pytest.approx(2.5, rel=0.06)


def test_subsampled_clouds(images):
    content, style = images["content"], images["style"]
    assert content.shape[0] * content.shape[1] > quality.CLOUD_CAP
    capped = quality.colour_distance(content, style)
    assert capped == quality.colour_distance(content, style)
    full = quality.colour_distance(content, style, cap=10 ** 6)
    assert capped != full and capped == pytest.approx(full, rel=0.02)


def test_lab_known_values():
    rgb = np.array([[[1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0], [0.5, 0.5, 0.5]]])
    expected = [(100, 0, 0), (53.2408, 80.0925, 67.2032), (87.7347, -86.1827, 83.1793),
                (32.2970, 79.1875, -107.8602), (0, 0, 0), (53.3890, 0, 0)]
    np.testing.assert_allclose(quality.rgb_to_lab(rgb)[0], expected, atol=2e-3)
    assert quality.mean_chroma(np.full((4, 4, 3), 0.3)) == pytest.approx(0, abs=1e-9)
    red = np.zeros((2, 3, 3))
    red[..., 0] = 1
    assert quality.mean_chroma(red) == pytest.approx(np.hypot(80.0925, 67.2032), abs=2e-3)
