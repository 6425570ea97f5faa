import pytest

from core.__main__ import main
from core.complexity import parameter_count
from core.registry import create_model, list_models


def test_info_lists_every_model_with_its_parameters_and_macs(capsys):
    assert main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "GMACs 256x256" in lines[0] and "GMACs 1280x720" in lines[0]
    for name in list_models():
        row = next(line for line in lines if line.startswith(name + " "))
        fields = row.split()
        assert fields[2] == f"{parameter_count(create_model(name)) / 1e6:.3f}M"
        macs_256, macs_720p = float(fields[3]), float(fields[4])
        assert macs_256 > 0
        # conv networks scale with area: 1280x720 is 14.06x the pixels of 256x256
        assert 12.0 < macs_720p / macs_256 < 16.5, (name, macs_256, macs_720p)


def test_unknown_command_exits_with_2():
    with pytest.raises(SystemExit) as exit_info:
        main(["nonsense"])
    assert exit_info.value.code == 2


def write_photo(path, height=40, width=52, seed=0):
    from PIL import Image
    import numpy as np

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)).save(path)


def test_deblur_mirrors_the_tree_names_bad_files_and_exits_1(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from core.images import read_image
    from core.inference import restore

    source, out = tmp_path / "in", tmp_path / "out"
    write_photo(source / "a.png")
    write_photo(source / "nested" / "b.jpg", seed=1)
    (source / "broken.png").write_bytes(b"this is not an image")
    code = main(["deblur", "--model", "lmfn,reblur-n1", "--input", str(source), "--output", str(out)])
    assert code == 1
    assert "broken.png" in capsys.readouterr().err
    for name in ("lmfn", "reblur-n1"):
        assert (out / name / "a.png").is_file() and (out / name / "nested" / "b.png").is_file()
    written = np.asarray(Image.open(out / "lmfn" / "a.png"))
    assert np.array_equal(written, restore(read_image(source / "a.png"), "lmfn").image)  # lossless
    assert not list(out.rglob("*.tmp"))


def test_deblur_one_model_writes_flat_and_bad_arguments_exit_2(tmp_path):
    write_photo(tmp_path / "photo.png")
    assert main(["deblur", "--model", "lmfn", "--input", str(tmp_path / "photo.png"), "--output", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "photo.png").is_file()
    for arguments in (["deblur", "--model", "nope", "--input", str(tmp_path), "--output", str(tmp_path)],
                      ["deblur", "--model", "lmfn", "--input", str(tmp_path / "missing"), "--output", str(tmp_path)],
                      ["deblur", "--model", "lmfn", "--input", str(tmp_path), "--output", str(tmp_path), "--tile", "-1"]):
        with pytest.raises(SystemExit) as exit_info:
            main(arguments)
        assert exit_info.value.code == 2


def test_evaluate_scores_the_input_and_each_model_and_writes_csv_and_json(tmp_path, capsys):
    import json

    import numpy as np
    from PIL import Image

    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for index in range(2):
        sharp = rng.integers(0, 256, size=(96, 112, 3), dtype=np.uint8)
        blurry = ((sharp.astype(np.float32) + np.roll(sharp, 3, axis=1)) / 2).astype(np.uint8)
        for kind, image in (("sharp", sharp), ("blur", blurry)):
            (data / "SEQ" / kind).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(data / "SEQ" / kind / f"{index:06d}.png")
    assert main(["evaluate", "--model", "lmfn", "--data", str(data), "--output", str(tmp_path / "out")]) == 0
    table = capsys.readouterr().out
    assert "input" in table and "lmfn" in table
    result = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert [row["model"] for row in result["summary"]] == ["input", "lmfn"]
    import torch

    threads = torch.get_num_threads()
    machine = f"CPU {torch.backends.cpu.get_cpu_capability()}, {threads} thread{'' if threads == 1 else 's'}"
    assert all(row["timed_on"].endswith(machine) for row in result["summary"])  # a timing names its machine
    assert len(result["images"]) == 4
    from core.metrics import psnr

    first = Image.open(data / "SEQ" / "blur" / "000000.png")
    expected = psnr(np.asarray(first) / 255.0, np.asarray(Image.open(data / "SEQ" / "sharp" / "000000.png")) / 255.0)
    assert abs(result["images"][0]["psnr"] - expected) < 1e-6
    from core.compare import COLUMNS

    assert (tmp_path / "out" / "evaluation.csv").read_text().splitlines()[0] == ",".join(COLUMNS)
    assert all(np.isfinite(row["niqe"]) and np.isfinite(row["ssim"]) for row in result["images"])


def test_evaluate_at_a_processing_size_scores_both_images_shrunk_as_the_app_shrinks_them(tmp_path):
    import json

    import numpy as np
    from PIL import Image

    from core.metrics import psnr
    from core.visualize import resize_longest

    data = tmp_path / "data"
    rng = np.random.default_rng(1)
    sharp = rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    blurry = ((sharp.astype(np.float32) + np.roll(sharp, 4, axis=1)) / 2).astype(np.uint8)
    for kind, image in (("sharp", sharp), ("blur", blurry)):
        (data / kind).mkdir(parents=True)
        Image.fromarray(image).save(data / kind / "a.png")
    assert main(["evaluate", "--model", "lmfn", "--data", str(data), "--output", str(tmp_path / "out"),
                 "--size", "80"]) == 0
    result = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    expected = psnr(resize_longest(blurry / 255.0, 80).astype(np.float32), resize_longest(sharp / 255.0, 80))
    assert abs(result["images"][0]["psnr"] - expected) < 1e-4
    assert abs(expected - psnr(blurry / 255.0, sharp / 255.0)) > 0.1  # the size did change the score


@pytest.mark.parametrize("name", ["reblur-n1", "lmfn"])  # its own M_R; the shipped Reblur's lent
def test_deblur_with_adaptation_steps(tmp_path, name):
    write_photo(tmp_path / "p.png", 32, 32)
    assert main(["deblur", "--model", name, "--input", str(tmp_path / "p.png"), "--output", str(tmp_path / "o"),
                 "--tta-steps", "2"]) == 0
    assert (tmp_path / "o" / "p.png").is_file()


def test_evaluate_scores_photos_without_a_reference_by_niqe_only(tmp_path):
    import json

    import numpy as np
    from PIL import Image

    from core.metrics import niqe

    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, size=(128, 128, 3), dtype=np.uint8)
    (tmp_path / "photos").mkdir()
    Image.fromarray(photo).save(tmp_path / "photos" / "a.png")
    assert main(["evaluate", "--model", "lmfn", "--data", str(tmp_path / "photos"), "--output", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    first = result["images"][0]
    assert first["model"] == "input" and first["psnr"] is None and first["ssim"] is None
    assert abs(first["niqe"] - niqe(photo / 255.0)) < 1e-9
    assert result["summary"][1]["model"] == "lmfn" and result["summary"][1]["niqe"] is not None


def test_deblur_over_the_awkward_upload_corpus_names_each_failure_and_writes_the_rest(tmp_path, capsys):
    from bad_inputs import write_corpus

    from core.models.base import MIN_SIDE

    entries = write_corpus(tmp_path / "in")
    code = main(["deblur", "--model", "lmfn", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")])
    errors = capsys.readouterr().err
    assert code == 1
    for name, (what, outcome) in entries.items():
        written = (tmp_path / "out" / name).with_suffix(".png")
        if outcome == "error" or min(outcome) < MIN_SIDE:  # unreadable, or too small for any model
            assert name in errors and not written.exists(), what
        else:
            assert written.is_file(), f"{what}: no output ({errors})"
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_evaluate_names_a_bad_pair_scores_the_others_and_exits_1(tmp_path, capsys):
    import json

    import numpy as np
    from PIL import Image

    data = tmp_path / "data"
    for kind in ("blur", "sharp"):
        (data / kind).mkdir(parents=True)
        Image.fromarray(np.full((40, 48, 3), 90, np.uint8)).save(data / kind / "good.png")
    (data / "blur" / "broken.png").write_bytes(b"not an image")
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(data / "sharp" / "broken.png")
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(data / "blur" / "other-size.png")
    Image.fromarray(np.zeros((30, 48, 3), np.uint8)).save(data / "sharp" / "other-size.png")
    code = main(["evaluate", "--model", "lmfn", "--data", str(data), "--output", str(tmp_path / "out")])
    errors = capsys.readouterr().err
    assert code == 1 and "broken.png" in errors and "other-size.png" in errors and "48x30" in errors
    result = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert {row["image"] for row in result["images"]} == {"blur/good.png"}


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_deblur_outputs_honour_the_umask(tmp_path, umask, mode):
    import os

    write_photo(tmp_path / "photo.png")
    previous = os.umask(umask)
    try:
        assert main(["deblur", "--model", "lmfn", "--input", str(tmp_path / "photo.png"), "--output",
                     str(tmp_path / "o")]) == 0
    finally:
        os.umask(previous)
    assert (tmp_path / "o" / "photo.png").stat().st_mode & 0o777 == mode
