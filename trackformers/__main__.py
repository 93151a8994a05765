import sys

from trackformers.cli import main

sys.exit(main())
