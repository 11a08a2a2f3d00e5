#!/usr/bin/env python
"""Train one model: the same as `zoo train` (see `python scripts/train.py --help`)."""

import sys

from zoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
