"""EDI X12 mediation: reading real-world interchanges, guides compiled to pyx12 maps,
the `x12.parse` / `x12.generate` steps, acknowledgments and control numbers.

See docs/x12.md for the data shape and the guide format."""
