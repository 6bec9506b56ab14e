/* SPDX-License-Identifier: MIT */
/* fuzz_recv - libFuzzer: shset_recv on arbitrary messages carrying no fd,
 * a pipe, a memfd of arbitrary bytes (sealed or not), a real set, or two
 * fds.  No crash, and every received descriptor closed. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shset.h"

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static shset *real;
	int sv[2], fds[2], nfds = 0, p[2] = {-1, -1};

	if (!real && shset_create(&real, NULL))
		abort();
	if (size < 1)
		return 0;
	int kind = data[0] % 6;
	data++;
	size--;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		abort();
	switch (kind) {
	case 1:
		if (pipe2(p, O_CLOEXEC))
			abort();
		fds[nfds++] = p[0];
		break;
	case 2:
	case 3: {
		int m = memfd_create("fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		if (m < 0 || write(m, data, size) != (ssize_t)size || ftruncate(m, 65536))
			abort();
		if (kind == 3)
			fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK);
		fds[nfds++] = m;
		p[0] = m;
		break;
	}
	case 4:
		fds[nfds++] = shset_fd(real);
		break;
	case 5:
		fds[nfds++] = shset_fd(real);
		fds[nfds++] = shset_fd(real);
		break;
	}
	union {
		char buf[CMSG_SPACE(sizeof(int) * 2)];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct iovec iov = {.iov_base = (void *)data, .iov_len = size ? size : 1};
	char zero = 0;
	if (!size)
		iov.iov_base = &zero;
	if (iov.iov_len > 4096)
		iov.iov_len = 4096;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (nfds) {
		msg.msg_control = u.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	if (sendmsg(sv[0], &msg, 0) < 0)
		abort();
	int before = count_fds(); /* ours, after making what we send */
	shset *s;
	if (shset_recv(sv[1], &s) == 0)
		shset_close(s);
	/* Whatever arrived is closed again; the socket may hold leftover
	 * bytes, which closing it drops. */
	if (count_fds() != before)
		abort();
	close(sv[0]);
	close(sv[1]);
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	return 0;
}
