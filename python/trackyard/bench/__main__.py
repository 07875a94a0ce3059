import sys

from trackyard.bench.cli import main

sys.exit(main())
