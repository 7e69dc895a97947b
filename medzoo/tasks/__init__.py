"""Task families of medzoo, one subpackage each (``from medzoo.tasks import fundus``).

Tasks never import each other; each one implements :class:`medzoo.core.Task` and is found through the
registry (:func:`medzoo.get_task`).
"""
