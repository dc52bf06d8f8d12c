"""``python -m tests.unit.golden``: (re)write the golden fixtures from the current code."""

from __future__ import annotations

import json

from tests.unit.golden.cases import GOLDEN_DIR, compute

if __name__ == "__main__":
    for name, data in compute().items():
        path = GOLDEN_DIR / f"{name}.json"
        path.write_text(json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
        print(f"wrote {path}")
