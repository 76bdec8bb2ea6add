"""deadletters pages."""

ROUTES: list[object] = []
