"""The API's surfaces, each declared once and looked up by path."""

from __future__ import annotations

import pytest

from loyalty.compat.surfaces import SURFACES
from loyalty.http.surface import surface_for


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/v1/public/customers", "native"),
        ("/healthz", "native"),
        ("/api/v1/nothing-here", "native"),
        ("/api/v2/points/adjust", "yotpo"),
        ("/v1/pvt/Customer/42/points", "bonifiq"),
        ("/api/external/add-points", "appstle"),
        ("/api/external", "native"),
    ],
)
def test_a_path_is_served_by_the_surface_of_its_longest_prefix(path: str, name: str) -> None:
    assert surface_for(SURFACES, path).name == name


def test_each_surface_documents_the_schemes_its_controllers_require() -> None:
    names = [name for surface in SURFACES for name in surface.security_schemes]
    assert len(names) == len(set(names))
    assert len({surface.name for surface in SURFACES}) == len(SURFACES)
    for surface in SURFACES:
        for controller in surface.controllers:
            security: list[dict[str, list[str]]] = getattr(controller, "security", None) or []
            required = {name for requirement in security for name in requirement}
            assert required == set(surface.security_schemes), (surface.name, controller)
