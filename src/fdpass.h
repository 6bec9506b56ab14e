/* SPDX-License-Identifier: MIT */
/* fdpass.h - receiving a set's fd without attaching (private). */
#ifndef SHSET_FDPASS_H
#define SHSET_FDPASS_H

/* One shset message from @sock: its single fd in *@fd (close-on-exec, not
 * validated as a set), or the errors of shset_recv. */
int fdpass_recv_fd(int sock, int *fd);

#endif
