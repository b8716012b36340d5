# notebooks: see Makefile.am
