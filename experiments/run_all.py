"""Runs the whole inductive-bias lab: the same as ``mlpvision lab`` (all its flags work here too).

python experiments/run_all.py [--quick] [--only EXPERIMENT ...] [--report-only]
"""

import sys

from mlpvision.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["lab", *sys.argv[1:]]))
