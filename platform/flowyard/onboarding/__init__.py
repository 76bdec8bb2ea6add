"""Onboarding a plant or supplier from a template (`kind: Template`) and values
(`kind: FlowInstance`).

- `template`: the files' models, reading templates and instances, finding a template by
  name, the values checked against the parameters.
- `render`: a template rendered with values, and a problem in the rendered flow moved back
  to the template's (or the instance's) line.
- `check`: `flowyard validate` for both kinds, and their definition kind classes.
- `onboard`: writing a new instance and its skeleton files (`flowyard onboard`), trying
  a template's samples before anything is saved.
- `impact`: how a template change renders for every instance (`flowyard diff --rendered`).
- `cli`: the commands `render`, `onboard`, `fmt` and `diff`.
"""
