"""Skip reasons for tests that need an optional extra of pyproject.toml. CI installs every extra,
so none of these skips there; a developer without one sees which install brings the test back."""

from __future__ import annotations

LOCAL = "needs the local extra (torch, transformers): pip install -e .[local]"
SERVE = "needs the serve extra (vLLM 0.26): pip install -e .[serve]"
POSTGRES = "needs the postgres extra (psycopg): pip install -e .[postgres]"
BENCH = "needs the bench extra (matplotlib): pip install -e .[bench]"
DEV = "needs the dev extra (pyyaml): pip install -e .[dev]"
RAY = "needs the ray extra (the Ray executor): pip install -e .[ray]"
PROMETHEUS = ("needs the prometheus server and promtool (Debian package prometheus): apt-get install prometheus "
              "(scripts/bootstrap.sh --test and .ci/run install it when run as root)")
