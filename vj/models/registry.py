"""Generators by name: `create_generator("cppn", width_px=..., height_px=...)`."""

from __future__ import annotations

from typing import Any, Callable

from vj.models.base import Generator

DEFAULT_GENERATOR = "cppn"


def _cppn(**settings: Any) -> Generator:
    from vj.models.cppn import CPPNGenerator
    return CPPNGenerator(**settings)


def _plasma(**settings: Any) -> Generator:
    from vj.models.plasma import PlasmaGenerator
    return PlasmaGenerator(**settings)


def _stylegan(**settings: Any) -> Generator:
    from vj.models.stylegan.generator import StyleGANGenerator
    return StyleGANGenerator(**settings)


def _deepdream(**settings: Any) -> Generator:
    from vj.models.deepdream.generator import DeepDreamGenerator
    return DeepDreamGenerator(make_source=create_generator, **settings)     # its source model, by name


def _video(**settings: Any) -> Generator:
    from vj.models.video import VideoGenerator
    return VideoGenerator(**settings)


# Factories import their module on first use, so a heavy generator costs nothing until chosen.
_FACTORIES: dict[str, Callable[..., Generator]] = {"cppn": _cppn, "plasma": _plasma, "stylegan": _stylegan}
_FACTORIES["video"] = _video
_FACTORIES["deepdream"] = _deepdream


def available_generators() -> tuple[str, ...]:
    """Names `create_generator` accepts, the default first."""
    return (DEFAULT_GENERATOR,) + tuple(sorted(n for n in _FACTORIES if n != DEFAULT_GENERATOR))


def create_generator(name: str = DEFAULT_GENERATOR, **settings: Any) -> Generator:
    """A new generator by name; settings go to its constructor (width_px, height_px, seed, ...).

    Raises ValueError for an unknown name or a setting the generator does not take.
    """
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ValueError(f"unknown generator {name!r}; available: {', '.join(available_generators())}")
    try:
        return factory(**settings)
    except TypeError as exc:
        raise ValueError(f"generator {name!r}: bad settings {sorted(settings)}: {exc}") from exc
