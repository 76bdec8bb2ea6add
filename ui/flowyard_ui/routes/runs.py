"""runs pages."""

ROUTES: list[object] = []
