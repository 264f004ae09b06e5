"""The lab's probe data sets and reference models do what their documentation says."""

import torch

import mlpvision
from mlpvision.data import load_split
from mlpvision.data.tasks import MARGIN, global_task, permute_pixels, pixel_permutation, position_task, shift_images

from .helpers import write_cifar10


def test_position_task_puts_the_shape_in_the_labelled_quadrant_away_from_the_border():
    ds = position_task(200, seed=3)
    bright = ds.images[:, 0] > 200
    for img, label in zip(bright, ds.labels.tolist(), strict=True):
        ys, xs = torch.nonzero(img, as_tuple=True)
        row, col = divmod(label, 2)
        assert ((ys >= 14) == bool(row)).all() and ((xs >= 14) == bool(col)).all()
        assert ys.min() >= MARGIN and xs.min() >= MARGIN and ys.max() < 28 - MARGIN and xs.max() < 28 - MARGIN
    assert set(ds.labels.tolist()) == {0, 1, 2, 3}


def _orientations(img):
    """Horizontal (True) or vertical stripes in the four 7x7 corner patches: TL, TR, BL, BR."""
    out = []
    for y, x in ((1, 1), (1, 20), (20, 1), (20, 20)):
        patch = img[y : y + 7, x : x + 7] > 200
        out.append(bool(patch[0].all()))  # horizontal stripes fill whole rows
    return out


def test_global_task_label_is_tl_equals_br_and_the_patch_multiset_never_changes():
    ds = global_task(300, seed=4)
    for img, label in zip(ds.images[:, 0], ds.labels.tolist(), strict=True):
        kinds = _orientations(img)
        assert sum(kinds) == 2  # always two horizontal and two vertical patches
        assert (kinds[0] == kinds[3]) == bool(label)
    assert 0.4 < ds.labels.float().mean() < 0.6


def test_permuted_fashion_mnist_is_a_fixed_permutation_of_every_image():
    plain, _ = load_split("fashion-mnist", "test")
    permuted, info = load_split("fashion-mnist-permuted", "test")
    assert info.num_classes == 10 and torch.equal(plain.labels, permuted.labels)
    perm = pixel_permutation(784)
    assert torch.equal(permute_pixels(plain.images[:50], perm), permuted.images[:50])
    assert torch.equal(plain.images[:50].flatten(1).sort(1).values, permuted.images[:50].flatten(1).sort(1).values)


def test_permuted_cifar10_moves_every_channel_alike(tmp_path):
    write_cifar10(tmp_path, per_file=4)
    plain, info = load_split("cifar10", "test", tmp_path)
    permuted, pinfo = load_split("cifar10-permuted", "test", tmp_path)
    assert pinfo.name == "cifar10-permuted" and (pinfo.mean, pinfo.std) == (info.mean, info.std)
    assert torch.equal(permuted.images, permute_pixels(plain.images, pixel_permutation(32 * 32)))
    # a pixel keeps its three colour values together
    rgb = plain.images.flatten(2).transpose(1, 2).flatten(0, 1).tolist()
    assert sorted(rgb) == sorted(permuted.images.flatten(2).transpose(1, 2).flatten(0, 1).tolist())


def test_a_plain_mlp_is_blind_to_a_pixel_permutation():
    """Permuting the input pixels is undone exactly by permuting the first layer's columns: the same function."""
    model = mlpvision.create_model("mlp_28").eval()
    x = torch.randn(4, 1, 28, 28)
    perm = pixel_permutation(784, seed=5)
    twin = mlpvision.create_model("mlp_28").eval()
    twin.load_state_dict(model.state_dict())
    with torch.no_grad():
        twin.layers[0].weight.copy_(model.layers[0].weight[:, perm])
        torch.testing.assert_close(twin(permute_pixels(x, perm)), model(x))


def test_local_convnet_sees_only_its_receptive_field():
    model = mlpvision.create_model("cnn_local_28").eval()
    assert model.receptive_field == 5
    x = torch.randn(1, 1, 28, 28, requires_grad=True)
    model.forward_features(x)[0, :, 14, 14].sum().backward()
    ys, xs = torch.nonzero(x.grad[0, 0], as_tuple=True)
    assert ys.min() >= 12 and ys.max() <= 16 and xs.min() >= 12 and xs.max() <= 16


def test_each_cell_of_the_resnet18_last_map_sees_the_whole_image():
    """The lab's probe notes rest on it: ResNet-18's pooled features can see every pixel and the border."""
    model = mlpvision.create_model("resnet18_28").eval()
    x = torch.randn(1, 1, 28, 28, requires_grad=True)
    features = model.forward_features(x)
    assert features.shape[-2:] == (4, 4)
    features[0, :, 0, 0].sum().backward()  # the top-left cell: the farthest from the opposite corner
    assert (x.grad[0, 0] != 0).all()


def test_shift_images_moves_content_and_fills_the_border():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    right = shift_images(x, 0, 1)
    assert torch.equal(right[0, 0, :, 1:], x[0, 0, :, :3]) and (right[0, 0, :, 0] == 0).all()
    up = shift_images(x, -2, 0)
    assert torch.equal(up[0, 0, :2], x[0, 0, 2:]) and (up[0, 0, 2:] == 0).all()
    assert torch.equal(shift_images(x, 0, 0), x)


def test_a_task_split_is_made_once_and_every_caller_gets_its_own_copy():
    first, _ = load_split("position-task", "test")
    first.images[0].zero_()  # a caller that writes to its images
    first.images = first.images[:1]  # or replaces them (as resizing does)
    again, _ = load_split("position-task", "test")
    assert len(again) == 2000 and torch.equal(again.images, position_task(2000, seed=1).images)
    assert torch.equal(again.labels, position_task(2000, seed=1).labels)
