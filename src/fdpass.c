/* SPDX-License-Identifier: MIT */
/*
 * fdpass.c - hand a set's or a value's memfd to another process over a Unix
 * socket.
 *
 * One message: 8 data bytes (a 6-byte tag, protocol version, format
 * version) carrying exactly one fd in SCM_RIGHTS.  Sets use the tag "SHSETF"
 * and the region format version; values use their own (values.c).  The
 * receiver takes every fd the kernel delivered (MSG_CMSG_CLOEXEC, so none
 * leaks into an exec), refuses anything but one, and validates the memfd
 * before attaching; on any refusal it closes every fd it got.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "prim.h"
#include "fdpass.h"
#include "region.h"
#include "shset.h"

#define FDPASS_PROTO   1
#define FDPASS_MAX_FDS 8 /* room to notice and close extras */
static const char fdpass_magic[6] = {'S', 'H', 'S', 'E', 'T', 'F'};

int fdpass_send(int sock, int fd, const char tag[6], uint8_t format)
{
	char data[8];
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = data, .iov_len = sizeof(data)};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf)};

	if (sock < 0 || fd < 0)
		return -EINVAL;
	memcpy(data, tag, 6);
	data[6] = FDPASS_PROTO;
	data[7] = (char)format;
	memset(u.buf, 0, sizeof(u.buf));
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	for (;;) {
		ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
		if (n == (ssize_t)sizeof(data))
			return 0;
		if (n >= 0)
			return -EIO;
		if (errno != EINTR)
			return -errno;
	}
}

int shset_send(int sock, const shset *s)
{
	return fdpass_send(sock, shset_fd(s), fdpass_magic, REGION_VERSION);
}

int fdpass_recv(int sock, int *fdp, const char tag[6], uint8_t format)
{
	char data[8];
	union {
		char buf[CMSG_SPACE(sizeof(int) * FDPASS_MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = data, .iov_len = sizeof(data)};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf)};
	int fds[FDPASS_MAX_FDS], nfds = 0, err = 0;
	ssize_t n;

	*fdp = -1;
	if (sock < 0)
		return -EINVAL;
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	/* Collect every fd first: whatever happens next, all get closed. */
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k && nfds < FDPASS_MAX_FDS; i++)
			memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	if (n == 0 && nfds == 0)
		err = -ECONNRESET;
	else if (msg.msg_flags & MSG_CTRUNC)
		err = -EMSGSIZE;
	else if (msg.msg_flags & MSG_TRUNC)
		err = -EBADMSG; /* a longer datagram: not ours, whatever it starts with */
	else if (n != (ssize_t)sizeof(data) || memcmp(data, tag, 6) != 0)
		err = -EBADMSG;
	else if (data[6] != FDPASS_PROTO || (uint8_t)data[7] != format)
		err = -EPROTONOSUPPORT;
	else if (nfds == 0)
		err = -ENOMSG;
	else if (nfds > 1)
		err = -ETOOMANYREFS;
	if (!err) {
		*fdp = fds[0];
		return 0;
	}
	for (int i = 0; i < nfds; i++)
		fdpass_close(fds[i]);
	return err;
}

void fdpass_close(int fd)
{
	struct linger now = {1, 0};

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &now, sizeof(now)); /* ENOTSOCK: not one */
	close(fd);
}

int fdpass_recv_fd(int sock, int *fdp)
{
	return fdpass_recv(sock, fdp, fdpass_magic, REGION_VERSION);
}

int shset_recv(int sock, shset **out)
{
	int fd, err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	err = fdpass_recv_fd(sock, &fd);
	if (err)
		return err;
	err = shset_attach_fd(out, fd); /* validates first; keeps its own description */
	if (err)
		fdpass_close(fd); /* refused: maybe a lingering socket */
	else
		close(fd); /* a memfd */
	return err;
}

int shset_recv_timeout(int sock, shset **out, int timeout_ms)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	if (sock < 0)
		return -EINVAL;
	uint64_t deadline = timeout_ms < 0 ? 0 : prim_mono_ns() + (uint64_t)timeout_ms * 1000000u;
	for (;;) {
		int left = -1;
		if (timeout_ms >= 0) {
			uint64_t now = prim_mono_ns();
			if (now >= deadline)
				return -ETIMEDOUT;
			/* Rounded up: a wait never ends before the deadline. */
			left = (int)((deadline - now + 999999u) / 1000000u);
		}
		struct pollfd p = {.fd = sock, .events = POLLIN};
		int n = poll(&p, 1, left);
		if (n < 0 && errno == EINTR)
			continue; /* with the time that is left */
		if (n < 0)
			return -errno;
		if (n > 0)
			break; /* a message, EOF or an error: shset_recv says which */
	}
	return shset_recv(sock, out);
}

int shset_peer_cred(int sock, struct shset_peer *peer)
{
	struct ucred uc;
	socklen_t len = sizeof(uc);

	if (sock < 0 || !peer)
		return -EINVAL;
	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
		return -errno;
	peer->pid = uc.pid;
	peer->uid = uc.uid;
	peer->gid = uc.gid;
	return 0;
}
