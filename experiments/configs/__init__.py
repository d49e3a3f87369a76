"""One config per experiment: what it changes from the pinned base (``base.BASE``), and its --quick."""
