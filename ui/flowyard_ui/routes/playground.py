"""playground pages."""

ROUTES: list[object] = []
