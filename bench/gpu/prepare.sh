#!/usr/bin/env bash
# CPU side: stage datasets and extra wheels for the GPU machine (git-ignored folders).
set -euo pipefail
root="$(git rev-parse --show-toplevel)"; cd "$root"
for d in .qfdata .whl; do grep -qxF "/$d/" .git/info/exclude || echo "/$d/" >> .git/info/exclude; done
rm -rf .qfdata && mkdir -p .qfdata
for d in batchprompt_reference boolq gsm8k hotpotqa humaneval math mbpp qqp rte; do cp -r ../shared/data/$d .qfdata/; done
mkdir -p .whl /tmp/qf-whl
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d /tmp/qf-whl langgraph==1.2.24 langgraph-checkpoint-sqlite "sqlalchemy[asyncio]==2.1.9" aiosqlite alembic
# Only what neither the GPU image nor the vLLM bundle has (two versions of one package break the install).
for f in /tmp/qf-whl/*.whl; do
  case "$(basename "$f" | sed 's/-[0-9].*//')" in
    aiosqlite|alembic|distro|greenlet|jsonpatch|jsonpointer|langchain_core|langchain_protocol|langgraph*|langsmith|mako|orjson|ormsgpack|requests_toolbelt|sqlalchemy|sqlite_vec|tenacity|uuid_utils|zstandard) cp "$f" .whl/;;
  esac
done
cp ../shared/gpu/gguf_to_hf.py .qfdata/
du -sh .qfdata .whl
