"""Elastic deformation against the elasticdeform package, and the composed transforms."""
import numpy as np
import pytest
from scipy import ndimage

from unet_rt.train import augment


def smooth_image(rng, shape):
    return ndimage.gaussian_filter(rng.random(shape), 2.0)


@pytest.mark.parametrize("shape,points", [((64, 80), 3), ((57, 43), 3), ((90, 90), 5)])
def test_elastic_matches_elasticdeform(rng, shape, points):
    elasticdeform = pytest.importorskip("elasticdeform")
    img = smooth_image(rng, shape)
    disp = rng.normal(0, 10, (2, points, points))
    ref = elasticdeform.deform_grid(img, disp, order=3, mode="mirror")
    t = dict(displacement=disp, angle=0.0, shift=np.zeros(2), flip=(False, False), out_shape=shape)
    out = augment.warp(img, augment.coordinates(t, ((shape[0] - 1) / 2, (shape[1] - 1) / 2)), order=3)
    # Same control-point convention, same cubic B-spline field and resampling: agreement to
    # floating-point rounding (1e-9 of the image range), far below one grey level.
    assert np.abs(out - ref).max() <= 1e-9 * np.abs(ref).max()
    # labels: nearest neighbour
    lab = (img > np.median(img)).astype(np.uint8)
    ref_l = elasticdeform.deform_grid(lab, disp, order=0, mode="mirror")
    out_l = augment.warp(lab, augment.coordinates(t, ((shape[0] - 1) / 2, (shape[1] - 1) / 2)), order=0)
    assert np.mean(out_l != ref_l) < 1e-3


def test_zero_displacement_is_identity(rng):
    img = smooth_image(rng, (31, 40))
    t = dict(displacement=np.zeros((2, 3, 3)), angle=0.0, shift=np.zeros(2), flip=(False, False), out_shape=img.shape)
    out = augment.warp(img, augment.coordinates(t, (15.0, 19.5)), order=3)
    assert np.allclose(out, img, atol=1e-12)


def test_flip_and_rotation(rng):
    img = smooth_image(rng, (32, 32))
    c = (15.5, 15.5)
    base = dict(displacement=np.zeros((2, 3, 3)), angle=0.0, shift=np.zeros(2), out_shape=img.shape)
    out = augment.warp(img, augment.coordinates({**base, "flip": (False, True)}, c), order=3)
    assert np.allclose(out, img[:, ::-1], atol=1e-10)
    out = augment.warp(img, augment.coordinates({**base, "flip": (False, False), "angle": np.pi / 2}, c), order=3)
    assert np.allclose(out, np.rot90(img, 1), atol=1e-9) or np.allclose(out, np.rot90(img, -1), atol=1e-9)


def test_mirror_extrapolation_outside(rng):
    img = smooth_image(rng, (20, 20))
    t = dict(displacement=np.zeros((2, 3, 3)), angle=0.0, shift=np.zeros(2), flip=(False, False), out_shape=(40, 40))
    out = augment.warp(img, augment.coordinates(t, (9.5, 9.5)), order=1)
    ref = np.pad(img, 10, mode="reflect")
    assert np.allclose(out, ref, atol=1e-10)


def test_grey_value_keeps_order(rng):
    x = rng.normal(size=(50, 50)).astype(np.float32)
    y = augment.grey_value(x, rng)
    # monotone transform: the ranking of pixels is unchanged
    assert np.array_equal(np.argsort(x.ravel(), kind="stable"), np.argsort(y.ravel(), kind="stable"))


def test_augmentation_is_cheap_next_to_a_step(rng):
    import time

    t = augment.sample_transform(rng, (572, 572))
    img = rng.random((512, 512)).astype(np.float32)
    t0 = time.process_time()
    augment.warp(img, augment.coordinates(t, (255.5, 255.5)), order=3)
    dt = time.process_time() - t0
    # a 572 tile step of even the base-16 network costs several GFLOP (> 0.3 s on 2 cores);
    # the one-pass warp must stay well below it
    assert dt < 0.3, f"augmentation of one 572 tile took {dt:.2f} s CPU"
