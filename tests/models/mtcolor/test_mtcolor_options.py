"""MT-Color's preset options are checked as stencil's are: a typo is an error naming the preset file, not ignored;
and every engine declares ``validate`` as the Engine protocol says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from restorer.errors import InputError

TYPO = "name: mine\nengine: mtcolor\ndescription: my tiny\noptions:\n  backbone: tiny\n  prior_temprature: 0.4\n"


def _preset(tmp_path: Path, text: str = TYPO) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_typo_in_an_mtcolor_preset_is_refused_naming_the_file(tmp_path):
    from restorer.presets import load_preset

    path = _preset(tmp_path)
    with pytest.raises(InputError) as exc:
        load_preset(str(path))
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg
    assert "unknown mtcolor option(s): prior_temprature" in msg and "prior_temperature" in msg  # the right spelling


def test_the_cli_refuses_it_in_one_line_with_exit_2(tmp_path):
    from restorer.cli import main

    photo = tmp_path / "in.png"
    Image.fromarray(np.full((16, 16), 128, np.uint8)).save(photo)
    result = CliRunner().invoke(main, ["colorize", str(photo), "-o", str(tmp_path / "out.png"),
                                       "--preset", str(_preset(tmp_path)), "--quiet"])
    assert result.exit_code == 2, result.output
    assert "prior_temprature" in result.output and "mine.yaml" in result.output
    assert not (tmp_path / "out.png").exists()


def test_library_callers_of_open_mtcolor_are_refused_too_before_any_weights():
    from restorer.models.mtcolor.engine import open_mtcolor

    with pytest.raises(InputError, match="unknown mtcolor option.*stpes"):
        open_mtcolor({"backbone": "tiny", "stpes": 2}, device="cpu", weights=None, base=None, overrides={})


@pytest.mark.parametrize("name", ["tiny", "sd15"])
def test_the_shipped_presets_set_only_options_the_engine_reads(name):
    from restorer.models.mtcolor.options import OPTIONS
    from restorer.presets import load_preset

    assert set(load_preset(name).options) <= OPTIONS


def test_every_engine_has_the_protocols_validate():
    from restorer.models.anchors.engine import AnchorsEngine
    from restorer.models.engine import Engine
    from restorer.models.mtcolor.engine import MTColorEngine
    from restorer.models.stencil import StencilEngine

    assert {"validate", "shot", "close"} <= set(vars(Engine))
    for cls in (StencilEngine, MTColorEngine, AnchorsEngine):
        assert callable(getattr(cls, "validate", None)), cls.__name__


@pytest.mark.parametrize(("engine", "typo", "wanted"), [("stencil", "max_sied", "max_side"),
                                                        ("anchors", "temprature", "temperature")])
def test_a_typo_in_a_stencil_or_anchors_preset_is_refused_naming_the_file(tmp_path, engine, typo, wanted):
    from restorer.presets import load_preset

    path = _preset(tmp_path, f"name: mine\nengine: {engine}\ndescription: mine\noptions:\n  {typo}: 1\n")
    with pytest.raises(InputError) as exc:
        load_preset(str(path))
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg
    assert f"unknown {engine} option(s): {typo}" in msg and wanted in msg


def test_an_unknown_anchors_colour_choice_is_refused_when_the_preset_loads(tmp_path):
    from restorer.presets import load_preset

    path = _preset(tmp_path, "name: mine\nengine: anchors\ndescription: mine\noptions:\n  colour: median\n")
    with pytest.raises(InputError, match="colour.*median.*mode, mean"):
        load_preset(str(path))
