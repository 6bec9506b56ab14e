/* SPDX-License-Identifier: MIT */
/* test_fdpass.c - handing sets over Unix sockets, and hostile senders. */
#include "helpers.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "lease.h"
#include "region.h"
#include "shset.h"

#ifndef FDPASS_PEER
#error "FDPASS_PEER must name the peer executable"
#endif

START_TEST(forked_peers_share_writes)
{
	int sv[2];
	shset *s;
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	shset_add(s, "from parent", 11);
	pid_t pid = fork();
	if (pid == 0) {
		shset *r;
		char b;
		if (shset_recv(sv[1], &r))
			_exit(1);
		if (shset_contains(r, "from parent", 11) != 1)
			_exit(2);
		if (shset_add(r, "from child", 10) != 1)
			_exit(3);
		write_all(sv[1], "k", 1);
		/* Wait for the parent's second key, then look for it. */
		if (read_all(sv[1], &b, 1))
			_exit(4);
		_exit(shset_contains(r, "second", 6) == 1 ? 0 : 5);
	}
	ck_assert_int_eq(shset_send(sv[0], s), 0);
	char b;
	ck_assert_int_eq(read_all(sv[0], &b, 1), 0);
	ck_assert_int_eq(shset_contains(s, "from child", 10), 1);
	shset_add(s, "second", 6);
	write_all(sv[0], "k", 1);
	ck_assert_int_eq(wait_status(pid), 0);
	shset_close(s);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(unrelated_process_over_named_socket)
{
	char path[108];
	snprintf(path, sizeof(path), "/tmp/shset-test-%d.sock", getpid());
	unlink(path);
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	strcpy(a.sun_path, path);
	ck_assert_int_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(l, 4), 0);
	shset *s;
	ck_assert_int_eq(shset_create(&s, NULL), 0);
	shset_add(s, "server key", 10);

	pid_t pid = fork();
	if (pid == 0) {
		execl(FDPASS_PEER, FDPASS_PEER, path, "server key", "peer key", (char *)NULL);
		_exit(127);
	}
	int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ge(c, 0);
	struct shset_peer peer;
	ck_assert_int_eq(shset_peer_cred(c, &peer), 0);
	ck_assert_int_eq(peer.pid, pid);
	ck_assert_int_eq(peer.uid, getuid());
	ck_assert_int_eq(shset_send(c, s), 0);
	ck_assert_int_eq(wait_status(pid), 0);
	ck_assert_int_eq(shset_contains(s, "peer key", 8), 1);
	close(c);
	close(l);
	unlink(path);
	shset_close(s);
}
END_TEST

/* Sends @data (@len bytes) with @nfds fds. */
static void send_raw(int sock, const void *data, size_t len, const int *fds, int nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 16)];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	memset(&u, 0, sizeof(u));
	if (nfds) {
		msg.msg_control = u.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	ck_assert_int_eq(sendmsg(sock, &msg, 0), (ssize_t)len);
}

/* Tag, protocol version, region format version. */
static const char good_tag[8] = {'S', 'H', 'S', 'E', 'T', 'F', 1, REGION_VERSION};

static void expect_refusal(const void *data, size_t len, const int *fds, int nfds, int err)
{
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	int before = count_fds();
	send_raw(sv[0], data, len, fds, nfds);
	shset *s = (shset *)1;
	ck_assert_int_eq(shset_recv(sv[1], &s), err);
	ck_assert_ptr_null(s);
	/* Every fd that arrived was closed. */
	ck_assert_int_eq(count_fds(), before);
	close(sv[0]);
	close(sv[1]);
}

START_TEST(hostile_senders)
{
	shset *good;
	ck_assert_int_eq(shset_create(&good, NULL), 0);
	int gfd = shset_fd(good);
	int p[2];
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	char tmpl[] = "/tmp/shset-fdpass-XXXXXX";
	int f = mkostemp(tmpl, O_CLOEXEC);
	unlink(tmpl);
	ck_assert_int_eq(ftruncate(f, 65536), 0);
	int unsealed = memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	ck_assert_int_eq(ftruncate(unsealed, 65536), 0);
	int garbage = memfd_create("garbage", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	ck_assert_int_eq(ftruncate(garbage, 65536), 0);
	ck_assert_int_eq(pwrite(garbage, "not a set at all", 16, 0), 16);
	ck_assert_int_eq(fcntl(garbage, F_ADD_SEALS, F_SEAL_SHRINK), 0);
	int two[2] = {gfd, gfd};
	int many[12];
	for (int i = 0; i < 12; i++)
		many[i] = gfd;
	char badtag[8], badver[8];
	memcpy(badtag, good_tag, 8);
	badtag[0] = 'X';
	memcpy(badver, good_tag, 8);
	badver[6] = 2;

	expect_refusal(good_tag, 8, NULL, 0, -ENOMSG);
	expect_refusal(good_tag, 8, two, 2, -ETOOMANYREFS);
	expect_refusal(good_tag, 8, many, 12, -EMSGSIZE);
	expect_refusal(good_tag, 8, &p[0], 1, -EMEDIUMTYPE);
	expect_refusal(good_tag, 8, &f, 1, -EMEDIUMTYPE);
	expect_refusal(good_tag, 8, &unsealed, 1, -EPERM);
	expect_refusal(good_tag, 8, &garbage, 1, -EPROTO);
	expect_refusal(badtag, 8, &gfd, 1, -EBADMSG);
	expect_refusal(good_tag, 3, &gfd, 1, -EBADMSG);
	expect_refusal(badver, 8, &gfd, 1, -EPROTONOSUPPORT);

	/* A datagram longer than the tag that starts like one is cut short
	 * by the receive (MSG_TRUNC): refused, not taken for the tag. */
	{
		char longer[16];
		memcpy(longer, good_tag, 8);
		memset(longer + 8, 'x', 8);
		int sp[2];
		ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
		int before = count_fds();
		send_raw(sp[0], longer, sizeof(longer), &gfd, 1);
		shset *t = (shset *)1;
		ck_assert_int_eq(shset_recv(sp[1], &t), -EBADMSG);
		ck_assert_ptr_null(t);
		ck_assert_int_eq(count_fds(), before);
		close(sp[0]);
		close(sp[1]);
	}

	/* A peer that says nothing: the deadline ends the wait; a message
	 * that is there is taken at once; EOF is told as such. */
	{
		int sp[2];
		ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
		shset *t = (shset *)1;
		uint64_t t0 = now_ns();
		ck_assert_int_eq(shset_recv_timeout(sp[1], &t, 200), -ETIMEDOUT);
		ck_assert_ptr_null(t);
		ck_assert_uint_ge(now_ns() - t0, 200000000ull);
		ck_assert_int_eq(shset_send(sp[0], good), 0);
		ck_assert_int_eq(shset_recv_timeout(sp[1], &t, 200), 0);
		ck_assert_ptr_nonnull(t);
		shset_close(t);
		ck_assert_int_eq(shset_recv_timeout(sp[1], NULL, 0), -EINVAL);
		close(sp[0]);
		ck_assert_int_eq(shset_recv_timeout(sp[1], &t, -1), -ECONNRESET);
		close(sp[1]);
	}

	/* A peer that closes without a word. */
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	close(sv[0]);
	shset *s;
	ck_assert_int_eq(shset_recv(sv[1], &s), -ECONNRESET);
	close(sv[1]);

	/* The good message still works after all that. */
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	ck_assert_int_eq(shset_send(sv[0], good), 0);
	ck_assert_int_eq(shset_recv(sv[1], &s), 0);
	shset_close(s);
	close(sv[0]);
	close(sv[1]);

	ck_assert_int_eq(shset_send(-1, good), -EINVAL);
	ck_assert_int_eq(shset_send(0, NULL), -EINVAL);
	ck_assert_int_eq(shset_recv(-1, &s), -EINVAL);
	ck_assert_int_eq(shset_recv(0, NULL), -EINVAL);
	ck_assert_int_eq(shset_peer_cred(-1, NULL), -EINVAL);
	close(p[0]);
	close(p[1]);
	close(f);
	close(unsealed);
	close(garbage);
	shset_close(good);
}
END_TEST

/* A TCP connection whose other end never reads, its send queue full, set
 * to linger an hour on close: the last close of it would block that long. */
static int lingering_socket(int *server)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(l, 0);
	ck_assert_int_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(l, (struct sockaddr *)&a, &al), 0);
	ck_assert_int_eq(listen(l, 1), 0);
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
	*server = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ge(*server, 0);
	close(l);
	ck_assert_int_eq(fcntl(c, F_SETFL, O_NONBLOCK), 0);
	static char junk[65536];
	while (write(c, junk, sizeof(junk)) > 0)
		;
	struct linger lg = {1, 3600};
	ck_assert_int_eq(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	return c;
}

/* A sender passes such a socket and drops its copy: the receiver, which
 * refuses it, holds the last reference, and its close must not wait out
 * the linger (before: shset_recv returned after the linger time, whatever
 * its timeout).  Refused for not being a memfd, and for a wrong tag. */
START_TEST(refused_socket_does_not_linger)
{
	char badtag[8];
	memcpy(badtag, good_tag, 8);
	badtag[0] = 'X';
	for (int tag = 0; tag < 2; tag++) {
		int server, sv[2];
		int c = lingering_socket(&server);
		ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		send_raw(sv[0], tag ? badtag : good_tag, 8, &c, 1);
		close(c);
		shset *s = (shset *)1;
		ck_assert_int_eq(shset_recv_timeout(sv[1], &s, 1000),
				 tag ? -EBADMSG : -EMEDIUMTYPE);
		ck_assert_ptr_null(s);
		close(server);
		close(sv[0]);
		close(sv[1]);
	}
}
END_TEST

/* A sender takes an OFD lock on a free lease slot's byte with the very
 * description it sends, makes the shard's lock word name that slot, and
 * exits.  A receiver that kept a dup of that description would keep the
 * sender's lock alive, and with it a "live" holder no process is: every
 * write of every process waited for ever.  Attach keeps a description of
 * its own, so the receiver's close of the fd it got releases the lock and
 * the next writer takes over from the dead sender. */
START_TEST(sent_description_keeps_no_lock_alive)
{
	shset *creator, *h;
	struct shset_opts o = {.size = sizeof(o), .shards = 1};
	ck_assert_int_eq(shset_create(&creator, &o), 0);
	int sp[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	pid_t pid = fork();
	if (pid == 0) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/self/fd/%d", shset_fd(creator));
		int ofd = open(path, O_RDWR);
		uint32_t e = 200; /* a free slot */
		struct flock fl = {
		    .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = e, .l_len = 1};
		if (ofd < 0 || fcntl(ofd, F_OFD_SETLK, &fl))
			_exit(2);
		uint8_t *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, ofd, 0);
		if (m == MAP_FAILED)
			_exit(3);
		((struct shset_lease_slot *)(m + REGION_SLOTS_OFF))[e].gen = 5;
		__atomic_store_n((uint32_t *)(m + REGION_LOCK_OFF), (e + 1) | 5u << LEASE_GEN_SHIFT,
				 __ATOMIC_RELEASE);
		send_raw(sp[1], good_tag, 8, &ofd, 1);
		_exit(0);
	}
	ck_assert_int_eq(wait_status(pid), 0);
	ck_assert_int_eq(shset_recv(sp[0], &h), 0);
	/* No process holds the slot: the writers take over (the case's
	 * timeout ends the test if they wait). */
	ck_assert_int_eq(shset_add(h, "x", 1), 1);
	ck_assert_int_eq(shset_add(creator, "y", 1), 1);
	ck_assert_int_eq(shset_size(creator), 2);
	ck_assert_int_eq(shset_verify(creator), 0);
	shset_close(h);
	shset_close(creator);
	close(sp[0]);
	close(sp[1]);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("fdpass");
	TCase *tc = tcase_create("fdpass");
	tcase_set_timeout(tc, 60 * test_scale());
	tcase_add_test(tc, forked_peers_share_writes);
	tcase_add_test(tc, unrelated_process_over_named_socket);
	tcase_add_test(tc, hostile_senders);
	suite_add_tcase(s, tc);
	/* Short enough that a wait without end (an hour's linger, a lock
	 * held by no process) fails. */
	TCase *tl = tcase_create("sent");
	tcase_set_timeout(tl, 20 * test_scale());
	tcase_add_test(tl, refused_socket_does_not_linger);
	tcase_add_test(tl, sent_description_keeps_no_lock_alive);
	suite_add_tcase(s, tl);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
