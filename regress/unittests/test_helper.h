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

#include <sys/types.h>

#include <limits.h>
#include <stddef.h>

#ifndef NAME_MAX
# define NAME_MAX 255
#endif

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

/*
 * Files, for the tests that work on real ones.  A run's scratch directory
 * is a mkdtemp directory under $OBJ/regress/work/unit (or
 * ./regress/work/unit): test_scratch_setup() makes it (mode 0755, its
 * absolute path into `out`), test_scratch_done() removes it unless
 * TEST_KEEP is set.
 */
int test_scratch_setup(char *out, size_t len);
void test_scratch_done(void);
/* A fresh, empty directory `name` (mode 0755) in the scratch directory. */
int fresh_dir(const char *name, char *out, size_t len);
void join(char *out, size_t len, const char *dir, const char *name);
void rm_rf(const char *path);
int mkdir_p(const char *path, mode_t mode);
int write_all(int fd, const void *buf, size_t len);
int put_file(const char *path, const void *data, size_t len, mode_t mode);
int put_str(const char *path, const char *s);
int get_file(const char *path, char **data, size_t *len);
void fill_pattern(char *buf, size_t len, unsigned int seed);
char *pattern(size_t len, unsigned int seed);
int is_root(void);

#define MAX_ENTRIES 64
struct listing {
	int n;			/* entries, without "." and ".." */
	char name[MAX_ENTRIES][NAME_MAX + 1];
};
int list_dir(const char *dir, struct listing *l);

int check_entries(const char *file, int line, const char *dir,
    const char *const *names);
int check_content(const char *file, int line, const char *path,
    const void *want, size_t wantlen);
int check_absent(const char *file, int line, const char *path);
/* `dir` holds exactly the names listed: no debris, nothing missing. */
#define CHECK_ENTRIES(dir, ...) check_entries(__FILE__, __LINE__, (dir), \
	(const char *const[]){ __VA_ARGS__, NULL })
#define CHECK_CONTENT(path, data, len) \
	check_content(__FILE__, __LINE__, (path), (data), (len))
#define CHECK_STR(path, s) \
	check_content(__FILE__, __LINE__, (path), (s), strlen(s))
#define CHECK_ABSENT(path) check_absent(__FILE__, __LINE__, (path))

#endif /* TEST_HELPER_H */
