#!/usr/bin/env python
"""Fine-tune a pretrained zoo network on an image folder: the same as `zoo finetune`.

    python scripts/finetune.py --source lenet --data my_images/ --epochs 5 --compare-scratch
"""

import sys

from zoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["finetune", *sys.argv[1:]]))
