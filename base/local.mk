# base/: the small shared base (allocation, logging, buffers, JSON helpers).
libcellbox_a_SOURCES += \
	base/util.c base/util.h \
	base/log.c base/log.h \
	base/buf.c base/buf.h \
	base/json.c base/json.h
