"""restorer: colorize black-and-white films and photo archives.

Heavy dependencies (torch, av, cv2) are imported lazily by the modules that need
them, so ``restorer --version`` and ``restorer --help`` stay fast.
"""

__version__ = "0.1.0"
