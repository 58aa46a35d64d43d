"""Trainyard's command line: the `az ml` verbs, as a thin client of the JSON API at /api/v1/.

`make run` and `make test` install it as `.venv/bin/trainyard`, which runs `python -m cli`
from this checkout; `trainyard --help` lists the verbs.
"""
