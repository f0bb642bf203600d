"""`panel serve app.py` — the workbench dashboard (everything lives in workbench.ui)."""

from workbench.ui.app import build_app

build_app().servable()
