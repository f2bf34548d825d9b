"""The ``meshpkt`` command line. Thin: parse, call one library function, render."""
