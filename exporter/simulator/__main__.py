"""`python -m exporter.simulator` runs the simulator alone (same flags as `simulate`)."""

import sys

from exporter.simulator.cli import main

sys.exit(main())
