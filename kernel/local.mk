# kernel/: the Jupyter wire protocol, sockets, dispatch, kernel client, kernelspecs.
libcellbox_a_SOURCES += \
	kernel/wire.c kernel/wire.h \
	kernel/session.c kernel/session.h \
	kernel/conn.c kernel/conn.h \
	kernel/history.c kernel/history.h \
	kernel/kernel.c kernel/kernel.h \
	kernel/kernelspec.c kernel/kernelspec.h \
	kernel/client.c kernel/client.h \
	kernel/main_kernel.c
