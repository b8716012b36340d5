# kernel/: the Jupyter wire protocol, sockets, dispatch, kernel client, kernelspecs.
libcellbox_a_SOURCES += \
	kernel/main_kernel.c
