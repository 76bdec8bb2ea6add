"""tables pages."""

ROUTES: list[object] = []
