/* SPDX-License-Identifier: MIT */
/* fdpass.h - passing a memfd with a tag, receiving without attaching (private). */
#ifndef SHSET_FDPASS_H
#define SHSET_FDPASS_H

#include <stdint.h>

/* Sends @fd with @tag and @format in one message (shset_send's format). */
int fdpass_send(int sock, int fd, const char tag[6], uint8_t format);
/* Receives one message with @tag: its single fd in *@fd (close-on-exec, not
 * validated), or shset_recv's errors (-EBADMSG for another tag,
 * -EPROTONOSUPPORT for another protocol or format version). */
int fdpass_recv(int sock, int *fd, const char tag[6], uint8_t format);

/* One shset message from @sock: its single fd in *@fd (close-on-exec, not
 * validated as a set), or the errors of shset_recv. */
int fdpass_recv_fd(int sock, int *fd);

/* Closes an fd a peer sent.  If it is a socket with a long SO_LINGER and a
 * send queue that cannot drain (a TCP connection whose other end never
 * reads), its last close would block for the linger time: it is made to
 * abort at once (a linger of 0) first.  Harmless on other files. */
void fdpass_close(int fd);

#endif
