#!/usr/bin/env python
"""Publish a checkpoint folder to the Hugging Face Hub and pin its commit in checkpoints.json.

    python scripts/push_to_hub.py lenet --dry-run        # what would be uploaded, uploads nothing
    HF_TOKEN=... python scripts/push_to_hub.py lenet      # bundled or locally trained `lenet`
    python scripts/push_to_hub.py runs/resnet18/version_0/export --repo-id me/resnet18

The same as `zoo push`.
"""

import sys

from zoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["push", *sys.argv[1:]]))
