import sys

from clreplay.cli import main

sys.exit(main())
