/* SPDX-License-Identifier: MIT */
/* spread.h - the median, minimum and maximum of a benchmark's repeated
 * runs, as the benchmarks print them. */
#ifndef SHSET_BENCH_SPREAD_H
#define SHSET_BENCH_SPREAD_H

#include <stdlib.h>
#include <string.h>

#define SPREAD_MAX_RUNS 16

struct spread {
	double median, min, max;
};

static int spread_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Of @n (1 to SPREAD_MAX_RUNS) figures. */
static inline struct spread spread_of(const double *v, int n)
{
	double s[SPREAD_MAX_RUNS];
	memcpy(s, v, sizeof(double) * (size_t)n);
	qsort(s, (size_t)n, sizeof(double), spread_cmp);
	return (struct spread){s[n / 2], s[0], s[n - 1]};
}

#endif
