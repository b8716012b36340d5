/* interp/capture.h: what user code writes to stdout and stderr becomes
 * IOPub stream messages, batched, in order, and never lost.
 *
 * Two sources feed one ordered buffer: Python-level writes (sys.stdout /
 * sys.stderr objects call ip_capture_write) and file descriptors 1 and 2,
 * which are redirected to pipes so that C extensions and subprocesses
 * (os.system) are captured too. A pump thread reads the pipes and publishes
 * the buffer when it is big enough or old enough; ip_capture_flush() (end of
 * a request) publishes everything synchronously. A change of stream name
 * ends the current batch, which keeps stdout/stderr interleaving exact.
 * However big one write is, no stream message carries more than
 * IP_STREAM_CHUNK bytes of JSON-encoded text: a larger batch leaves as
 * several consecutive messages of the same stream, cut between UTF-8
 * characters (frontends join them; a client may then bound the size of a
 * message without losing big prints). A write of IP_CAPTURE_BIG bytes or
 * more is never copied: after what is pending, it is escaped into messages
 * straight from the caller's buffer, so printing a string costs the kernel
 * about one message of memory, not the string again.
 *
 * No Python here. The capture borrows the kn_host it is given (which must
 * outlive it) and owns its pipes and thread.
 */
#ifndef IP_CAPTURE_H
#define IP_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>

#include "kernel/kernel.h"

typedef struct ip_capture ip_capture;

enum { IP_STDOUT = 1, IP_STDERR = 2 };

#define IP_STREAM_CHUNK (8u << 20)   /* the most bytes of "text" JSON in one stream message */

#define IP_CAPTURE_BIG (4u << 20)  /* a write this big leaves at once, uncopied */

/* capture_fds: redirect fds 1 and 2 (the kernel); false for tests/embedders. */
ip_capture *ip_capture_start(const kn_host *host, bool capture_fds);
/* Thread-safe. stream: IP_STDOUT or IP_STDERR. data need not be NUL-terminated. */
void ip_capture_write(ip_capture *c, int stream, const char *data, size_t len);
/* One big write in several parts (a huge str encoded a slice at a time):
 * begin publishes what is pending (the parts continue its message when the
 * stream is the same), each part leaves at once, end sends the last
 * message. Other writes wait in the buffer until end; the caller must not
 * write, flush or publish in between. */
void ip_capture_write_begin(ip_capture *c, int stream);
void ip_capture_write_part(ip_capture *c, const char *data, size_t len);
void ip_capture_write_end(ip_capture *c);
/* In a process forked from the kernel (its copy of the capture): the child
 * has just written to fd 1 or 2. The count lives in memory shared with the
 * kernel, whose next ip_capture_write() reads the pipes first, so that what
 * a child printed before the kernel heard from it (a multiprocessing
 * worker's result) comes before what the kernel prints next. */
void ip_capture_child_wrote(ip_capture *c);
/* Might ip_capture_write(c, ., ., len) wait for a slow frontend (IOPub
 * flow control: the host has no room now, or a big write)? For a caller
 * holding a lock that other threads need (python.c's GIL): when it says
 * yes, give the lock up and write; when no, write with the _held forms. */
bool ip_capture_may_wait(ip_capture *c, size_t len);
/* ip_capture_write and ip_capture_flush that never wait for a slow
 * frontend, even if room runs out between ip_capture_may_wait and the
 * publication (the output then goes over the host's bound by what they
 * publish; the caller's next write, asked first, waits). len below
 * IP_CAPTURE_BIG. */
void ip_capture_write_held(ip_capture *c, int stream, const char *data, size_t len);
void ip_capture_flush_held(ip_capture *c);
/* flush() from user code. When the last stream message left a while ago
 * (ip_capture_flush_now_due: 10 ms), ip_capture_flush_now hands what was
 * written so far (with what is in the fd pipes) to IOPub before it returns,
 * as ipykernel's flush() waits for its IO thread: output flushed before
 * the process dies (a segfault in a C extension, SIGKILL) is not lost in a
 * buffer. Otherwise (flush() in a loop) ip_capture_kick asks for a
 * publication within 2 ms and never blocks: many flush() calls in a row
 * still make few messages (ipykernel sends one a flush). _held: never
 * waits for a slow frontend (see above). */
bool ip_capture_flush_now_due(ip_capture *c);
/* From a fatal signal's handler (async-signal-safe): the pump publishes
 * what is pending at once. */
void ip_capture_crash_kick(ip_capture *c);
void ip_capture_flush_now(ip_capture *c);
void ip_capture_flush_now_held(ip_capture *c);
void ip_capture_kick(ip_capture *c);
/* Publish everything written so far, including what is in the fd pipes. */
void ip_capture_flush(ip_capture *c);
/* Flush, restore fds 1/2, stop the thread, free. NULL is fine. */
void ip_capture_stop(ip_capture *c);
/* Time-based flush interval (ms), default 50. */
void ip_capture_set_interval(ip_capture *c, int ms);

/* Appends data as a JSON string body (no quotes) to out, replacing invalid
 * UTF-8 with U+FFFD. Returns the number of bytes consumed: when !final a
 * truncated multi-byte sequence at the end is left unconsumed. Exposed for
 * the unit tests. */
struct cb_buf;
size_t ip_json_escape_utf8(struct cb_buf *out, const char *data, size_t len, bool final);

#endif
