# interp: see Makefile.am
