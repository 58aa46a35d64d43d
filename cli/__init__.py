"""Trainyard's command line: the `az ml` verbs, as a thin client of the JSON API at /api/v1/.

Run it as `python -m cli`; `python -m cli --help` lists the verbs.
"""
