"""The Qt front end: thin wiring over ``histoviewer.core``."""
