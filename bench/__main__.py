"""``python -m bench`` runs the whole benchmark (see ``bench/run.py``)."""

from bench.run import main

raise SystemExit(main())
