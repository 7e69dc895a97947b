import sys

from medzoo.cli.main import main

sys.exit(main())
