import sys

from lrstudy.cli import main

sys.exit(main())
