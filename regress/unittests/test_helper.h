/*
 * A tiny TAP helper for the unit tests.
 *
 *	TEST_START("name");
 *	ASSERT_INT_EQ(r, 0);
 *	TEST_DONE();
 *
 * prints "ok - name" once, or for the first failed assertion
 * "not ok - name: file:line: expr (got X want Y)" (later failures of the
 * same test become "#" diagnostics, so a test counts at most once).
 * Assertions do not stop the test: each evaluates to 1 when it held and 0
 * when it failed, so a test guards what would crash:
 *
 *	if (!ASSERT_INT_EQ(r, 0))
 *		goto out;
 *
 * test_exit_status() is non-zero if any test failed or a test was left
 * unfinished.
 */
#ifndef TEST_HELPER_H
#define TEST_HELPER_H

#include <stddef.h>

void test_start(const char *name);
void test_done(void);
/* Finish the current test as skipped ("ok - name # SKIP why"), unless an
 * assertion already failed in it. */
void test_skip_current(const char *why);
/* A whole test skipped without starting it. */
void test_skip(const char *name, const char *why);
/* Name filter from the command line: only tests whose name contains one
 * of the strings run.  test_wanted() says whether to run `name`. */
void test_set_filter(int argc, char **argv);
int test_wanted(const char *name);
/* "# ..." lines: test_note() only with TEST_VERBOSE set in the
 * environment, test_diag() always. */
void test_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void test_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *test_name(void);
int test_current_failed(void);
int test_exit_status(void);

/* Failure reporting: print and mark; return 0 so macros can yield it. */
int test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

int test_assert_int(const char *file, int line, const char *ea,
    const char *eb, const char *op, long long a, long long b);
int test_assert_str(const char *file, int line, const char *ea,
    const char *eb, int want_equal, const char *a, const char *b);
int test_assert_mem(const char *file, int line, const char *ea,
    const char *eb, const void *a, const void *b, size_t len);
int test_assert_true(const char *file, int line, const char *expr,
    int value, int want);

#define TEST_START(name)	test_start(name)
#define TEST_DONE()		test_done()
#define TEST_SKIP(why)		test_skip_current(why)

#define ASSERT_INT_EQ(a, b) test_assert_int(__FILE__, __LINE__, #a, #b, \
	"==", (long long)(a), (long long)(b))
#define ASSERT_INT_NE(a, b) test_assert_int(__FILE__, __LINE__, #a, #b, \
	"!=", (long long)(a), (long long)(b))
#define ASSERT_INT_LT(a, b) test_assert_int(__FILE__, __LINE__, #a, #b, \
	"<", (long long)(a), (long long)(b))
#define ASSERT_INT_LE(a, b) test_assert_int(__FILE__, __LINE__, #a, #b, \
	"<=", (long long)(a), (long long)(b))
#define ASSERT_INT_GT(a, b) test_assert_int(__FILE__, __LINE__, #a, #b, \
	">", (long long)(a), (long long)(b))
#define ASSERT_INT_GE(a, b) test_assert_int(__FILE__, __LINE__, #a, #b, \
	">=", (long long)(a), (long long)(b))
#define ASSERT_STR_EQ(a, b) test_assert_str(__FILE__, __LINE__, #a, #b, \
	1, (a), (b))
#define ASSERT_STR_NE(a, b) test_assert_str(__FILE__, __LINE__, #a, #b, \
	0, (a), (b))
#define ASSERT_MEM_EQ(a, b, len) test_assert_mem(__FILE__, __LINE__, #a, \
	#b, (a), (b), (len))
#define ASSERT_TRUE(e)	test_assert_true(__FILE__, __LINE__, #e, !!(e), 1)
#define ASSERT_FALSE(e)	test_assert_true(__FILE__, __LINE__, #e, !!(e), 0)
#define ASSERT_PTR_NE(a, b) test_assert_true(__FILE__, __LINE__, \
	#a " != " #b, (a) != (b), 1)
#define ASSERT_PTR_EQ(a, b) test_assert_true(__FILE__, __LINE__, \
	#a " == " #b, (a) == (b), 1)
#define TEST_FAIL(...)	test_fail(__FILE__, __LINE__, __VA_ARGS__)

#endif /* TEST_HELPER_H */
