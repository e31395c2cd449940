"""Entry point of the packaged application: the same dispatch as ``python -m histoviewer``.

No arguments open the viewer; ``histoviewer info SLIDE``, ``analyze``... run the command line.
``freeze_support`` first: the phantom writer and the analysis workers start ``spawn``
processes, which in a frozen build re-run this executable and must not open a window.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from histoviewer.cli import main

    sys.exit(main())
