"""The ``medzoo`` command line. Command modules import torch only inside their handlers, so ``--help`` is fast."""
