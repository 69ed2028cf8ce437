#!/usr/bin/env python3
"""Pick a class-conditional card's guidance scale by the FID of its samples: `scripts/pick_sampling.py ID --cfg
S...`, under the name the queue plan and the README used first.

    python scripts/pick_guidance.py var-mnist --cfg 2.5 4 5.5 --write
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pick_sampling import main  # noqa: E402

if __name__ == "__main__":
    main()
