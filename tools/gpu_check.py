"""Entry point of tools/gpu_check.sh; the logic is in tools/gpucheck/ (see its main.py)."""

import sys

from gpucheck.main import main

if __name__ == "__main__":
    sys.exit(main())
