"""Blur synthesis (core.blur) and the training datasets (train.data), checked against the shared GoPro data."""

import functools
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

import train.data as data
from core.blur import CameraMotion, blur_image, blur_tensor, gopro_blur, moving_camera_blur, trajectory_kernel
from train.data import (
    FrameFolder,
    MixedDataset,
    MovingCameraFolder,
    PairedFolder,
    SyntheticFolder,
    ValidationPairs,
    build_dataset,
    dataset_type,
    held_out_frames,
    pair_frame_numbers,
    read_rgb,
)

DATA = SHARED_DATA
GOPRO_DEV = DATA / "gopro_dev"
FRAMES = DATA / "gopro_frames"
SEQUENCE = "GOPR0477_11_00"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"the shared data folder {DATA} is absent")


def centre_of_mass(kernel):
    rows, cols = np.indices(kernel.shape)
    return (kernel * rows).sum() / kernel.sum(), (kernel * cols).sum() / kernel.sum()


def support_extent(kernel):
    """Largest distance between two pixels the kernel puts weight on."""
    rows, cols = np.nonzero(kernel)
    points = cols + 1j * rows
    return np.abs(points[:, None] - points[None, :]).max()


def save_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def random_uint8(shape, seed):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("size", [15, 31, 45])
def test_kernel_is_a_centred_normalised_psf_of_the_asked_size(size):
    for seed in range(5):
        kernel = trajectory_kernel(size, seed=seed)
        assert kernel.shape == (size, size) and kernel.dtype == np.float32
        assert kernel.min() >= 0
        assert abs(float(kernel.sum()) - 1) < 1e-5
        row, col = centre_of_mass(kernel.astype(np.float64))
        assert abs(row - (size - 1) / 2) < 1 and abs(col - (size - 1) / 2) < 1, (row, col)


def test_kernel_is_deterministic_for_a_seed_and_differs_across_seeds():
    assert np.array_equal(trajectory_kernel(31, seed=7), trajectory_kernel(31, seed=7))
    kernels = [trajectory_kernel(31, length=12, seed=seed) for seed in range(6)]
    for i in range(len(kernels)):
        for j in range(i):
            assert np.abs(kernels[i] - kernels[j]).sum() > 0.5


@pytest.mark.parametrize("length", [5, 10, 20])
def test_kernel_spreads_over_its_length(length):
    for seed in range(5):
        kernel = trajectory_kernel(31, length=length, seed=seed)
        assert kernel.max() < 0.5
        # bilinear splatting widens the support by at most one pixel each way
        assert length <= support_extent(kernel) <= length + 2 * np.sqrt(2) + 1e-6


def test_kernel_of_length_zero_is_a_delta_and_bad_arguments_are_refused():
    kernel = trajectory_kernel(15, length=0, seed=3)
    assert kernel[7, 7] == pytest.approx(1.0) and kernel.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="odd"):
        trajectory_kernel(16, seed=0)
    with pytest.raises(ValueError, match="length"):
        trajectory_kernel(15, length=20, seed=0)


def test_blur_with_a_delta_kernel_returns_the_image():
    image = np.random.default_rng(0).random((20, 17, 3), dtype=np.float32)
    delta = np.zeros((9, 9), np.float32)
    delta[4, 4] = 1
    np.testing.assert_allclose(blur_image(image, delta), image, atol=1e-6)


def test_blur_is_a_true_convolution():
    rng = np.random.default_rng(1)
    image = rng.random((12, 14, 3))
    kernel = rng.random((5, 5))
    kernel /= kernel.sum()
    result = blur_image(image.astype(np.float32), kernel.astype(np.float32))
    half = 2
    for i in range(half, 12 - half):
        for j in range(half, 14 - half):
            # y(i, j) = sum_uv k(u, v) x(i + half - u, j + half - v)
            direct = sum(
                kernel[u, v] * image[i + half - u, j + half - v] for u in range(5) for v in range(5)
            )
            np.testing.assert_allclose(result[i, j], direct, atol=1e-5)


def test_a_one_pixel_shift_kernel_moves_the_image_right():
    image = np.random.default_rng(2).random((6, 8, 3), dtype=np.float32)
    shift = np.zeros((3, 3), np.float32)
    shift[1, 2] = 1  # convolution with a delta right of centre shifts the content right
    np.testing.assert_allclose(blur_image(image, shift)[:, 1:], image[:, :-1], atol=1e-6)


def test_blur_keeps_a_constant_image_even_when_the_kernel_is_larger_than_the_image():
    kernel = trajectory_kernel(31, seed=4)
    for shape in [(40, 50, 3), (5, 7, 3)]:
        image = np.full(shape, 0.37, np.float32)
        result = blur_image(image, kernel)
        assert result.shape == shape
        np.testing.assert_allclose(result, 0.37, atol=1e-5)


def test_blur_tensor_matches_blur_image():
    image = np.random.default_rng(3).random((16, 20, 3), dtype=np.float32)
    kernel = trajectory_kernel(15, seed=5)
    batch = torch.from_numpy(image).permute(2, 0, 1)[None].repeat(2, 1, 1, 1)
    result = blur_tensor(batch, torch.from_numpy(kernel))
    assert result.shape == batch.shape
    for item in result:
        np.testing.assert_allclose(item.permute(1, 2, 0).numpy(), blur_image(image, kernel), atol=1e-6)


def test_gopro_blur_of_still_frames_is_the_frame_and_the_target_is_the_later_middle_frame():
    frames = [random_uint8((4, 5, 3), seed) for seed in range(8)]
    blurry, sharp = gopro_blur([frames[0]] * 5)
    np.testing.assert_allclose(blurry, frames[0] / 255, atol=1e-6)
    _, sharp = gopro_blur(frames)
    np.testing.assert_array_equal(sharp, frames[4] / np.float32(255))
    blurry, sharp = gopro_blur([np.zeros((2, 2, 3)), np.ones((2, 2, 3)), np.ones((2, 2, 3))])
    np.testing.assert_allclose(blurry, (2 / 3) ** (1 / 2.2), rtol=1e-6)
    np.testing.assert_array_equal(sharp, 1.0)


@functools.lru_cache(maxsize=None)
def frame(number):
    return read_rgb(FRAMES / SEQUENCE / f"{number:06d}.jpg")


def gopro_dev_pairs_inside_the_frames():
    if not DATA.is_dir():
        return []
    names = sorted(path.name for path in (GOPRO_DEV / SEQUENCE / "blur").glob("*.png"))
    frames = FRAMES / SEQUENCE
    return [name for name in names if all((frames / f"{n:06d}.jpg").is_file() for n in pair_frame_numbers(name))]


@needs_data
def test_four_gopro_dev_pairs_lie_inside_the_shared_frames():
    assert gopro_dev_pairs_inside_the_frames() == [
        "000165_avg08.png", "000171_avg08.png", "000178_avg08.png", "000198_avg08.png"
    ]


@needs_data
@pytest.mark.parametrize("name", gopro_dev_pairs_inside_the_frames() or ["000165_avg08.png"])
def test_frames_reproduce_the_gopro_pair(name):
    """Measured mean absolute errors (x 255), blurry / sharp: 000165 0.58 / 0.69, 000171 1.02 / 0.75,
    000178 0.58 / 0.69, 000198 0.58 / 0.74; the residue is the frames' JPEG coding (~49 dB).
    Windows one frame earlier or later give 1.6 - 3.5."""
    numbers = pair_frame_numbers(name)
    expected_blurry = read_rgb(GOPRO_DEV / SEQUENCE / "blur" / name) / 255.0
    expected_sharp = read_rgb(GOPRO_DEV / SEQUENCE / "sharp" / name) / 255.0
    blurry, sharp = gopro_blur([frame(n) for n in numbers])
    assert np.abs(blurry - expected_blurry).mean() < 1.5 / 255
    assert np.abs(sharp - expected_sharp).mean() < 1.5 / 255
    for shift in (-1, 1):
        shifted, _ = gopro_blur([frame(n + shift) for n in numbers])
        assert np.abs(shifted - expected_blurry).mean() > np.abs(blurry - expected_blurry).mean() + 0.3 / 255


@needs_data
def test_held_out_frames_of_gopro_dev_span_the_readme_stretch():
    frames = {n for n in held_out_frames(GOPRO_DEV)[SEQUENCE] if n <= 299}
    # pairs 165, 171, 178 (frames 166 - 186) and 198 (199 - 206): frames 187 - 198 are in no pair
    assert frames == set(range(166, 187)) | set(range(199, 207))
    widened = {n for n in held_out_frames(GOPRO_DEV, margin=6)[SEQUENCE] if n <= 299}
    assert widened == set(range(160, 213))


@needs_data
def test_paired_folder_on_gopro_dev_gives_aligned_crops():
    dataset = PairedFolder(GOPRO_DEV, crop=96, seed=0)
    assert len(dataset) == 11
    sample = dataset[3]
    assert set(sample) == {"blur", "sharp"}
    for tensor in sample.values():
        assert tensor.shape == (3, 96, 96) and tensor.dtype == torch.float32
        assert 0 <= tensor.min() and tensor.max() <= 1
    # the two crops come from the same place: a GoPro blurry image stays close to its sharp one
    assert (sample["blur"] - sample["sharp"]).abs().mean() < 0.1


def test_paired_folder_crops_and_flips_both_images_alike_and_pads_small_ones(tmp_path):
    for index in range(3):
        sharp = random_uint8((20 + index, 30, 3), index)
        save_png(tmp_path / "blur" / f"{index}.png", 255 - sharp)
        save_png(tmp_path / "sharp" / f"{index}.png", sharp)
    dataset = PairedFolder(tmp_path, crop=24, seed=5)
    for epoch in range(4):
        dataset.set_epoch(epoch)
        for sample in dataset:
            assert sample["blur"].shape == sample["sharp"].shape == (3, 24, 24)
            torch.testing.assert_close(sample["blur"], 1 - sample["sharp"], atol=1e-6, rtol=0)


def test_noise_on_real_blur_inputs_is_added_to_the_blurry_crop_only_and_only_when_asked(tmp_path):
    grey = np.full((40, 40, 3), 128, np.uint8)
    for index in range(2):
        save_png(tmp_path / "blur" / f"{index}.png", grey)
        save_png(tmp_path / "sharp" / f"{index}.png", grey)
    clean = PairedFolder(tmp_path, crop=32, seed=3)
    noisy = PairedFolder(tmp_path, crop=32, seed=3, noise=[0.02, 0.02])
    for index in range(2):
        plain, sample = clean[index], noisy[index]
        torch.testing.assert_close(plain["blur"], plain["sharp"], atol=0, rtol=0)
        torch.testing.assert_close(sample["sharp"], plain["sharp"], atol=0, rtol=0)
        residual = sample["blur"] - sample["sharp"]
        assert abs(residual.mean().item()) < 0.002 and abs(residual.std().item() - 0.02) < 0.002
        torch.testing.assert_close(noisy[index]["blur"], sample["blur"], atol=0, rtol=0)  # a function of the index
    dataset = build_dataset([tmp_path, DATA / "sharp"], crop=16, seed=0, length=4, noise=[0.0, 0.03])
    paired, photos = dataset.sources
    assert paired.noise == (0.0, 0.03) and photos.noise is None  # the photo sources keep their own noise
    with pytest.raises(ValueError, match="noise must be"):
        PairedFolder(tmp_path, crop=32, seed=0, noise=[0.02, 0.01])


def test_paired_folder_reports_a_missing_sharp_image(tmp_path):
    save_png(tmp_path / "seq" / "blur" / "000001.png", random_uint8((8, 8, 3), 0))
    (tmp_path / "seq" / "sharp").mkdir()
    with pytest.raises(ValueError, match="no sharp counterpart"):
        PairedFolder(tmp_path, crop=8, seed=0)


def fake_frames(monkeypatch):
    """Replace decoding by a tiny frame whose value is its number (mod 256), and record the numbers decoded."""
    used = []

    def read(path):
        used.append(int(Path(path).stem))
        return np.full((12, 12, 3), int(Path(path).stem) % 256, np.uint8)

    monkeypatch.setattr(data, "read_rgb", read)
    return used


@needs_data
def test_frame_folder_never_uses_excluded_frames_and_targets_the_middle_frame(monkeypatch):
    used = fake_frames(monkeypatch)
    dataset = FrameFolder(FRAMES, crop=8, seed=0, exclude=range(166, 207))
    lengths = set()
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            del used[:]
            dataset._frames.clear()  # decoded frames are kept per process: forget them to see every frame a draw uses
            sample = dataset[index]
            lengths.add(len(used))
            assert used == list(range(used[0], used[0] + len(used)))
            assert not set(used) & set(range(166, 207))
            middle = used[len(used) // 2]
            torch.testing.assert_close(sample["sharp"], torch.full((3, 8, 8), middle % 256 / 255))
    assert lengths == {7, 9, 11, 13}
    assert {dataset.items[i][1] for i in range(len(dataset))} == set(range(4, 163)) | set(range(210, 297))


def test_frame_folder_honours_a_per_sequence_exclusion(tmp_path, monkeypatch):
    for sequence in ("a", "b"):
        for number in range(1, 21):
            (tmp_path / sequence).mkdir(exist_ok=True)
            (tmp_path / sequence / f"{number:04d}.png").touch()
    used = fake_frames(monkeypatch)
    dataset = FrameFolder(tmp_path, crop=4, seed=1, min_frames=5, max_frames=5, exclude={"a": range(8, 21)})
    assert [(dataset.sequences[s][0], centre) for s, centre, _ in dataset.items] == [("a", 3), ("a", 4), ("a", 5)] + [
        ("b", n) for n in range(3, 19)
    ]
    dataset[2]
    assert used == [3, 4, 5, 6, 7]


def test_same_seed_epoch_and_index_give_the_same_sample_whatever_the_workers(tmp_path):
    for index in range(4):
        save_png(tmp_path / "photos" / f"p{index}.png", random_uint8((40, 50, 3), index))
    first = SyntheticFolder(tmp_path, crop=16, seed=3, kernel_size=9)
    second = SyntheticFolder(tmp_path, crop=16, seed=3, kernel_size=9)
    first.set_epoch(2)
    second.set_epoch(2)
    torch.testing.assert_close(first[1], second[1], atol=0, rtol=0)
    second.set_epoch(3)
    assert not torch.equal(first[1]["blur"], second[1]["blur"])
    batches = [
        torch.cat([batch["blur"] for batch in DataLoader(first, batch_size=1, num_workers=workers)])
        for workers in (0, 2)
    ]
    assert torch.equal(batches[0], batches[1])


def test_synthetic_folder_blurs_by_a_kernel_and_keeps_constant_photos_constant(tmp_path):
    save_png(tmp_path / "flat.png", np.full((10, 12, 3), 100, np.uint8))
    save_png(tmp_path / "deep" / "noise.png", random_uint8((64, 64, 3), 0))
    dataset = SyntheticFolder(tmp_path, crop=32, seed=0, kernel_size=15, noise_sigma=(0.0, 0.0))
    assert [path.name for path in dataset.photos] == ["noise.png", "flat.png"]
    for index in range(2):
        dataset.set_epoch(index)
        noise, flat = dataset[0], dataset[1]
        torch.testing.assert_close(flat["blur"], torch.full((3, 32, 32), 100 / 255), atol=1e-5, rtol=0)
        assert noise["blur"].shape == noise["sharp"].shape == (3, 32, 32)
        # a kernel of three or more pixels averages pixel noise down: neighbours differ far less, the mean stays
        assert noise["blur"].diff(dim=-1).abs().mean() < 0.6 * noise["sharp"].diff(dim=-1).abs().mean()
        assert abs(noise["blur"].mean() - noise["sharp"].mean()) < 0.02


class Constant(Dataset):
    def __init__(self, value, size):
        self.value, self.size = value, size

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        return self.value


def test_mixed_dataset_draws_sources_by_weight_reproducibly():
    mixed = MixedDataset([Constant("a", 3), Constant("b", 50), Constant("c", 1)], [1, 3, 6], length=6000, seed=0)
    draws = [mixed[i] for i in range(len(mixed))]
    for value, share in zip("abc", (0.1, 0.3, 0.6)):
        assert abs(draws.count(value) / len(draws) - share) < 0.025
    again = MixedDataset([Constant("a", 3), Constant("b", 50), Constant("c", 1)], [1, 3, 6], length=6000, seed=0)
    assert [again[i] for i in range(200)] == draws[:200]
    again.set_epoch(1)
    assert [again[i] for i in range(200)] != draws[:200]
    with pytest.raises(ValueError, match="weight"):
        MixedDataset([Constant("a", 1)], [1, 2], length=5, seed=0)


@needs_data
def test_validation_pairs_are_whole_or_centre_cropped_in_a_fixed_order():
    pairs = ValidationPairs(GOPRO_DEV, max_side=128)
    names = [name for name, _, _ in pairs.pairs]
    assert names == sorted(names) and names[0] == "GOPR0374_11_00/000614_avg08.png"
    sample = pairs[0]
    assert sample["blur"].shape == sample["sharp"].shape == (3, 128, 128)
    whole = ValidationPairs(GOPRO_DEV)[0]
    assert whole["blur"].shape == (3, 720, 1280)
    torch.testing.assert_close(sample["blur"], whole["blur"][:, 296:424, 576:704])


@needs_data
@pytest.mark.parametrize(
    "folder, kind",
    [
        ("gopro_dev", PairedFolder),
        ("gopro_dev/GOPR0477_11_00", PairedFolder),
        ("gopro_frames", FrameFolder),
        ("gopro_frames/GOPR0477_11_00", FrameFolder),
        ("sharp", SyntheticFolder),
        ("sharp/McMaster", SyntheticFolder),  # 1.png .. 18.png: numbered consecutively, but photos
        ("sharp/CBSD68", SyntheticFolder),
    ],
)
def test_dataset_type_recognises_the_shared_folders(folder, kind):
    assert dataset_type(DATA / folder) is kind


@needs_data
def test_dataset_type_refuses_what_is_not_one_dataset(tmp_path):
    for path, message in [
        (tmp_path / "missing", "does not exist"),
        (DATA / "README.md", "not a folder"),
        (tmp_path, "neither"),
        (DATA, "not one dataset"),
    ]:
        with pytest.raises(ValueError, match=message):
            dataset_type(path)


@needs_data
def test_build_dataset_mixes_the_folders_and_keeps_validation_frames_out():
    dataset = build_dataset([FRAMES, DATA / "sharp"], crop=32, seed=0, length=10, held_out=GOPRO_DEV)
    frames, photos = dataset.sources
    assert isinstance(frames, FrameFolder) and isinstance(photos, SyntheticFolder) and len(dataset) == 10
    assert dataset.probabilities.tolist() == [0.5, 0.5]
    for _, centre, reach in frames.items:
        assert not set(range(centre - reach, centre + reach + 1)) & set(range(160, 213))
    sample = dataset[0]
    assert sample["blur"].shape == sample["sharp"].shape == (3, 32, 32)
    with pytest.raises(ValueError, match="held-out"):
        build_dataset([GOPRO_DEV], crop=32, seed=0, length=10, held_out=GOPRO_DEV)
    with pytest.raises(ValueError, match="does not exist"):
        build_dataset([DATA / "no_such_folder"], crop=32, seed=0, length=10)


def test_a_frame_folder_of_one_to_three_frames_draws_pairs_with_no_blur_or_little(tmp_path, monkeypatch):
    for number in range(1, 21):
        save_png(tmp_path / "clip" / f"{number:04d}.png", np.full((12, 12, 3), 100 + number, np.uint8))
    used = fake_frames(monkeypatch)
    dataset = build_dataset([tmp_path / "clip"], crop=4, seed=0, length=40, frames=(1, 3))
    (frames,) = dataset.sources
    lengths = set()
    for index in range(len(frames)):
        del used[:]
        frames._frames.clear()
        sample = frames[index]
        lengths.add(len(used))
        if len(used) == 1:  # one frame: the blurry input is the sharp target itself
            torch.testing.assert_close(sample["blur"], sample["sharp"], atol=1 / 255, rtol=0)
    assert lengths == {1, 3}


def test_a_still_camera_leaves_the_photo_and_a_shift_averages_shifted_copies_in_linear_intensity():
    image = random_uint8((40, 50, 3), 1)
    blurry, sharp = moving_camera_blur(image, CameraMotion(shift=(0.0, 0.0)), frames=7, margin=3)
    np.testing.assert_allclose(sharp, image[3:37, 3:47] / 255, atol=1e-7)
    np.testing.assert_allclose(blurry ** 2.2, sharp ** 2.2, atol=1e-5)  # exact up to float rounding in linear light
    blurry, sharp = moving_camera_blur(image, CameraMotion(shift=(4.0, 0.0)), frames=5, margin=3)
    linear = (image / 255.0) ** 2.2  # five frames at t = -1/2 .. 1/2: copies shifted by -2 .. 2 pixels
    expected = np.mean([linear[3:37, 3 + d : 47 + d] for d in (-2, -1, 0, 1, 2)], axis=0) ** (1 / 2.2)
    np.testing.assert_allclose(blurry, expected, atol=1e-5)
    assert CameraMotion(shift=(4.0, 0.0)).reach(34, 44) == pytest.approx(2.0)
    one, target = moving_camera_blur(image, CameraMotion(shift=(9.0, 3.0), roll=0.1), frames=1, margin=3)
    np.testing.assert_array_equal(one, target)
    with pytest.raises(ValueError, match="odd"):
        moving_camera_blur(image, CameraMotion(shift=(1.0, 0.0)), frames=4, margin=3)
    with pytest.raises(ValueError, match="margin"):
        moving_camera_blur(image, CameraMotion(shift=(1.0, 0.0)), frames=3, margin=25)


def test_a_roll_blurs_far_from_its_pivot_and_not_at_it():
    image = random_uint8((64, 64, 3), 2)
    blurry, sharp = moving_camera_blur(image, CameraMotion(shift=(0.0, 0.0), roll=0.2, centre=(5.0, 5.0)),
                                       frames=9, margin=8)
    error = np.abs(blurry - sharp).mean(axis=2)
    assert error[5, 5] < 1e-4  # the pivot stays put
    assert error[3:8, 3:8].mean() < 0.3 * error[-8:, -8:].mean()


def test_moving_camera_folder_draws_reproducible_pairs_and_a_still_camera_when_asked(tmp_path):
    save_png(tmp_path / "a.png", random_uint8((70, 90, 3), 3))
    save_png(tmp_path / "deep" / "flat.png", np.full((50, 50, 3), 90, np.uint8))
    dataset = MovingCameraFolder(tmp_path, crop=32, seed=0, scale=(1.0, 2.0), noise_sigma=(0.0, 0.0))
    first, again = dataset[0], dataset[0]
    torch.testing.assert_close(first["blur"], again["blur"], atol=0, rtol=0)
    assert first["blur"].shape == first["sharp"].shape == (3, 32, 32)
    assert 0.0 <= float(first["blur"].min()) and float(first["blur"].max()) <= 1.0
    torch.testing.assert_close(dataset[1]["blur"], torch.full((3, 32, 32), 90 / 255), atol=2e-3, rtol=0)
    blurred = [dataset.draw(0, np.random.default_rng(i)) for i in range(6)]
    assert max(float((d["blur"] - d["sharp"]).abs().mean()) for d in blurred) > 0.02
    still = MovingCameraFolder(tmp_path, crop=32, seed=0, min_frames=1, max_frames=1, noise_sigma=(0.0, 0.0))
    torch.testing.assert_close(still[0]["blur"], still[0]["sharp"], atol=0, rtol=0)


def test_build_dataset_blurs_photos_by_a_moving_camera_when_asked(tmp_path):
    save_png(tmp_path / "a.png", random_uint8((70, 90, 3), 3))
    (photos,) = build_dataset([tmp_path], crop=32, seed=0, length=4, photo_blur="camera", frames=(3, 5)).sources
    assert isinstance(photos, MovingCameraFolder) and (photos.min_half, photos.max_half) == (1, 2)
    assert photos.extent == (0.5, 32.0)
    (longer,) = build_dataset([tmp_path], crop=32, seed=0, length=4, photo_blur="camera", camera_extent=[8, 64]).sources
    assert longer.extent == (8.0, 64.0)
    paths = [longer.motion(32, np.random.default_rng(i)).shift for i in range(50)]
    assert all(8.0 - 1e-9 <= math.hypot(*shift) <= 64.0 + 1e-9 for shift in paths)
    with pytest.raises(ValueError, match="camera path lengths"):
        build_dataset([tmp_path], crop=32, seed=0, length=4, photo_blur="camera", camera_extent=[0, 64])
    with pytest.raises(ValueError, match="photo_blur"):
        build_dataset([tmp_path], crop=32, seed=0, length=4, photo_blur="wind")
