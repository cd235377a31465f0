/* A tiny TAP helper for the unit tests; see test_helper.h. */
#include "includes.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_helper.h"

/* One test at a time; all of it resettable by test_start(). */
static struct {
	char name[256];
	int running;
	int failed;		/* assertions failed in the current test */
	int skipped;
	char skip_why[256];
	int any_failed;		/* over the whole run */
	int unfinished;		/* a test started while another ran */
	int filter_argc;
	char **filter_argv;
} state;

void
test_set_filter(int argc, char **argv)
{
	state.filter_argc = argc;
	state.filter_argv = argv;
}

int
test_wanted(const char *name)
{
	int i;

	if (state.filter_argc <= 0)
		return 1;
	for (i = 0; i < state.filter_argc; i++) {
		if (strstr(name, state.filter_argv[i]) != NULL)
			return 1;
	}
	return 0;
}

void
test_start(const char *name)
{
	if (state.running) {
		/* The previous test forgot TEST_DONE(): count it as failed
		 * rather than silently dropping it. */
		printf("not ok - %s: test not finished\n", state.name);
		state.any_failed = 1;
		state.unfinished = 1;
	}
	snprintf(state.name, sizeof(state.name), "%s", name);
	state.running = 1;
	state.failed = 0;
	state.skipped = 0;
	state.skip_why[0] = '\0';
	fflush(stdout);
}

void
test_done(void)
{
	if (!state.running) {
		printf("not ok - TEST_DONE without TEST_START (after %s)\n",
		    state.name);
		state.any_failed = 1;
		return;
	}
	if (state.failed == 0) {
		if (state.skipped)
			printf("ok - %s # SKIP %s\n", state.name,
			    state.skip_why);
		else
			printf("ok - %s\n", state.name);
	}
	state.running = 0;
	fflush(stdout);
}

void
test_skip_current(const char *why)
{
	state.skipped = 1;
	snprintf(state.skip_why, sizeof(state.skip_why), "%s", why);
}

void
test_skip(const char *name, const char *why)
{
	printf("ok - %s # SKIP %s\n", name, why);
	fflush(stdout);
}

const char *
test_name(void)
{
	return state.running ? state.name : "(no test)";
}

int
test_current_failed(void)
{
	return state.failed != 0;
}

int
test_exit_status(void)
{
	if (state.running) {
		printf("not ok - %s: test not finished\n", state.name);
		state.any_failed = 1;
		state.running = 0;
	}
	fflush(stdout);
	return state.any_failed ? 1 : 0;
}

static void
vnote(const char *fmt, va_list ap)
{
	char buf[2048];
	char *p, *line;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	/* Every line a TAP comment, so a multi-line message cannot forge a
	 * result line. */
	for (line = buf; line != NULL; line = p) {
		if ((p = strchr(line, '\n')) != NULL)
			*p++ = '\0';
		if (*line != '\0' || p != NULL)
			printf("# %s\n", line);
	}
	fflush(stdout);
}

void
test_note(const char *fmt, ...)
{
	va_list ap;

	if (getenv("TEST_VERBOSE") == NULL)
		return;
	va_start(ap, fmt);
	vnote(fmt, ap);
	va_end(ap);
}

void
test_diag(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vnote(fmt, ap);
	va_end(ap);
}

int
test_fail(const char *file, int line, const char *fmt, ...)
{
	char msg[2048], *p;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (p = msg; *p != '\0'; p++) {
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	}
	/* The first failure is the result line; the rest are diagnostics. */
	if (state.failed == 0)
		printf("not ok - %s: %s:%d: %s\n", test_name(), file, line,
		    msg);
	else
		printf("#   also %s:%d: %s\n", file, line, msg);
	state.failed++;
	state.any_failed = 1;
	fflush(stdout);
	return 0;
}

int
test_assert_int(const char *file, int line, const char *ea, const char *eb,
    const char *op, long long a, long long b)
{
	int holds;

	if (strcmp(op, "==") == 0)
		holds = a == b;
	else if (strcmp(op, "!=") == 0)
		holds = a != b;
	else if (strcmp(op, "<") == 0)
		holds = a < b;
	else if (strcmp(op, "<=") == 0)
		holds = a <= b;
	else if (strcmp(op, ">") == 0)
		holds = a > b;
	else
		holds = a >= b;
	if (holds)
		return 1;
	return test_fail(file, line, "%s %s %s (got %lld want %s%lld)",
	    ea, op, eb, a, strcmp(op, "==") == 0 ? "" : op, b);
}

/* Printable form of a possibly long or binary string for a message. */
static void
quote(char *dst, size_t len, const char *src)
{
	size_t i, o = 0;

	if (src == NULL) {
		snprintf(dst, len, "NULL");
		return;
	}
	if (len < 8) {
		dst[0] = '\0';
		return;
	}
	dst[o++] = '"';
	for (i = 0; src[i] != '\0' && o + 6 < len; i++) {
		unsigned char c = (unsigned char)src[i];

		if (isprint(c) && c != '"' && c != '\\')
			dst[o++] = (char)c;
		else
			o += (size_t)snprintf(dst + o, len - o, "\\x%02x", c);
	}
	if (src[i] != '\0') {
		dst[o++] = '.';
		dst[o++] = '.';
	}
	dst[o++] = '"';
	dst[o] = '\0';
}

int
test_assert_str(const char *file, int line, const char *ea, const char *eb,
    int want_equal, const char *a, const char *b)
{
	char qa[200], qb[200];
	int equal;

	if (a == NULL || b == NULL)
		equal = a == b;
	else
		equal = strcmp(a, b) == 0;
	if (equal == want_equal)
		return 1;
	quote(qa, sizeof(qa), a);
	quote(qb, sizeof(qb), b);
	return test_fail(file, line, "%s %s %s (got %s want %s%s)", ea,
	    want_equal ? "==" : "!=", eb, qa, want_equal ? "" : "not ", qb);
}

int
test_assert_mem(const char *file, int line, const char *ea, const char *eb,
    const void *a, const void *b, size_t len)
{
	const unsigned char *pa = a, *pb = b;
	size_t i;

	if (a == NULL || b == NULL)
		return test_fail(file, line, "%s == %s: NULL pointer", ea, eb);
	for (i = 0; i < len; i++) {
		if (pa[i] != pb[i])
			break;
	}
	if (i == len)
		return 1;
	return test_fail(file, line, "%s == %s over %zu bytes (first "
	    "difference at offset %zu: got 0x%02x want 0x%02x)", ea, eb, len,
	    i, pa[i], pb[i]);
}

int
test_assert_true(const char *file, int line, const char *expr, int value,
    int want)
{
	if (value == want)
		return 1;
	return test_fail(file, line, "%s (got %s want %s)", expr,
	    value ? "true" : "false", want ? "true" : "false");
}
