"""The Flowyard web UI: Litestar + Jinja2 + htmx, server-rendered.

`flowyard serve` mounts it with `flowyard_ui.app.create_app(runtime)` and prints the
first admin's one-time password from `flowyard_ui.app.first_start()`.
"""
