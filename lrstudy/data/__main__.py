"""``python -m lrstudy.data ensure [NAME]``: make sure a built-in dataset is here (``make data``)."""

import sys

from lrstudy.data.datasets import main

sys.exit(main())
