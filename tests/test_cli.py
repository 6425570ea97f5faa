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
