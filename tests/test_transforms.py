"""Model-input transforms: the study's eval and train pipelines, Preprocess round-trips, the batched path."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from PIL import Image

from _imaging_samples import phantom
from as_ai.errors import InvalidImageError, ModelLoadError
from as_ai.imaging import load_radiograph
from as_ai.transforms import IMAGENET_MEAN, IMAGENET_STD, Preprocess, eval_transform, to_model_input, train_transform

pytestmark = pytest.mark.timeout(60)


def _tensor(px: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(px, dtype=np.float32))[None]


def _unnormalise(x: torch.Tensor, p: Preprocess) -> torch.Tensor:
    mean = torch.tensor(p.mean).view(3, 1, 1)
    std = torch.tensor(p.std).view(3, 1, 1)
    return x * std + mean


# ------------------------------------------------------------------------------------------- Preprocess
def test_defaults_are_the_reference_study():
    p = Preprocess()
    assert (p.resize_short, p.crop, p.train_resize_short, p.train_crop) == (256, 224, 512, 224)
    assert p.mean == IMAGENET_MEAN == (0.485, 0.456, 0.406) and p.std == IMAGENET_STD == (0.229, 0.224, 0.225)
    assert p.hflip == 0.5 and p.vflip == 0.5 and p.rotation_degrees > 0


def test_preprocess_round_trips_through_json():
    p = Preprocess(resize_short=320, crop=288, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), rotation_degrees=5)
    d = json.loads(json.dumps(p.to_dict()))
    assert Preprocess.from_dict(d) == p
    assert d["mean"] == [0.5, 0.5, 0.5]
    assert Preprocess.from_dict({}) == Preprocess()  # missing keys: the study's defaults


@pytest.mark.parametrize("d, fragment", [
    ({"resize_short": 256, "crop_size": 224}, "unknown keys ['crop_size']"),
    ({"crop": 300}, "must not exceed resize_short"),
    ({"std": [0.2, 0.0, 0.2]}, "std must be > 0"),
    ({"mean": [0.5, 0.5]}, "three finite numbers"),
    ({"hflip": 1.5}, "probability"),
    ({"blur_sigma": -1}, "blur_sigma must be in [0, 5]"),
    ({"resize_short": "256"}, "positive int"),
    ([256, 224], "must be an object"),
])
def test_from_dict_rejects_bad_configs_clearly(d, fragment):
    with pytest.raises(ModelLoadError) as err:
        Preprocess.from_dict(d)
    assert fragment in str(err.value)


def test_input_blur_softens_every_path_alike_and_is_off_by_default():
    from scipy import ndimage

    from as_ai.transforms import soften_input, to_model_input, train_transform

    assert Preprocess().blur_sigma == 0 and Preprocess.from_dict({}).blur_sigma == 0  # older repos: no blur
    img = np.zeros((256, 256), np.float32)
    img[:, 128:] = 1.0                                   # one sharp vertical edge
    sharp, soft = Preprocess(resize_short=224, crop=224), Preprocess(resize_short=224, crop=224, blur_sigma=1.5)
    a, b = to_model_input([img], sharp)[0], to_model_input([img], soft)[0]
    steepest = lambda x: float(np.abs(np.diff(_unnormalise(x, sharp)[0, 100].numpy())).max())  # noqa: E731
    assert steepest(b) < 0.5 * steepest(a)              # the edge is spread
    torch.testing.assert_close(eval_transform(soft)(_tensor(img)), b, atol=1e-5, rtol=0)  # one rule, two paths
    grey = _unnormalise(b, soft)[0].numpy()             # an independent blur of the sharp crop agrees inside
    ref = ndimage.gaussian_filter(_unnormalise(a, sharp)[0].numpy(), 1.5, mode="reflect", truncate=3.0)
    np.testing.assert_allclose(grey[20:-20, 20:-20], ref[20:-20, 20:-20], atol=2e-3)
    x = torch.rand(2, 1, 8, 8)
    assert soften_input(x, 0.0) is x
    torch.manual_seed(0)
    t = train_transform(Preprocess(resize_short=224, crop=224, train_resize_short=224, train_crop=224,
                                   rotation_degrees=0, hflip=0, vflip=0, blur_sigma=1.5))(_tensor(img))
    assert float(np.abs(np.diff(_unnormalise(t, soft)[0, 100].numpy())).max()) < 0.5 * steepest(a)


# ------------------------------------------------------------------------------------------ eval
def test_eval_transform_is_short_edge_resize_centre_crop_normalise():
    p = Preprocess()
    x = _tensor(load_radiograph(phantom(300, 400)).pixels)
    out = eval_transform(p)(x)
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    # Independent reference: bilinear antialiased resize of the short edge to 256 (300×400 -> 256×341),
    # centre crop 224 (top (256-224)/2 = 16, left round((341-224)/2) = 58), replicate, normalise.
    resized = TF.interpolate(x[None], size=(256, 341), mode="bilinear", antialias=True, align_corners=False)[0]
    crop = resized[:, 16:240, 58:282]
    expected = (crop.expand(3, -1, -1) - torch.tensor(p.mean).view(3, 1, 1)) / torch.tensor(p.std).view(3, 1, 1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    grey = _unnormalise(out, p)
    torch.testing.assert_close(grey[0], grey[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(grey[0], grey[2], atol=1e-5, rtol=0)


def test_eval_transform_matches_the_classic_pil_pipeline_of_the_study():
    """The study used torchvision's PIL transforms (Resize(256), CenterCrop(224)); ours run on tensors."""
    from torchvision import transforms as T

    arr = phantom(300, 400)
    classic = T.Compose([T.Resize(256), T.CenterCrop(224), T.Grayscale(3), T.ToTensor(),
                         T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(Image.fromarray(arr))
    ours = eval_transform(Preprocess())(_tensor(load_radiograph(arr).pixels))
    diff = (_unnormalise(ours, Preprocess()) - _unnormalise(classic, Preprocess())).abs()
    assert diff.mean() < 0.005 and diff.max() < 0.05  # PIL rounds to uint8 and filters a little differently


def test_eval_transform_keeps_the_centre_at_the_centre():
    img = np.zeros((400, 300), np.float32)
    img[195:205, 145:155] = 1.0  # a bright square at the centre of a portrait image
    grey = _unnormalise(eval_transform(Preprocess())(_tensor(img)), Preprocess())[0]
    ys, xs = np.nonzero(grey.numpy() > 0.5)
    assert abs(ys.mean() - 111.5) < 1.5 and abs(xs.mean() - 111.5) < 1.5


# ------------------------------------------------------------------------------------------ batched
def test_to_model_input_equals_eval_transform_per_image():
    p = Preprocess()
    images = [
        load_radiograph(phantom(300, 400, seed=1)),   # landscape
        phantom(520, 380, seed=2),                    # portrait, as an ndarray
        load_radiograph(phantom(256, 256, seed=3)),   # exactly the resize size
        load_radiograph(phantom(100, 180, seed=4)),   # upsampled
        load_radiograph(phantom(300, 400, seed=5)),   # same size as the first, batched with it
        np.random.default_rng(6).random((300, 400)).astype(np.float32),
    ]
    batch = to_model_input(images, p)
    assert batch.shape == (6, 3, 224, 224) and batch.dtype == torch.float32 and batch.is_contiguous()
    transform = eval_transform(p)
    for i, im in enumerate(images):
        px = im.pixels if hasattr(im, "pixels") else load_radiograph(im).pixels
        torch.testing.assert_close(batch[i], transform(_tensor(px)), atol=1e-5, rtol=0, msg=f"image {i}")


def test_to_model_input_honours_the_model_preprocess():
    p = Preprocess(resize_short=128, crop=96, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    batch = to_model_input([np.full((200, 300), 255, np.uint8), np.zeros((64, 64), np.uint8)], p)
    assert batch.shape == (2, 3, 96, 96)
    torch.testing.assert_close(batch[0], torch.ones(3, 96, 96))   # (1 - 0.5) / 0.5
    torch.testing.assert_close(batch[1], -torch.ones(3, 96, 96))  # (0 - 0.5) / 0.5


def test_to_model_input_validates_and_handles_empty_batches():
    assert to_model_input([], Preprocess()).shape == (0, 3, 224, 224)
    with pytest.raises(TypeError, match="sequence"):
        to_model_input(np.zeros((64, 64), np.uint8), Preprocess())
    with pytest.raises(InvalidImageError) as err:
        to_model_input([np.full((64, 64), np.nan)], Preprocess())
    assert err.value.reason == "bad_array"


# ------------------------------------------------------------------------------------------ train
def test_train_transform_shape_and_seeded_randomness():
    p = Preprocess()
    x = _tensor(load_radiograph(phantom(600, 700)).pixels)
    t = train_transform(p)
    torch.manual_seed(0)
    a = t(x)
    torch.manual_seed(0)
    b = t(x)
    assert a.shape == (3, 224, 224)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    outs = []
    for seed in range(1, 6):
        torch.manual_seed(seed)
        outs.append(t(x))
    assert all(not torch.equal(outs[0], o) for o in outs[1:])


def test_train_transform_scale_is_the_train_resize():
    """Short edge 512 then a 224 crop: a crop covers ~224/512 of the short edge (the study's scale gap)."""
    img = np.zeros((600, 600), np.float32)
    img[::40, :] = 1.0  # horizontal lines every 40 px -> every 40*512/600 ≈ 34 px after resizing
    p = Preprocess(rotation_degrees=0, hflip=0, vflip=0)
    torch.manual_seed(0)
    grey = _unnormalise(train_transform(p)(_tensor(img)), p)[0].mean(dim=1).numpy()
    peaks = np.nonzero((grey[1:-1] > grey[:-2]) & (grey[1:-1] >= grey[2:]) & (grey[1:-1] > 0.1))[0]
    assert abs(np.diff(peaks).mean() - 40 * 512 / 600) < 1.0


@pytest.mark.parametrize("hflip, vflip, flip_dims", [(1.0, 0.0, [-1]), (0.0, 1.0, [-2]), (1.0, 1.0, [-2, -1])])
def test_train_transform_flips_are_real(hflip, vflip, flip_dims):
    """With no rotation and crop = resize on a square image, the only randomness left is the flips."""
    p = Preprocess(resize_short=224, crop=224, train_resize_short=224, train_crop=224, rotation_degrees=0,
                   hflip=hflip, vflip=vflip)
    x = _tensor(load_radiograph(phantom(300, 300)).pixels)
    torch.manual_seed(0)
    out = train_transform(p)(x)
    torch.testing.assert_close(out, eval_transform(p)(x).flip(flip_dims), atol=1e-5, rtol=0)


def test_train_transform_rotates():
    p = Preprocess(resize_short=224, crop=224, train_resize_short=224, train_crop=224, rotation_degrees=30,
                   hflip=0, vflip=0)
    x = _tensor(np.ones((300, 300), np.float32))
    torch.manual_seed(3)
    grey = _unnormalise(train_transform(p)(x), p)[0]
    # A rotated all-white square leaves black (fill 0 = air) corners; the centre stays white.
    assert grey[112, 112] > 0.99
    assert min(grey[0, 0], grey[0, -1], grey[-1, 0], grey[-1, -1]) < 0.5


# ------------------------------------------------------------------------------------------ intensity
def _crop_like() -> torch.Tensor:
    """A grey crop with dark soft tissue, bright bone and a black corner, as a radiograph's centre has."""
    px = load_radiograph(phantom(224, 224, seed=9)).pixels.astype(np.float32) * 0.8 + 0.1
    px[:30, :30] = 0.0
    return torch.from_numpy(px)[None]


def test_intensity_standardisation_is_off_unless_the_model_says_so():
    assert Preprocess().intensity == "none" and Preprocess.from_dict({}).intensity == "none"  # older repos
    from as_ai.transforms import standardise_intensity

    x = _crop_like()
    assert standardise_intensity(x, Preprocess()) is x


def test_window_gamma_undoes_gain_offset_and_gamma():
    from as_ai.transforms import standardise_intensity

    p = Preprocess(intensity="window_gamma", intensity_window=(10.0, 90.0), intensity_reference=(0.5, 0.9, 0.6))
    x = _crop_like()
    ref = standardise_intensity(x, p)
    torch.testing.assert_close(standardise_intensity(0.25 * x + 0.05, p), ref, atol=1e-4, rtol=0)   # gain, offset
    for g in (0.7, 1.4):
        assert float((standardise_intensity(x ** g, p) - ref).abs().mean()) < 0.02                   # a gamma
    lo, hi, med = torch.quantile(ref.flatten(), torch.tensor([0.1, 0.9, 0.5]))
    assert abs(float(lo) - 0.5) < 0.01 and abs(float(hi) - 0.9) < 0.01                               # the window
    assert abs(float((med - lo) / (hi - lo)) - 0.6) < 0.02                                           # the median
    batch = torch.stack([x, x ** 1.4])                                                                # per image
    torch.testing.assert_close(standardise_intensity(batch, p)[0], ref)


def test_the_reference_of_training_crops_leaves_them_almost_as_they_were():
    from as_ai.transforms import intensity_reference, standardise_intensity

    crops = torch.stack([torch.from_numpy(np.array(load_radiograph(phantom(224, 224, seed=s)).pixels)) for s in range(6)])
    ref = intensity_reference(crops, (10.0, 90.0))
    p = Preprocess(intensity="window_gamma", intensity_window=(10.0, 90.0), intensity_reference=ref)
    assert float((standardise_intensity(crops, p) - crops).abs().mean()) < 0.03


@pytest.mark.parametrize("d, fragment", [
    ({"intensity": "histogram"}, "intensity must be one of"),
    ({"intensity_window": [90, 10]}, "0 <= low < high <= 100"),
    ({"intensity_window": [1]}, "intensity_window must be 2 finite numbers"),
    ({"intensity_reference": [0.2, 0.9, 1.5]}, "0 < median < 1"),
])
def test_bad_intensity_settings_are_refused_clearly(d, fragment):
    with pytest.raises(ModelLoadError) as err:
        Preprocess.from_dict(d)
    assert fragment in str(err.value)
