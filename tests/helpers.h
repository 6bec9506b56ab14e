/* SPDX-License-Identifier: MIT */
/* helpers.h - small utilities shared by the Check suites. */
#ifndef SHSET_TEST_HELPERS_H
#define SHSET_TEST_HELPERS_H

#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static inline int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* Threads of this process, but the kernel's io_uring workers (which come
 * and go on their own); with @tids, their ids (up to @max). */
static inline int list_threads(int *tids, int max)
{
	DIR *d = opendir("/proc/self/task");
	int n = 0;
	struct dirent *e;

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		char path[300], comm[32] = "";
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		FILE *f = fopen(path, "r");
		if (f) {
			if (!fgets(comm, sizeof(comm), f))
				comm[0] = 0;
			fclose(f);
		}
		if (!strncmp(comm, "iou-", 4))
			continue;
		if (tids && n < max)
			tids[n] = atoi(e->d_name);
		n++;
	}
	closedir(d);
	return n;
}

/* list_threads, once it is @want or after 10 s: a joined thread may be
 * listed for a moment after pthread_join returns (it wakes the joiner
 * before it is gone). */
static inline int threads_now(int want)
{
	int n = list_threads(NULL, 0);
	for (int i = 0; n != want && i < 1000; i++) {
		usleep(10000);
		n = list_threads(NULL, 0);
	}
	return n;
}

static inline void *helper_tid_thread(void *arg)
{
	*(int *)arg = gettid();
	return NULL;
}

/* Threads of this process (list_threads), after one thread has been
 * started, joined and gone: a sanitizer's own threads, started with the
 * first, are then there already. */
static inline int count_threads(void)
{
	pthread_t t;
	int tid = 0;
	char path[64];

	if (pthread_create(&t, NULL, helper_tid_thread, &tid) == 0) {
		pthread_join(t, NULL);
		snprintf(path, sizeof(path), "/proc/self/task/%d", tid);
		for (int i = 0; i < 1000 && access(path, F_OK) == 0; i++)
			usleep(10000);
	}
	return list_threads(NULL, 0);
}

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Waits for @pid and returns its exit status, or 128+signal. */
static inline int wait_status(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return -1;
}

static inline void write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(120);
		p += n;
		len -= (size_t)n;
	}
}

/* Reads exactly @len bytes; returns 0, or -1 on EOF/error. */
static inline int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* 0 under ThreadSanitizer, which refuses new threads in the child of a
 * process that has had threads (its own background thread included). */
#if defined(__SANITIZE_THREAD__)
#define CHILD_THREADS 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CHILD_THREADS 0
#endif
#endif
#ifndef CHILD_THREADS
#define CHILD_THREADS 1
#endif

/* Runs a suite with CK_FORK (unless CK_FORK=no) and returns the exit code. */
static inline int run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* Timeouts are sized for 2 cores under sanitizers; SHSET_TEST_SCALE
 * multiplies them (and the heavier loops read it too). */
static inline double test_scale(void)
{
	const char *e = getenv("SHSET_TEST_SCALE");
	double v = e ? atof(e) : 1.0;
	return v > 0 ? v : 1.0;
}

#endif
