"""Generators by name: the default, switching, and a clear error for unknown names and settings."""

import pytest
import torch

from vj.models.base import Generator
from vj.models.registry import available_generators, create_generator


def test_cppn_is_the_default_and_plasma_is_available():
    names = available_generators()
    assert names[0] == "cppn" and "plasma" in names
    gen = create_generator()
    assert isinstance(gen, Generator) and gen.name == "cppn" and gen.output_size == (256, 144)


@pytest.mark.parametrize("name", ["cppn", "plasma"])
def test_settings_reach_the_constructor(name):
    gen = create_generator(name, width_px=32, height_px=20, seed=4)
    assert gen.name == name and gen.output_size == (32, 20)


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ValueError, match="unknown generator 'biggan'.*cppn.*plasma.*stylegan"):
        create_generator("biggan")


def test_unknown_setting_is_a_value_error():
    with pytest.raises(ValueError, match="generator 'cppn'.*colour"):
        create_generator("cppn", colour="red")
    with pytest.raises(ValueError):
        create_generator("cppn", width_px=0)


@pytest.mark.parametrize("name", ["stylegan", "deepdream"])
def test_a_device_this_machine_lacks_is_named_in_words(name):
    with pytest.raises(ValueError, match=r"device must be auto, cpu or cuda \(or cuda:N\), got 'gpu'"):
        create_generator(name, width_px=32, height_px=20, device="gpu")
    if not torch.cuda.is_available():                 # a preset written on a GPU machine, played on a laptop
        with pytest.raises(ValueError, match=r"device 'cuda': no CUDA device here .*use device = \"auto\""):
            create_generator(name, width_px=32, height_px=20, device="cuda")
    assert create_generator(name, width_px=32, height_px=20, device="auto").device.type in ("cpu", "cuda")
