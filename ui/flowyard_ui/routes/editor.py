"""editor pages."""

ROUTES: list[object] = []
