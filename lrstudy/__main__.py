import sys

from lrstudy.cli import process_main

sys.exit(process_main())
