"""deploy pages."""

ROUTES: list[object] = []
