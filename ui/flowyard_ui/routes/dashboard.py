"""dashboard pages."""

ROUTES: list[object] = []
